"""The edge's channels (local API, MQTT commands) have a key of their own by default, never the
hub's (issue 24, item 1): with `[api] credentials` empty the edge once checked them with the
`[hub]` tenant key, so a signature read on the broker or in front of the door was good on the
hub too, and the hub's signatures opened the door's channels. A real hub, mosquitto and daemon.
"""

from __future__ import annotations

import json
import os
import tomllib

import httpx
import pytest

from edge.core import errors
from edge.core.settings import ConfigError
from edge.core.signature import sign
from edge.daemon.api_key import FILE_NAME, own_credential
from edge.daemon.commands import signed_command
from edge.daemon.config import load
from tests.conftest import free_port
from tests.support.broker import DaemonProc, broker_with_clients, write_edge_config
from tests.support.hub import post, start_hub

DEVICE = "door-ownkey"


def _claimed(sub, request_id: str) -> list[dict]:
    return [e for e in sub.json("/event") if (e.get("claim") or {}).get("request_id") == request_id]


def test_by_default_the_hubs_key_opens_none_of_the_edges_channels_and_the_edges_key_not_the_hub(
        tmp_path, models_dir):
    (tmp_path / "hub").mkdir()
    (tmp_path / "mqtt").mkdir()
    with start_hub(tmp_path / "hub") as hub, \
            broker_with_clients(tmp_path / "mqtt", f"test/{DEVICE}/#") as (broker, sub, pub):
        port = free_port()
        cfg = write_edge_config(tmp_path / "edge.toml", device=DEVICE, camera=f"files:{tmp_path}/none/*",
                                broker=broker, hub=hub, storage=tmp_path / "data", api_port=port,
                                sections={"api": {"credentials": []}})  # the default: none configured
        daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
        try:
            daemon.wait_health(lambda h: h["mqtt"]["connected"], 60)
            key_file = tmp_path / "data" / FILE_NAME
            assert key_file.stat().st_mode & 0o777 == 0o600
            # the folder too, whatever the umask: its names and sizes say which keys there are
            # and how busy the door's log is
            assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
            own = tomllib.loads(key_file.read_text())
            assert own["appid"] == hub.appid and own["secret_key"] != hub.secret_key
            log = (tmp_path / "daemon.log").read_text()
            assert str(key_file) in log and own["secret_key"] not in log

            claim_url = f"http://127.0.0.1:{port}/edge/claim"
            body = {"appid": hub.appid, "person_id": "bob", "timeout_s": 0.5}
            # the hub's tenant key (an SDK's multi-use signature) on the local API
            with_hub_key = httpx.post(claim_url, json={**body, "request_id": "hub-key"}, timeout=10,
                                      headers={"Authorization": sign(hub.appid, hub.secret_id, hub.secret_key)})
            assert with_hub_key.json()["code"] == errors.SECRET_ID_UNKNOWN, with_hub_key.text
            # and as a badge reader's command
            command = signed_command("verify", hub.appid, hub.secret_id, hub.secret_key, person_id="bob",
                                     request_id="hub-key-cmd", timeout_s=0.5)
            pub.publish(f"test/{DEVICE}/cmd/verify", json.dumps(command), qos=1).wait_for_publish(5)
            # the edge's own key opens both
            edge_auth = sign(own["appid"], own["secret_id"], own["secret_key"])
            ok = httpx.post(claim_url, json={**body, "request_id": "own-key"}, timeout=10,
                            headers={"Authorization": edge_auth})
            assert ok.json()["code"] == 0, ok.text
            assert sub.wait_for(lambda: _claimed(sub, "own-key"), 20)
            own_command = signed_command("verify", own["appid"], own["secret_id"], own["secret_key"],
                                         person_id="carol", request_id="own-key-cmd", timeout_s=0.5)
            pub.publish(f"test/{DEVICE}/cmd/verify", json.dumps(own_command), qos=1).wait_for_publish(5)
            assert sub.wait_for(lambda: _claimed(sub, "own-key-cmd"), 20)
            assert not _claimed(sub, "hub-key-cmd") and not _claimed(sub, "hub-key")
            # a signature read on the edge's channels is nothing on the hub
            sniffed = post(hub, "getgroupids", json={"appid": hub.appid}, authorization=edge_auth)
            assert sniffed["code"] == errors.SECRET_ID_UNKNOWN, sniffed
        finally:
            assert daemon.terminate() == 0
        # a restart keeps the key the badge reader was given
        assert tomllib.loads(key_file.read_text()) == own


def test_an_api_credential_with_the_hubs_key_is_refused_at_start(tmp_path):
    class Hub:
        url, appid, secret_id, secret_key = "http://127.0.0.1:9", "1000001", "AKIDhub", "h" * 32

    cfg = write_edge_config(tmp_path / "edge.toml", device=DEVICE, camera=f"files:{tmp_path}/none/*",
                            broker=None, hub=Hub, storage=tmp_path / "data", api_port=free_port(),
                            sections={"api": {"credentials": [
                                {"appid": "1000001", "secret_id": "AKIDedge", "secret_key": "h" * 32}]}})
    with pytest.raises(ConfigError, match=r"\[hub\] secret_key") as err:
        load(cfg)
    assert "h" * 32 not in str(err.value)


def test_a_key_file_others_can_read_is_refused(tmp_path):
    made = own_credential(tmp_path, "1000001")
    assert own_credential(tmp_path, "1000001") == made  # made once, read after
    (tmp_path / FILE_NAME).chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        own_credential(tmp_path, "1000001")


def test_an_appid_with_a_quote_makes_a_key_file_the_next_start_reads(tmp_path):
    """The file was written with the appid between quotes as is: an appid holding one made a
    file no start could read (each start refused it, nothing made a new one)."""
    made = own_credential(tmp_path, 'site"1')
    assert made.appid == 'site"1' and own_credential(tmp_path, 'site"1') == made


@pytest.mark.skipif(os.geteuid() != 0, reason="the chown happens as root only")
def test_edge_id_as_root_never_hands_the_file_a_symlink_points_to(tmp_path, monkeypatch):
    """Run as root, `edge-id` made the key in the service user's directory, then chowned it by
    name to that user: swapped for a symlink in between (the user owns the directory), root's
    file it points to was handed over. Now by the open file, never following a link."""
    import argparse

    from edge.daemon import api_key, edge_id_cli
    from edge.dev.devstack import write_toml

    storage = tmp_path / "edge"
    storage.mkdir(mode=0o700)
    os.chown(storage, 4321, 4321)  # the service user's directory
    victim = tmp_path / "shadow"
    victim.write_text("root's")
    made = api_key.own_credential

    def made_then_swapped(path, appid):  # the service user's move, between the making and the chown
        cred = made(path, appid)
        (path / api_key.FILE_NAME).unlink()
        (path / api_key.FILE_NAME).symlink_to(victim)
        return cred

    monkeypatch.setattr(api_key, "own_credential", made_then_swapped)
    cfg = write_toml(tmp_path / "edge.toml", {"storage": {"path": str(storage)}, "hub": {"appid": "site"}},
                     private=True)
    assert edge_id_cli.run(argparse.Namespace(config=str(cfg))) == 2
    assert victim.stat().st_uid == 0  # still root's
