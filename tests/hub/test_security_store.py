"""The hub's store under attack and failure: replayed single-use signatures (across a restart,
or with a `t` set ahead), concurrent adds of one photo, file modes, a full disk, log retention."""

from __future__ import annotations

import base64
import json
import os
import resource
import secrets
import stat
import subprocess
import threading
import time
import urllib.request

import pytest

from edge.core import errors
from edge.core.errors import ApiError
from edge.core.signature import Credential, ReplayCache, Verifier, sign
from edge.hub.store import SqliteStore, VerifyRecord
from tests.conftest import MODELS, free_port, wait_until
from tests.support.broker import EDGE_VERIFIER
from tests.support.hub import APPID, SECRET_ID, HubServer, hub_settings, post, serve_app, start_hub


# --- item 10: single-use signatures -------------------------------------------------------------
def test_a_single_use_signature_cannot_be_replayed_after_a_hub_restart(tmp_path, models_dir):
    from edge.hub.server import build_app

    key, other = secrets.token_hex(16), secrets.token_hex(16)
    once = sign(APPID, SECRET_ID, key, expiry=0, fileid="/face/getgroupids")
    answers = []
    for _restart in range(2):
        port = free_port()
        app, store = build_app(hub_settings(tmp_path / "hub.sqlite3", port, key, other))
        try:
            with serve_app(app, port):
                hub = HubServer(f"http://127.0.0.1:{port}", APPID, SECRET_ID, key, tmp_path / "hub.sqlite3")
                answers.append(post(hub, "getgroupids", json={"appid": APPID}, authorization=once)["code"])
        finally:
            store.close()
    assert answers == [0, errors.REPLAY]


def test_a_sniffed_door_command_signature_does_not_open_the_hub(tmp_path, models_dir, photos):
    """By default a door's badge reader signs cmd/verify with the [hub] tenant key: a broker client
    that read one replayed its authorization on the hub and enrolled itself (newperson -> 0)."""
    from edge.daemon.commands import signed_command
    from edge.hub.server import build_app

    key, other = secrets.token_hex(16), secrets.token_hex(16)
    sniffed = signed_command("verify", APPID, SECRET_ID, key, person_id="alice")["authorization"]
    port = free_port()
    app, store = build_app(hub_settings(tmp_path / "hub.sqlite3", port, key, other))
    try:
        with serve_app(app, port):
            hub = HubServer(f"http://127.0.0.1:{port}", APPID, SECRET_ID, key, tmp_path / "hub.sqlite3")
            image = base64.b64encode(photos("Ben_Afflek", "train_1")).decode()
            enrol = {"appid": APPID, "person_id": "intruder", "group_ids": ["door"], "image": image}
            refused = post(hub, "newperson", json=enrol, authorization=sniffed)
            assert refused["code"] == errors.SIGNATURE_INVALID, refused
            assert "MQTT command" in refused["message"]
            assert post(hub, "getinfo", json={"appid": APPID, "person_id": "intruder"})["code"] != 0  # never enrolled
            assert post(hub, "newperson", json=enrol)["code"] == 0  # the hub's own signature still enrols
    finally:
        store.close()


@pytest.mark.parametrize("persistent", [False, True])
def test_a_single_use_signature_with_t_ahead_is_remembered_as_long_as_it_is_valid(tmp_path, persistent):
    store = SqliteStore(tmp_path / "s.sqlite3") if persistent else None
    verifier = Verifier([Credential(APPID, SECRET_ID, "k" * 32)], ReplayCache(window_s=3600, store=store))
    now = 1_800_000_000
    ahead = sign(APPID, SECRET_ID, "k" * 32, expiry=0, fileid="f", now=now + 3000)
    verifier.check(ahead, now=now)
    # 3,700 s after first use: still within t + 3,600, so still acceptable, so still remembered
    with pytest.raises(ApiError) as err:
        verifier.check(ahead, now=now + 3700)
    assert err.value.code == errors.REPLAY
    # once t + window has passed the signature is refused as expired, and its entry may go
    with pytest.raises(ApiError) as err:
        verifier.check(ahead, now=now + 6700)
    assert err.value.code == errors.SIGNATURE_EXPIRED
    if store:
        store.close()


