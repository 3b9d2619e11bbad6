"""A single-use signature the edge accepted stays used across a daemon restart: a captured
local API request or MQTT command cannot be played again after a power cut (real daemon
processes, real mosquitto)."""

from __future__ import annotations

import json
import time

import httpx

from edge.core import errors
from tests.conftest import free_port
from tests.support.broker import EDGE_API, DaemonProc, broker_with_clients, edge_auth, edge_command, write_edge_config

DEVICE = "door-replay"


class NoHub:  # a [hub] nobody answers at; the local API and commands take EDGE_API, not its key
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDreplay", "r" * 32


def _claims(sub) -> list[str]:
    """The claims decided, once per event (the outbox sends at least once: a restart may resend)."""
    events = {e["event_id"]: e for e in sub.json("/event") if e.get("claim")}
    return [e["claim"]["request_id"] for e in events.values()]


def test_a_request_and_a_command_used_before_a_restart_are_refused_after_it(tmp_path, models_dir):
    with broker_with_clients(tmp_path, f"test/{DEVICE}/#") as (broker, sub, pub):
        port = free_port()
        cfg = write_edge_config(tmp_path / "edge.toml", device=DEVICE, camera=f"files:{tmp_path}/none/*",
                                broker=broker, hub=NoHub, storage=tmp_path / "data", api_port=port)
        claim = {"appid": EDGE_API.appid, "person_id": "bob", "request_id": "api-once", "timeout_s": 0.5}
        once = {"Authorization": edge_auth(expiry=0, fileid="/edge/claim")}
        command = json.dumps(edge_command("verify", person_id="carol", request_id="cmd-once", timeout_s=0.5))
        topic = f"test/{DEVICE}/cmd/verify"
        answers = []
        for run in range(2):
            daemon = DaemonProc(cfg, port, tmp_path / f"daemon{run}.log").start()
            try:
                daemon.wait_health(lambda h: h["mqtt"]["connected"], 60)
                answers.append(httpx.post(f"http://127.0.0.1:{port}/edge/claim", json=claim, headers=once,
                                          timeout=10).json()["code"])
                if run == 0:  # one claim waits at a time: the command after the request's event
                    assert sub.wait_for(lambda: _claims(sub) == ["api-once"], 20), _claims(sub)
                pub.publish(topic, command, qos=1).wait_for_publish(5)
                if run == 0:
                    assert sub.wait_for(lambda: _claims(sub) == ["api-once", "cmd-once"], 20), _claims(sub)
                else:
                    time.sleep(2.0)  # a command applied again would have timed out into an event by now
            finally:
                assert daemon.terminate() == 0
        assert answers == [0, errors.REPLAY]
        assert _claims(sub) == ["api-once", "cmd-once"]  # nothing decided twice
        assert (tmp_path / "data" / "signatures.db").stat().st_mode & 0o077 == 0
