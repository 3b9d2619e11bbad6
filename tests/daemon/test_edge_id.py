"""The edge's id (what its hub key is bound to) outlives a new local API key: a real hub and a
real daemon syncing with a key bound to it, restarted after its `api-key.toml` was replaced."""

from __future__ import annotations

import tomllib

import pytest

from edge.core.settings import ConfigError
from edge.daemon import api_key
from edge.daemon.edge_id import FILE_NAME, own_edge_id
from tests.conftest import free_port
from tests.support.broker import DaemonProc, write_edge_config
from tests.support.hub import APPID, bind_edge_key, hub_with_five_enrolled


def test_a_new_local_key_keeps_the_id_the_hub_key_is_bound_to(tmp_path, faces_dir):
    """docs/security.md says: a badge reader's key taken, delete api-key.toml and restart. The
    id was that key's SecretId, so the door then reported and uploaded under a new id, which its
    bound hub key refused: syncs failed (-1530) until the door was bound again on the hub."""
    storage = tmp_path / "door"
    storage.mkdir(mode=0o700)
    drop = tmp_path / "drop"
    drop.mkdir()
    key = bind_edge_key(tmp_path / "hub", storage)
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub:
        port = free_port()
        cfg = write_edge_config(tmp_path / "edge.toml", device="door-id", camera=f"files:{drop}/*", broker=None,
                                hub=hub.key_for(key), storage=storage, api_port=port, loop=True,
                                sections={"mqtt": {"enabled": False}})

        def synced_ok() -> None:
            daemon = DaemonProc(cfg, port, tmp_path / "edge.log").start()
            try:
                daemon.wait_health(lambda h: h["sync"].get("status") == "ok", 30)
            finally:
                assert daemon.terminate() == 0

        synced_ok()
        first_local = tomllib.loads((storage / api_key.FILE_NAME).read_text())["secret_id"]
        assert (storage / FILE_NAME).read_text().strip() == key.edge_id == first_local  # kept from the key
        (storage / api_key.FILE_NAME).unlink()  # the local key rotated, as documented
        synced_ok()
        assert tomllib.loads((storage / api_key.FILE_NAME).read_text())["secret_id"] != first_local
        assert [(r.edge_id, r.key) for r in hub.store.edge_reports(APPID)] == [(key.edge_id, "edge")]


def test_an_edge_id_file_that_holds_no_id_is_refused_not_sent(tmp_path):
    (tmp_path / FILE_NAME).write_text("door one/../x\n")
    with pytest.raises(ConfigError, match="holds no edge id"):
        own_edge_id(tmp_path, "site")
    (tmp_path / FILE_NAME).unlink()
    made = own_edge_id(tmp_path, "site")  # taken from the local key, which is made first
    assert made == api_key.own_credential(tmp_path, "site").secret_id == own_edge_id(tmp_path, "site")
