"""A local key limited to some calls ([api] credentials `calls`): the badge reader's key was good
for every local call, so one read out of a reader on the wall identified any photo against the
members (their ids, the five nearest, confidences: an oracle to tune a photo at 5/s) and could
trigger syncs. Given ["claim", "cmd/verify"] it makes claims and nothing else: refused before its
signature is used up. A real daemon's local API; the MQTT gate with real signatures."""

from __future__ import annotations

import httpx
import pytest

from edge.core import errors
from edge.core.settings import ConfigError
from edge.core.signature import Credential, sign
from edge.daemon.commands import CommandGate, signed_command
from tests.conftest import free_port
from tests.support.broker import EDGE_API, DaemonProc, edge_auth, write_edge_config

READER = Credential(EDGE_API.appid, "AKIDbadgereader", "b" * 40, calls=("claim", "cmd/verify"))


class NoHub:  # a [hub] nobody answers at
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDcallstest", "k" * 32


def _reader_auth(**kw) -> str:
    return sign(READER.appid, READER.secret_id, READER.secret_key, **kw)


def test_a_claim_only_key_claims_and_cannot_identify_or_verify(tmp_path, faces_dir):
    port = free_port()
    keys = [{"appid": EDGE_API.appid, "secret_id": EDGE_API.secret_id, "secret_key": EDGE_API.secret_key},
            {"appid": READER.appid, "secret_id": READER.secret_id, "secret_key": READER.secret_key,
             "calls": list(READER.calls)}]
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-calls", camera=f"files:{tmp_path}/none/*",
                            broker=None, hub=NoHub, storage=tmp_path / "data", api_port=port,
                            sections={"api": {"credentials": keys}})
    photo = (faces_dir / "five_celebrity/Madonna/val_1.jpg").read_bytes()
    daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        daemon.wait_health(lambda h: True, 60)
        with httpx.Client(timeout=30) as client:
            def face(op: str, auth: str, **data) -> dict:
                return client.post(f"{url}/face/{op}", files={"image": ("door.jpg", photo, "image/jpeg")},
                                   data={"appid": EDGE_API.appid, **data}, headers={"Authorization": auth}).json()

            once = _reader_auth(expiry=0, fileid="/face/identify")
            refused = face("identify", once, group_ids="staff")
            assert refused["code"] == errors.KEY_CALL_REFUSED and not refused["data"]  # no candidates
            assert face("verify", _reader_auth(), person_id="madonna")["code"] == errors.KEY_CALL_REFUSED
            assert face("identify", once, group_ids="staff")["code"] == errors.KEY_CALL_REFUSED  # not 13: never used
            claimed = client.post(f"{url}/edge/claim", json={"appid": READER.appid, "person_id": "madonna"},
                                  headers={"Authorization": _reader_auth(expiry=0, fileid="/edge/claim")}).json()
            assert claimed["code"] == 0
            # a key without `calls` makes every call, as before
            assert face("identify", edge_auth(), group_ids="staff")["code"] not in (errors.KEY_CALL_REFUSED,)
    finally:
        assert daemon.terminate() == 0
    assert READER.secret_key not in (tmp_path / "daemon.log").read_text()


def test_a_claim_only_key_sends_claims_and_no_other_command():
    claimed: list[str] = []

    class Claims:
        def open(self, person_id, timeout_s, request_id):
            claimed.append(person_id)

    opened: list[str] = []
    gate = CommandGate("signed", [READER], rate_per_s=0, burst=5, claims=Claims(), door="main",  # type: ignore[arg-type]
                       unlock=lambda door, who: opened.append(who) or True)

    def command(name: str, **kw) -> dict:
        return signed_command(name, READER.appid, READER.secret_id, READER.secret_key, **kw)

    assert gate.handle("verify", command("verify", person_id="madonna")) and claimed == ["madonna"]
    assert not gate.handle("sync", command("sync"))
    assert not gate.handle("unlock", command("unlock", door="main")) and opened == []
    assert gate.refused == {"key_not_allowed": 2}


def test_a_call_a_key_cannot_be_given_is_a_config_error(tmp_path):
    from edge.daemon.config import load
    from edge.dev.devstack import write_toml

    cfg = write_toml(tmp_path / "edge.toml", {"api": {"credentials": [
        {"appid": "site", "secret_id": "AKIDx", "secret_key": "s" * 40, "calls": ["claim", "setrules"]}]}},
        private=True)
    with pytest.raises((ConfigError, ValueError)):
        load(cfg)
