"""Issue 24 (hardening, round two) item 2: the edge's MQTT commands and its local API share one
table of used single-use signatures (signatures.db) but accept them for different times around
their `t` (60 s, 1 h). A command's row used to be dropped after 60 s, and the local API then
accepted the same signature at 62 s: "single-use", used twice.

The gate and the API's verifier are built as the daemon builds them (CommandGate.from_settings,
and Verifier(credentials, replay_cache(storage)) as edge.daemon.local_api does) on one real
SQLite file; the wall clock is injected, so no test waits out the 60 s."""

from __future__ import annotations

import sqlite3
import time

import pytest

from edge.core import errors
from edge.core.signature import Verifier
from edge.daemon.claims import Claims
from edge.daemon.commands import MAX_AGE_S, CommandGate
from edge.daemon.config import load
from edge.daemon.local_api import credentials
from edge.daemon.signature_log import FILE_NAME, KEEP_S, replay_cache
from tests.conftest import code_of, free_port
from tests.support.broker import edge_auth, write_edge_config


class NoHub:  # a [hub] nobody answers at; the local API and commands take EDGE_API, not its key
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDwindows", "w" * 32


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def edge(tmp_path):
    """(the command gate, the local API's verifier, the clock they read, the storage dir)."""
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-win", camera=f"files:{tmp_path}/none/*",
                            broker=None, hub=NoHub, storage=tmp_path / "data", api_port=free_port())
    s = load(cfg)
    (tmp_path / "data").mkdir()
    clock = Clock(time.time())
    gate = CommandGate.from_settings(s, Claims(5.0), None, clock=clock)
    api = Verifier(credentials(s), replay_cache(s.storage.path))  # as edge.daemon.local_api builds it
    return gate, api, clock, tmp_path / "data"


def _command(t: float, person_id: str = "bob") -> dict:
    auth = edge_auth(expiry=0, now=int(t), fileid=f"verify:{person_id}")
    return {"person_id": person_id, "authorization": auth, "timeout_s": 0.5}


def test_a_command_signature_is_refused_by_the_local_api_after_the_command_window(edge):
    gate, api, clock, data = edge
    t0 = clock.now
    command = _command(t0)
    assert gate.handle("verify", command) is True
    clock.now = t0 + 30
    assert gate.handle("verify", command) is False  # a replay within the command window
    # 62 s later (past the command's 60 s, within the API's hour): the same signature on
    # POST /edge/claim used to be accepted
    assert code_of(api.check, command["authorization"], now=t0 + MAX_AGE_S + 2) == errors.REPLAY
    assert code_of(api.check, command["authorization"], now=t0 + KEEP_S - 1) == errors.REPLAY
    # and the row itself is kept for the API's window, across restarts (the file)
    with sqlite3.connect(data / FILE_NAME) as db:
        (valid_until,) = db.execute("SELECT valid_until FROM used_signatures").fetchone()
    assert valid_until >= int(t0) + KEEP_S


def test_an_api_signature_is_refused_by_the_commands_too(edge):
    gate, api, clock, data = edge
    t0 = clock.now
    command = _command(t0, "carol")
    api.check(command["authorization"], now=t0)
    clock.now = t0 + 1
    assert gate.handle("verify", command) is False
    assert gate.refused == {"signature": 1}


def test_every_consumer_keeps_a_signature_at_least_as_long_as_it_accepts_it(tmp_path):
    for window in (MAX_AGE_S, None):
        cache = replay_cache(tmp_path, window)
        assert cache.keep_s == KEEP_S >= cache.window_s
    with pytest.raises(ValueError):
        replay_cache(tmp_path, KEEP_S + 1)


def test_a_command_played_again_after_the_clock_was_set_back_is_refused(edge):
    """A used signature's row goes once its time is past. With the clock then set back to when a
    captured command was signed (an NTP step, a reboot without a real-time clock), the command
    was valid again and nothing remembered it: a sniffed cmd/verify (or cmd/unlock) worked a
    second time. Rows forgotten are now remembered as a time: older signatures are refused."""
    gate, api, clock, data = edge
    t0 = clock.now
    command = _command(t0, "dave")
    assert gate.handle("verify", command) is True
    clock.now = t0 + KEEP_S + 10  # later, another command: the row of the first one is forgotten
    assert gate.handle("verify", _command(clock.now, "erin")) is True
    with sqlite3.connect(data / FILE_NAME) as db:
        assert db.execute("SELECT COUNT(*) FROM used_signatures").fetchone()[0] == 1
    clock.now = t0 + 5  # the clock set back to when the captured command was signed
    assert gate.handle("verify", command) is False and gate.refused == {"signature": 1}
    # fail closed: for as long as the clock is more than KEEP_S behind where it was, fresh
    # commands are refused too (the log says for how long); then taken again
    assert gate.handle("verify", _command(clock.now, "fred")) is False
    clock.now = t0 + 11
    assert gate.handle("verify", _command(clock.now, "gina")) is True
