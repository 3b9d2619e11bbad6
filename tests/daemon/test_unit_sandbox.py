"""The edge unit's system call filter (systemd/edge-verifier.service), computed as systemd applies
it from this machine's systemd's own groups (`systemd-analyze syscall-filter`), against the calls
the daemon makes: systemd answers a call outside the filter with SIGSYS, killing the daemon on
the first call of a code path the tests never ran under the unit (none runs under systemd here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent


def _syscalls(group: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a systemd filter group, as this machine's systemd defines it."""
    seen = set() if seen is None else seen
    listing = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True,
                             timeout=30, check=True).stdout.splitlines()[1:]
    out: set[str] = set()
    for line in (item.strip() for item in listing):
        if line.startswith("@") and line not in seen:
            seen.add(line)
            out |= _syscalls(line, seen)
        elif line and not line.startswith(("#", "@")):
            out.add(line)
    return out


def unit_allows() -> set[str]:
    """The calls the edge unit lets the daemon make (its first filter is an allow list: later
    lines add, `~` lines remove; ProtectClock removes @clock)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's filter cannot be computed here")
    allowed: set[str] = set()
    for line in (ROOT / "systemd" / "edge-verifier.service").read_text().splitlines():
        if line.startswith("SystemCallFilter="):
            for item in line.split("=", 1)[1].split():
                name = item.lstrip("~")
                names = _syscalls(name) if name.startswith("@") else {name}
                allowed = allowed - names if item.startswith("~") else allowed | names
        if line.replace(" ", "") in ("ProtectClock=true", "ProtectClock=yes"):
            allowed -= _syscalls("@clock")
    return allowed


def test_the_units_system_call_filter_lets_the_door_read_the_clocks_synchronisation():
    """The door's clock check ([door] clock_check = "kernel", the default) reads adjtimex, and
    the unit allowed only @system-service, minus @privileged, with ProtectClock on: the daemon
    was killed (and restarted, and killed) whenever a synced schedule set the door unlocked."""
    allowed = unit_allows()
    assert {"adjtimex", "read", "openat", "futex"} <= allowed
    assert "settimeofday" not in allowed and "clock_settime" not in allowed


def test_every_call_the_daemon_makes_on_a_door_run_is_in_the_units_filter(tmp_path):
    """A real daemon run (hub, mosquitto, the gpio door on mock pins, the models on photos, a
    grant and a signed remote unlock: tests/door/test_daemon_door.py) under strace: every system
    call any of its processes made is one the unit allows. The hub and mosquitto run in the same
    trace: a superset of the daemon's calls."""
    allowed = unit_allows()
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (make test installs it when run as root)")
    summary = tmp_path / "calls.txt"
    run = subprocess.run(["strace", "-f", "-c", "-o", str(summary), sys.executable, "-m", "pytest", "-q", "-x",
                          "-p", "no:cacheprovider", "tests/door/test_daemon_door.py",
                          "-k", "opens_for_an_enrolled_person"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    used = {line.split()[-1] for line in summary.read_text().splitlines()[2:]
            if line.split() and not line.startswith("-") and line.split()[-1] != "total"}
    assert len(used) > 40, used  # the trace saw the run
    if os.geteuid() == 0:  # SQLite gives root's files their database's owner; the unit runs as its own user
        used.discard("fchown")
    assert used - allowed == set()