# --- item 12: near-identical check inside the transaction ---------------------------------------
def test_concurrent_adds_of_the_same_photo_store_it_once(hub_server, photos):
    person = "concurrent-adds"
    created = post(hub_server, "newperson", files=[
        ("appid", (None, hub_server.appid)), ("person_id", (None, person)), ("group_ids[0]", (None, "race")),
        ("image", ("a.jpg", photos("Madonna", "train_1"), "image/jpeg"))])
    assert created["code"] == 0, created
    same = base64.b64encode(photos("Madonna", "train_2")).decode()
    results: list[dict] = []
    start = threading.Barrier(8)

    def add() -> None:
        start.wait()
        results.append(post(hub_server, "addface", json={"appid": hub_server.appid, "person_id": person,
                                                          "images": [same]}))

    threads = [threading.Thread(target=add) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    codes = sorted(r["code"] for r in results)
    assert codes == [errors.NEAR_IDENTICAL_FACE] * 7 + [0], results
    faces = post(hub_server, "getfaceids", json={"appid": hub_server.appid, "person_id": person})
    assert len(faces["data"]["face_ids"]) == 2


# --- item 15: file modes ------------------------------------------------------------------------
def test_stores_are_created_private_whatever_the_umask(tmp_path):
    from edge.core.sqlitedb import open_durable

    old = os.umask(0o022)
    try:
        hub = SqliteStore(tmp_path / "hub" / "hub.sqlite3")
        hub.log_verify(VerifyRecord("s1", "1", "p", 0.5, 50.0, False, time.time()))
        edge = open_durable(tmp_path / "edge" / "outbox.db")
        edge.execute("CREATE TABLE t (x)")
        edge.execute("INSERT INTO t VALUES (1)")
    finally:
        os.umask(old)
    files = [tmp_path / "hub" / "hub.sqlite3", tmp_path / "hub" / "hub.sqlite3-wal",
             tmp_path / "edge" / "outbox.db", tmp_path / "edge" / "outbox.db-wal"]
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    assert all(m == 0o600 for m in modes.values()), {k: oct(v) for k, v in modes.items()}
    assert stat.S_IMODE((tmp_path / "hub").stat().st_mode) == 0o700
    hub.close()
    edge.close()


# --- item 8: storage errors and the verify log ---------------------------------------------------
def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_a_full_disk_answers_1200_and_health_says_degraded_until_space_returns(tmp_path, photos, models_dir):
    """A real hub process whose file size limit is cut to 1 byte: every write fails as on a full disk."""
    port = free_port()
    key = secrets.token_hex(16)
    cfg = tmp_path / "hub.toml"
    cfg.touch(mode=0o600)
    cfg.write_text(f'[server]\nport = {port}\n[storage]\npath = "{tmp_path}/hub.sqlite3"\nkeep_face_crops = false\n'
                   f'[[credentials]]\nappid = "{APPID}"\nsecret_id = "{SECRET_ID}"\nsecret_key = "{key}"\n'
                   f'[limits]\nrate_per_s = 0\n[vision]\nmodels_dir = "{MODELS}"\n')
    log = (tmp_path / "hub.log").open("wb")
    proc = subprocess.Popen([str(EDGE_VERIFIER), "hub", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    hub = HubServer(f"http://127.0.0.1:{port}", APPID, SECRET_ID, key, tmp_path / "hub.sqlite3")
    try:
        def answers() -> bool:
            assert proc.poll() is None, (tmp_path / "hub.log").read_text()
            try:
                _get(f"{hub.url}/health")
                return True
            except OSError:
                return False

        assert wait_until(answers, 60, every=0.2), (tmp_path / "hub.log").read_text()
        photo = base64.b64encode(photos("Madonna", "train_1")).decode()
        created = post(hub, "newperson", json={"appid": APPID, "person_id": "p", "group_ids": ["g"], "image": photo})
        assert created["code"] == 0, created
        soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, hard))
        verified = post(hub, "verify", json={"appid": APPID, "person_id": "p", "image": photo})
        assert verified["code"] == errors.FEATURE_STORAGE, verified
        health = _get(f"{hub.url}/health")
        assert health["status"] == "degraded" and health["store"]["ok"] is False, health
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (soft, hard))
        assert post(hub, "verify", json={"appid": APPID, "person_id": "p", "image": photo})["code"] == 0
        assert _get(f"{hub.url}/health")["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_verify_log_rows_past_the_retention_are_deleted(tmp_path, photos, models_dir):
    with start_hub(tmp_path, storage={"verify_log_days": 30}) as hub:
        hub.store.log_verify(VerifyRecord("old-session", APPID, "p", 0.9, 90.0, True, time.time() - 31 * 86400))
        hub.store.log_verify(VerifyRecord("new-session", APPID, "p", 0.9, 90.0, True, time.time() - 29 * 86400))
        photo = base64.b64encode(photos("Madonna", "train_1")).decode()
        assert post(hub, "newperson", json={"appid": APPID, "person_id": "p", "group_ids": ["g"],
                                            "image": photo})["code"] == 0
        assert post(hub, "verify", json={"appid": APPID, "person_id": "p", "image": photo})["code"] == 0
        assert hub.store.get_verify("old-session") is None
        assert hub.store.get_verify("new-session") is not None


@pytest.mark.parametrize("url", [
    "mysql://hub:Super@Secret42@db.lan/faces",  # a password holding `@`, unencoded
    "mysql://db.lan/faces?user=hub&password=Secret42",  # credentials as parameters
    "postgresql://hub:Super@Secret42@db.lan/faces?sslpassword=Secret42",
])
def test_a_storage_url_shows_no_password_in_any_form(url):
    # The error for a url the hub cannot open, and what it logs and prints of the url it serves
    # from or migrates to, pass through the same redaction the edge's camera urls do.
    from edge.hub.store import open_store, redact

    if url.startswith("mysql"):
        with pytest.raises(ValueError) as refused:
            open_store(url)
        assert "Secret42" not in str(refused.value) and "***" in str(refused.value)
    assert "Secret42" not in redact(url) and "db.lan" in redact(url).split("@")[-1]


def test_a_systemd_credential_is_private_whatever_its_mode_says(tmp_path, monkeypatch):
    """systemd 254 and later put a service's credentials (LoadCredential=) on a tmpfs and give
    the service user an ACL entry, which `stat` shows as mode 0440: the hub refused its own
    secrets file ("accessible by group/others"), and libpq ignored the PGPASSFILE of the cluster
    unit. A file in $CREDENTIALS_DIRECTORY is the service's alone; anywhere else 0440 is still
    refused, and libpq gets a 0600 copy of its password file."""
    import os

    from edge.core.settings import ConfigError, require_private
    from edge.hub.store.postgres import private_pgpassfile

    creds, elsewhere = tmp_path / "credentials", tmp_path / "etc"
    creds.mkdir()
    elsewhere.mkdir()
    for folder in (creds, elsewhere):
        for name, text in (("hub-secrets.toml", "[[credentials]]\n"), ("hub-pgpass", "db:5432:hub:hub:pw\n")):
            (folder / name).write_text(text)
            (folder / name).chmod(0o440)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    require_private(creds / "hub-secrets.toml", "secrets_file")
    with pytest.raises(ConfigError, match="mode 440"):
        require_private(elsewhere / "hub-secrets.toml", "secrets_file")

    monkeypatch.setenv("PGPASSFILE", str(creds / "hub-pgpass"))
    private_pgpassfile()
    copy = os.environ["PGPASSFILE"]
    assert copy != str(creds / "hub-pgpass") and os.stat(copy).st_mode & 0o777 == 0o600
    assert open(copy).read() == "db:5432:hub:hub:pw\n"
    monkeypatch.setenv("PGPASSFILE", str(elsewhere / "hub-pgpass"))  # not a credential: left to libpq
    private_pgpassfile()
    assert os.environ["PGPASSFILE"] == str(elsewhere / "hub-pgpass")


def test_a_used_single_use_signature_stays_used_after_the_hubs_clock_goes_back(hub_store):
    """Used signatures were deleted once past their validity and nothing kept: with the hub's
    clock stepped back (an NTP correction, a VM snapshot restored) to when a captured signature
    was made, it was accepted a second time. How far they were forgotten is kept now; on SQLite
    and PostgreSQL, through the Verifier the hub uses."""
    from edge.core.signature import Credential, ReplayCache, Verifier, sign

    cred = Credential("1000001", "AKIDclockback", "k" * 40)
    verifier = Verifier([cred], ReplayCache(store=hub_store))
    t0 = 1_800_000_000

    def single_use(at: float) -> str:
        return sign(cred.appid, cred.secret_id, cred.secret_key, expiry=0, fileid="/face/verify", now=at)

    captured = single_use(t0)
    verifier.check(captured, now=t0)  # the genuine request
    later = t0 + 3600 + 300 + 60  # past its hour and the clocks' grace: its row is deleted here
    verifier.check(single_use(later), now=later)
    with pytest.raises(ApiError) as replayed:
        verifier.check(captured, now=t0 + 20)  # the clock set back near t0
    assert replayed.value.code == errors.REPLAY
