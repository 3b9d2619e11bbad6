"""The camera first: local API inference waits for the camera's frame in progress.

The door's decision latency is what the device is for; a flood of API requests (already rate
limited per appid) must not slow it down. The camera loop never waits here; an API request
runs its inference only between two camera frames, and one at a time, so it takes at most one
of the device's cores away from the camera at any moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from edge.core import errors
from edge.core.errors import ApiError

MAX_WAIT_S = 5.0  # a camera that never pauses must not starve the API for ever


class CameraFirst:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._camera_busy = False
        self._api_lock = threading.Lock()

    @contextmanager
    def camera(self) -> Iterator[None]:
        with self._cond:
            self._camera_busy = True
        try:
            yield
        finally:
            with self._cond:
                self._camera_busy = False
                self._cond.notify_all()

    @contextmanager
    def background(self) -> Iterator[None]:
        """One background inference at a time, started while the camera is idle."""
        deadline = time.monotonic() + MAX_WAIT_S
        if not self._api_lock.acquire(timeout=MAX_WAIT_S):
            raise ApiError(errors.RATE_LIMITED, "local API busy: the camera comes first")
        try:
            with self._cond:
                self._cond.wait_for(lambda: not self._camera_busy,
                                    timeout=max(0.0, deadline - time.monotonic()))
            yield
        finally:
            self._api_lock.release()
