"""Issue 24 (hardening, round two) items 3 and 6 against a real edge daemon and a real
mosquitto: one crafted message must not silence the door's commands, and a tampered copy of a
sniffed command must not burn the genuine command's single-use signature."""

from __future__ import annotations

import json

import httpx
import pytest

from edge.daemon.commands import signed_command
from tests.conftest import free_port, wait_until
from tests.support.broker import DaemonProc, broker_with_clients, write_edge_config

DEVICE = "door-chan"
TOPIC = f"test/{DEVICE}/cmd/verify"


class NoHub:  # only its credentials matter: they sign the local API and the commands
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDchannel", "h" * 32


def _signed(person_id: str, **fields) -> dict:
    return signed_command("verify", NoHub.appid, NoHub.secret_id, NoHub.secret_key, person_id=person_id,
                          **fields)


@pytest.fixture(scope="module")
def door(tmp_path_factory, models_dir):
    tmp = tmp_path_factory.mktemp("chan")
    with broker_with_clients(tmp, f"test/{DEVICE}/#") as (broker, sub, pub):
        port = free_port()
        cfg = write_edge_config(tmp / "edge.toml", device=DEVICE, camera=f"files:{tmp}/none/*", broker=broker,
                                hub=NoHub, storage=tmp / "data", api_port=port)
        daemon = DaemonProc(cfg, port, tmp / "daemon.log").start()
        try:
            daemon.wait_health(lambda h: h["mqtt"]["connected"], 60)
            yield daemon, sub, pub, tmp / "daemon.log"
        finally:
            daemon.terminate()


def _claimed(sub, request_id: str) -> list[dict]:
    return [e for e in sub.json("/event") if (e.get("claim") or {}).get("request_id") == request_id]


def _publish(pub, payload: bytes | str) -> None:
    pub.publish(TOPIC, payload, qos=1).wait_for_publish(5)


def test_a_tampered_copy_of_a_command_does_not_burn_the_genuine_ones_signature(door):
    """A sniffed command republished with another person_id (or a field off its schema) is
    refused, and the genuine command with that same signature is applied afterwards."""
    daemon, sub, pub, log = door
    genuine = _signed("bob", request_id="genuine", timeout_s=0.5)
    _publish(pub, json.dumps({**genuine, "person_id": "mallory", "request_id": "tampered"}))
    _publish(pub, json.dumps({**genuine, "request_id": "tampered-timeout", "timeout_s": "forever"}))
    _publish(pub, json.dumps({**genuine, "request_id": ["tampered-type"]}))
    _publish(pub, json.dumps(genuine))
    assert sub.wait_for(lambda: _claimed(sub, "genuine"), 20), "the genuine command was refused"
    assert not _claimed(sub, "tampered") and not _claimed(sub, "tampered-timeout")
    assert _claimed(sub, "genuine")[0]["claim"]["person_id"] == "bob"
    # and the genuine one is still single-use
    _publish(pub, json.dumps({**genuine}))
    metrics = lambda: httpx.get(f"http://127.0.0.1:{daemon.api_port}/metrics", timeout=10).text  # noqa: E731
    assert wait_until(lambda: _count(metrics(), "signature") >= 2, 10)
    assert len(_claimed(sub, "genuine")) == 1
    assert genuine["authorization"] not in log.read_text()


def _count(metrics: str, result: str) -> float:
    line = [x for x in metrics.splitlines()
            if x.startswith(f'edge_commands_total{{command="verify",result="{result}"}}')]
    return float(line[0].split()[-1]) if line else 0.0
