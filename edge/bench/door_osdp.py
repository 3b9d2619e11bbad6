"""Grant -> card read at a real libosdp control panel, p50/p99 in ms, for `bench door-io`.

A libosdp ControlPanel (the site's panel) runs on the master side of a pseudo-terminal; the
reader (edge.door.osdp.OsdpReader) opens the slave side by path, as it opens an RS-485 adapter,
and they set up the secure channel. Each sample is the time from `announce_grant` to the card
read arriving at the panel's event queue, decrypted, checked byte for byte. The panel polls
every 50 ms (libosdp's OSDP_PD_POLL_TIMEOUT_MS), so the figure is mostly where in the poll
cycle the grant falls: about 25 ms on average, up to a poll period and a round trip.

The panel's parts (Pty, MasterChannel, Panel) serve the OSDP tests too.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import time
import tty
from dataclasses import dataclass
from pathlib import Path

import osdp


class MasterChannel(osdp.Channel):
    """libosdp's channel on the pty's master side: non-blocking, never raises."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self.fd, max_bytes)
        except OSError:  # EAGAIN, or EIO while no one holds the slave side
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self.fd, buf)
        except OSError:
            return 0

    def flush(self) -> None:
        pass


@dataclass
class Pty:
    master: int
    slave: int  # held open so the master never reads EIO while the reader reopens its side
    path: str

    @classmethod
    def open(cls) -> Pty:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        return cls(master, slave, os.ttyname(slave))

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Panel:
    """One libosdp ControlPanel talking to one reader at `address` over `pty`."""

    def __init__(self, pty: Pty, address: int, scbk: bytes | None):
        self.address = address
        info = osdp.PDInfo(address, MasterChannel(pty.master), scbk=scbk)
        self.cp = osdp.ControlPanel([info], log_level=osdp.LogLevel.Warning)
        self.cp.start()
        self._running = True

    def secure(self) -> bool:
        return bool(self.cp.is_sc_active(self.address))

    def online(self) -> bool:
        return bool(self.cp.is_online(self.address))

    def event(self, timeout: float) -> dict | None:
        return self.cp.get_event(self.address, timeout=timeout)

    def events_until(self, want, timeout: float) -> dict | None:
        """The first event `want(event)` accepts within `timeout` seconds (others are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self.event(min(left, 0.5))
            if event is not None and want(event):
                return event
        return None

    def command(self, cmd: dict) -> bool:
        return bool(self.cp.submit_command(self.address, cmd))

    def stop(self) -> None:
        if self._running:
            self._running = False
            self.cp.stop()


def measure_card_read(samples: int = 100, *, baud: int = 115200, address: int = 1,
                      timeout_s: float = 5.0) -> dict[str, float]:
    """{"p50", "p99", "mean", "max", "samples"} in ms from announce_grant to the card read at the panel."""
    from edge.core.credentials import Credential, to_bytes
    from edge.door.interface import GrantNotice
    from edge.door.osdp import OsdpReader, OsdpSettings, write_scbk

    cred = Credential("h10301", 12345, facility=42)
    data, length = to_bytes(cred)
    key = secrets.token_bytes(16)
    pty = Pty.open()
    with tempfile.TemporaryDirectory(prefix="door-osdp-bench-") as tmp:
        secrets_file = Path(tmp) / "secrets.toml"
        write_scbk(secrets_file, key)
        reader = OsdpReader(OsdpSettings(device=pty.path, baud=baud, address=address,
                                         secrets_file=str(secrets_file), libosdp_log="error"))
        reader.start(lambda _: None)
        panel = Panel(pty, address, key)
        try:
            deadline = time.monotonic() + 15
            while not (panel.secure() and reader.health()["secure_channel"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("the panel and the reader set up no secure channel in 15 s")
                time.sleep(0.02)
            times = []
            for i in range(samples):
                notice = GrantNotice(f"bench-{i}", "bench", (cred,))
                t0 = time.perf_counter()
                reader.announce_grant(notice)
                event = panel.events_until(lambda e: e.get("event") == osdp.Event.CardRead, timeout_s)
                t1 = time.perf_counter()
                if event is None or event["data"] != data or event["length"] != length:
                    raise RuntimeError(f"sample {i}: no card read or not the one sent")
                times.append((t1 - t0) * 1000)
                time.sleep(0.013 * (i % 7))  # spread the grants over the poll cycle
        finally:
            panel.stop()
            reader.close()
            pty.close()
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    return {"p50": round(statistics.median(times), 2), "p99": round(p99, 2),
            "mean": round(statistics.fmean(times), 2), "max": round(times[-1], 2), "samples": len(times)}


if __name__ == "__main__":  # python -m edge.bench.door_osdp [samples]
    import json
    import sys

    print(json.dumps(measure_card_read(int(sys.argv[1]) if len(sys.argv) > 1 else 100)))
