"""The daemon's local API: the face API app (edge role) served by uvicorn in a thread, with
the daemon's own metrics beside the API's."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn
    from prometheus_client import Metric

    from edge.core.signature import Credential
    from edge.daemon.config import EdgeSettings
    from edge.daemon.service import EdgeService

log = logging.getLogger("edge.daemon")


def credentials(s: EdgeSettings) -> list[Credential]:
    """[api] credentials, else the edge's own key (edge.daemon.api_key, made on first start):
    never the hub's, whose signatures must not be good on the edge's channels."""
    from edge.core.signature import Credential
    from edge.daemon.api_key import own_credential

    if s.api.credentials:
        return [Credential(c.appid, c.secret_id, c.secret_key, calls=tuple(c.calls)) for c in s.api.credentials]
    return [own_credential(s.storage.path, s.hub.appid)]


class LocalApi:
    def __init__(self, s: EdgeSettings, service: EdgeService):
        from edge.api.app import create_app
        from edge.api.ops import ApiLimits
        from edge.core.signature import Verifier
        from edge.daemon.signature_log import replay_cache

        self.s = s
        creds = credentials(s)
        self.app = create_app(service, creds, limits=ApiLimits(rate_per_s=s.api.rate_per_s, burst=s.api.burst),
                              verifier=Verifier(creds, replay_cache(s.storage.path)),
                              # a single-use signature may name this device, and must with
                              # commands_device_bound (doors sharing [api] credentials)
                              device=s.device.id, device_bound=s.mqtt.commands_device_bound)
        # The API layer serves its own registry; expose the daemon's metrics (default
        # registry: ours plus process RSS/CPU) through it too.
        self.app.state.registry.register(_DefaultRegistryProxy())
        self.server: uvicorn.Server | None = None
        self.port: int | None = None

    def start(self, spawn: Callable[[str, Callable[[], object]], threading.Thread]) -> int | None:
        """Serve in a thread made by `spawn(name, target)`; the bound port, None if it failed."""
        import uvicorn

        from edge.api.serving import uvicorn_config

        s = self.s
        self.server = uvicorn.Server(uvicorn_config(self.app, s.api.listener(), log_level="warning", access_log=False))
        thread = spawn("api", self.server.run)
        deadline = time.monotonic() + 10
        while (not self.server.started and time.monotonic() < deadline
               and thread.is_alive()):  # a port in use ends the thread at once
            time.sleep(0.02)
        if self.server.started:
            self.port = self.server.servers[0].sockets[0].getsockname()[1]
        else:
            log.error("local API did not start on %s:%s", s.api.host, s.api.port)
        return self.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True


class _DefaultRegistryProxy:
    """A collector yielding the default registry's metrics (no describe: no name clashes)."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()
