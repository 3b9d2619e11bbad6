"""`[door] backend = "none"`: no hardware. The relay is a value the state machine sets and
/health shows; with `simulate_inputs` a file's appended lines are read as the door's inputs
(the demo opens the door without a grant this way to show a forced-open alarm).

Lines: `contact open|closed`, `exit press|release`, `tamper on|off`; anything else is ignored
(logged once per line). For demos and tests only: on a real door the inputs are wired (gpio).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from edge.door.interface import DoorInput, GrantNotice, InputKind

log = logging.getLogger("edge.door")

POLL_S = 0.1
WORDS = {"contact": (InputKind.CONTACT, "open", "closed"), "exit": (InputKind.EXIT, "press", "release"),
         "tamper": (InputKind.TAMPER, "on", "off")}


def parse_line(line: str) -> DoorInput | None:
    parts = line.split()
    if len(parts) != 2 or parts[0] not in WORDS:
        return None
    kind, on, off = WORDS[parts[0]]
    if parts[1] not in (on, off):
        return None
    return DoorInput(kind, parts[1] == on, time.monotonic(), detail={"simulated": True})


class NoHardware:
    name = "none"

    def __init__(self, simulate_inputs: str | Path | None = None):
        self.energised = False
        self.switches = 0
        self.grants_announced = 0
        self._path = Path(simulate_inputs) if simulate_inputs else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_input: Callable[[DoorInput], None]) -> None:
        if self._path is not None:
            self._thread = threading.Thread(target=self._follow, args=(on_input,), name="door-simulated",
                                            daemon=True)
            self._thread.start()

    def set_relay(self, energised: bool) -> None:
        if energised != self.energised:
            self.switches += 1
        self.energised = energised

    def announce_grant(self, notice: GrantNotice) -> None:
        self.grants_announced += 1

    def indicate(self, what: str) -> None:
        pass

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "relay_energised": self.energised, "simulated_inputs": self._path is not None}

    def close(self) -> None:
        self.energised = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _follow(self, on_input: Callable[[DoorInput], None]) -> None:
        assert self._path is not None
        offset = 0
        while not self._stop.wait(POLL_S):
            try:
                with self._path.open("rb") as f:
                    f.seek(offset)
                    data = f.read(64 * 1024)
            except OSError:
                continue  # not there yet
            end = data.rfind(b"\n") + 1  # whole lines only
            offset += end
            for raw in data[:end].splitlines():
                event = parse_line(raw.decode("utf-8", "replace").strip())
                if event is None:
                    log.warning("door simulation: ignoring a line that is not an input")
                else:
                    on_input(event)
