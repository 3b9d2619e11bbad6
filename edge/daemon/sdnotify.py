"""systemd's notify protocol by hand: one datagram to $NOTIFY_SOCKET (sd_notify(3)).

No dependency for four lines: READY=1 once serving, WATCHDOG=1 from the main loop (so a hung
loop, not just a dead process, gets the service restarted), STOPPING=1 on shutdown.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send `state` to systemd; False when not run by systemd (no socket) or it failed."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec (systemd's advice), or None when no watchdog is configured."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
