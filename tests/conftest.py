"""Shared test fixtures: where the real photos and models are, the photos by name, and the
helpers every folder uses: `wait_until` (every wait with a deadline), `code_of` (the API code an
`ApiError` carries) and `free_port` (re-exported).

The tests mirror edge/ (tests/core, tests/vision, tests/hub, tests/daemon, ...). The fixtures
of the real parts several of those folders use live in tests/support/ (broker, hub, pg, tls,
vision) and are registered below, so every test module can use a real broker, a real hub or
the real models.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import pytest

from edge.core.errors import ApiError
from edge.dev.localenv import free_port, shared_faces_dir  # noqa: F401 (free_port: re-exported for the tests)
from edge.vision.pipeline import default_models_dir

ROOT = Path(__file__).resolve().parents[1]
FACES = shared_faces_dir()
MODELS = default_models_dir()

pytest_plugins = [  # support.broker before support.hub, which imports it (assert rewriting)
    "tests.support.vision",
    "tests.support.broker",
    "tests.support.pg",
    "tests.support.hub",
    "tests.support.tls",
]

# The fixtures that bring up a real part too slow or too heavy for `make test-fast`: the models,
# the photos, a broker. A test that asks for none of them, directly or through another fixture,
# and does not take `request` (with it, a test can ask for any fixture at run time) is marked
# `fast`; `make test-fast` runs those alone, with the models and photos pointed nowhere so that
# one reaching them some other way fails there instead of slowing the subset down.
REAL_PARTS = {"models_dir", "faces_dir", "mosquitto", "tls_broker"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if not REAL_PARTS & set(getattr(item, "fixturenames", ())) and not _may_ask_for_any_fixture(item):
            item.add_marker(pytest.mark.fast)


def _may_ask_for_any_fixture(item) -> bool:
    """Whether the test function itself takes `request`: through request.getfixturevalue (e.g. of
    a fixture its parameter names) it reaches fixtures at run time, which collection cannot see."""
    function = getattr(item, "function", None)
    return function is not None and "request" in inspect.signature(function).parameters


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/faces, or skip: the photos are research data kept outside the repository."""
    if not (FACES / "lfw").is_dir() or not (FACES / "five_celebrity").is_dir():
        pytest.skip(f"face photos not found at {FACES} (set EDGE_VERIFIER_SHARED)")
    return FACES


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The built models; `make test` builds them first, so their absence is a failure."""
    if not (MODELS / "models.json").is_file():
        pytest.fail(f"models not built in {MODELS}: run `edge-verifier models build`")
    return MODELS


class Photos:
    """The photos of ../shared/faces the tests use, named by where they are.

    `photos("Madonna", "val_1")`: the bytes of five_celebrity/Madonna/val_1.jpg, `.path(...)` its
    path; `.train(person, count)`: that person's first train_* photos in their numbered order;
    `.lfw(person, n)`: the path of LFW's n-th photo of a person; `.nonface()`: the first photo
    without a face (`.nonface_path()` its path).
    """

    def __init__(self, root: Path):
        self.root = root

    def path(self, person: str, name: str) -> Path:
        return self.root / "five_celebrity" / person / f"{name}.jpg"

    def __call__(self, person: str, name: str) -> bytes:
        return self.path(person, name).read_bytes()

    def train(self, person: str, count: int | None = None) -> list[bytes]:
        folder = self.root / "five_celebrity" / person
        paths = sorted(folder.glob("train_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))
        return [p.read_bytes() for p in paths[:count]]

    def lfw(self, person: str, n: int) -> Path:
        return self.root / "lfw" / person / f"{person}_{n:04d}.jpg"

    def nonface_path(self) -> Path:
        return sorted((self.root / "nonface").iterdir())[0]

    def nonface(self) -> bytes:
        return self.nonface_path().read_bytes()


@pytest.fixture(scope="session")
def photos(faces_dir) -> Photos:
    return Photos(faces_dir)


def wait_until(cond, timeout: float = 15.0, every: float = 0.05, pause=time.sleep) -> bool:
    """Poll `cond` until it is true or `timeout` seconds pass; returns whether it came true.

    `cond` is asked once more when the time is up, so a wait that ends as it comes true counts.
    `pause(seconds)` waits between two polls: a `threading.Condition`'s `wait` (its lock held)
    wakes the poll as soon as the condition is notified.
    """
    deadline = time.monotonic() + timeout
    while not cond():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        pause(min(every, left))
    return True


def code_of(fn, *args, **kw) -> int:
    """The API code of the `ApiError` that `fn(*args, **kw)` raises (fails the test if none)."""
    with pytest.raises(ApiError) as info:
        fn(*args, **kw)
    return info.value.code
