"""Two facts about the machine a command runs on, kept in one place.

- Where the research photos are: `../shared/faces` beside the checkout, or
  `$EDGE_VERIFIER_SHARED/faces`. They are never part of the repository; the commands that use
  them (model calibration, demo, benchmarks) and the tests all find them here.
- A free TCP port on loopback, for the servers the demo and the benchmarks start.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def shared_faces_dir() -> Path:
    return Path(os.environ.get("EDGE_VERIFIER_SHARED", _CHECKOUT.parent / "shared")) / "faces"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
