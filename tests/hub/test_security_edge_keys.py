"""A hub key bound to one edge ([[credentials]] edge_id, edge.api.ops.EDGE_OPS): the key a door's
Pi holds, taken off its card, enrols nobody, speaks for no other door, holds the people of its
groups only and spends a rate of its own. Attacks against a real hub on loopback; the edge told
which key it syncs with; then the `hub edgekey` and `edge-id` commands that set such a key up,
and a broken key entry reported without its key."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tomllib
from contextlib import closing

import pytest

from edge.api.client import CloudApiError, CloudClient
from edge.api.ops import EDGE_OPS, OPS
from edge.core import errors
from edge.core.access_chain import canonical
from edge.core.signature import sign
from edge.daemon.api_key import own_credential
from edge.door.access_log import AccessLog
from edge.hub.edge_keys import add_edge_key
from tests.support.hub import APPID, bind_edge_key, hub_with_five_enrolled, post, served_fingerprint

DOOR = "AKIDedge" + "d" * 28  # the door the stolen key is bound to
OTHER_DOOR = "AKIDedge" + "e" * 28


def _refused(call) -> CloudApiError:
    with pytest.raises(CloudApiError) as caught:
        call()
    assert caught.value.code == errors.EDGE_KEY_REFUSED, caught.value
    return caught.value


def _refused_claims(log: AccessLog, *person_ids: str) -> str:
    """`log` with a claim of each person refused and counted by the door's lockout, as JSON text."""
    for person_id in person_ids:
        log.append("decision", door="main", person_id=person_id, decision="reject", outcome="deny", reason="r",
                   detail={"claim": person_id, "claim_lockout": "refused"})
    return canonical(log.records())


def _log_of(path, person_id: str) -> str:
    return _refused_claims(AccessLog(path, b"a door's own key"), person_id)


def test_a_key_taken_off_a_door_enrols_nobody_and_speaks_for_no_other_door(tmp_path, faces_dir, photos):
    """With the appid's key on every door, whoever read one door's card enrolled their own face
    (or added it to a member), lifted lockouts, rewrote the rules and read every door's log. The
    door's key now does what a door does, for that door only."""
    (tmp_path / "door").mkdir(mode=0o700)
    (tmp_path / "door" / "api-key.toml").write_text(
        f'appid = "{APPID}"\nsecret_id = "{DOOR}"\nsecret_key = "{"k" * 43}"\n')
    (tmp_path / "door" / "api-key.toml").chmod(0o600)
    stolen = bind_edge_key(tmp_path / "hub", tmp_path / "door")
    assert stolen.edge_id == DOOR
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub, \
            closing(CloudClient(hub.url, stolen.appid, stolen.secret_id, stolen.secret_key, timeout=30,
                                retries=0)) as door, \
            closing(hub.client(timeout=30, retries=0)) as operator:
        intruder = photos("Elton_John", "val_1")
        _refused(lambda: door.newperson("intruder", ["staff"], intruder))
        _refused(lambda: door.addface("madonna", [intruder]))
        _refused(lambda: door.delperson("madonna"))
        _refused(lambda: door.setcredentials("madonna", [{"format": "wiegand26", "facility": 1, "number": 7}]))
        _refused(lambda: door.setrules(json.dumps({"groups": {}})))
        _refused(lambda: door.liftclaims("madonna"))
        _refused(lambda: door.searchlog(person_id="madonna"))
        with pytest.raises(CloudApiError) as caught:
            operator.getinfo("intruder")
        assert caught.value.code == errors.PERSON_UNKNOWN
        assert len(operator.getfaceids("madonna")["face_ids"]) == 2  # enrol_five's two, none added

        # every endpoint an edge does not call, raw as an SDK sends it
        for op in sorted(set(OPS) - EDGE_OPS - {"claim"}):
            answer = post(hub, op, json={"appid": APPID},
                          authorization=sign(APPID, stolen.secret_id, stolen.secret_key))
            assert answer["code"] == errors.EDGE_KEY_REFUSED, (op, answer)

        # what a door does, it still does: sync and report as itself, the cloud fallback, packs, its log
        fingerprint = served_fingerprint(operator)
        page = door.sync(0, fingerprint, report={"edge_id": DOOR, "edge_health": "ok"})
        assert {c["person_id"] for c in page["changes"]} >= {"madonna", "elton_john"}
        assert door.verify("madonna", photos("Madonna", "val_1"))["ismatch"] is True
        # ... with the image's bytes: a url would draw on the appid's download slots, which a
        # taken key could hold with a slow server of its own and so stall the operators' enrolments
        _refused(lambda: door.verify("madonna", url="http://127.0.0.1:9/madonna.jpg"))
        assert door.packs()["packs"]
        stored = door.uploadlog(DOOR, _log_of(tmp_path / "door.db", "madonna"))
        assert stored["stored"] == 1
        # ... never as another door: not its log, not its report, not its claim refusals
        _refused(lambda: door.uploadlog(OTHER_DOOR, _log_of(tmp_path / "other.db", "jerry_seinfield")))
        _refused(lambda: door.sync(0, fingerprint, report={"edge_id": OTHER_DOOR, "edge_health": "ok"},
                                   refusals_since=1))
        assert [r["edge_id"] for r in operator.searchlog()["records"]] == [DOOR]
        assert [(r.edge_id, r.key) for r in hub.store.edge_reports(APPID)] == [(DOOR, "edge")]  # console: its own
        # the appid's own key (an operator's) is not bound: it still does everything
        operator.uploadlog(OTHER_DOOR, _log_of(tmp_path / "other2.db", "jerry_seinfield"))
        operator.sync(0, fingerprint, report={"edge_id": OTHER_DOOR, "key": "edge"})  # what it sends is ignored
        assert {r.edge_id: r.key for r in hub.store.edge_reports(APPID)} == {DOOR: "edge", OTHER_DOOR: "appid"}


def test_a_door_key_bound_to_its_groups_holds_only_their_people(tmp_path, faces_dir, photos):
    """A door serves some groups; its key taken gave every person's face and card (sync) and a
    yes/no on any of them (the cloud fallback). Bound to the door's groups it gives theirs only."""
    (tmp_path / "door").mkdir(mode=0o700)
    edge_id = own_credential(tmp_path / "door", APPID).secret_id
    key = add_edge_key(tmp_path / "hub" / "hub-secrets.toml", APPID, edge_id, ("staff",))
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub, \
            closing(hub.client(timeout=30, retries=0)) as operator, \
            closing(CloudClient(hub.url, key.appid, key.secret_id, key.secret_key, timeout=30, retries=0)) as door:
        ceo = photos("Madonna", "train_2")
        operator.newperson("ceo", ["board"], ceo)  # a person of another group, her face Madonna's
        fingerprint = served_fingerprint(operator)
        everyone = {c["person_id"] for c in operator.sync(0, fingerprint)["changes"]}
        assert "ceo" in everyone
        page = door.sync(0, fingerprint, group_ids=["staff"], report={"edge_id": edge_id})
        # never in its groups: no face, no card, not even her id (her rows came as deletions)
        assert {c["person_id"] for c in page["changes"]} == everyone - {"ceo"}
        for groups in (None, ["staff", "board"], ["board"]):
            _refused(lambda g=groups: door.sync(0, fingerprint, group_ids=g, report={"edge_id": edge_id}))
        answers = []
        for person in ("ceo", "nobody"):
            with pytest.raises(CloudApiError) as caught:
                door.verify(person, ceo)
            answers.append((caught.value.code, caught.value.message.replace(person, "X")))
        assert answers[0] == answers[1] == (errors.PERSON_UNKNOWN, "person 'X' does not exist")  # told apart by nothing
        assert door.verify("madonna", photos("Madonna", "val_1"))["ismatch"] is True
        assert operator.verify("ceo", ceo)["ismatch"] is True  # the appid's key is not bound
        # the other doors' claim refusals and the lifts: of its groups' persons only
        other = AccessLog(tmp_path / "other.db", b"another door's key")
        operator.uploadlog(OTHER_DOOR, _refused_claims(other, "ceo", "madonna"))
        for person in ("ceo", "madonna"):
            operator.liftclaims(person)
        heard = door.sync(0, fingerprint, group_ids=["staff"], report={"edge_id": edge_id}, refusals_since=1)
        assert [r["person_id"] for r in heard["claim_refusals"]] == []  # lifted since, both
        assert [lift["person_id"] for lift in heard["claim_lifts"]] == ["madonna"]
        operator.uploadlog(OTHER_DOOR, _refused_claims(other, "ceo", "madonna"))
        heard = door.sync(0, fingerprint, group_ids=["staff"], report={"edge_id": edge_id}, refusals_since=1)
        assert [r["person_id"] for r in heard["claim_refusals"]] == ["madonna"]
        told = operator.sync(0, fingerprint, report={"edge_id": "AKIDedge-unbound"}, refusals_since=1)
        assert sorted(r["person_id"] for r in told["claim_refusals"]) == ["ceo", "madonna"]  # unbound: all

        # a member who leaves its groups comes as a deletion and the door drops her; the board's
        # own changes (the CEO deleted) stay unseen
        from edge.daemon.cache import EdgeCache
        from edge.daemon.sync import Syncer

        cache = EdgeCache(tmp_path / "door-cache.db")
        syncer = Syncer(door, cache, fingerprint, group_ids=["staff"], report=lambda: {"edge_id": edge_id})
        assert syncer.sync_once()["status"] == "ok"
        assert "madonna" in cache.gallery(syncer.thresholds).person_ids
        cursor = cache.cursor
        operator.addgroupids("madonna", ["board"])
        operator.delgroupids("madonna", ["staff"])
        operator.delperson("ceo")
        seen = door.sync(cursor, fingerprint, group_ids=["staff"], report={"edge_id": edge_id})["changes"]
        assert {c["person_id"] for c in seen} == {"madonna"} and all(c["deleted"] for c in seen)
        assert syncer.sync_once()["status"] == "ok"
        assert "madonna" not in cache.gallery(syncer.thresholds).person_ids


def test_an_edge_syncing_with_the_appids_key_says_so_once(tmp_path, faces_dir, caplog):
    """The hub tells a reporting edge which kind of key it signed with: a door still on the
    appid's key logs, once, what that risks and the command that fixes it; /health shows it."""
    from edge.daemon.cache import EdgeCache
    from edge.daemon.sync import Syncer

    (tmp_path / "door").mkdir(mode=0o700)
    door_key = bind_edge_key(tmp_path / "hub", tmp_path / "door")
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub, \
            closing(hub.client(timeout=30, retries=0)) as operator, \
            closing(CloudClient(hub.url, door_key.appid, door_key.secret_id, door_key.secret_key, timeout=30,
                                retries=0)) as door:
        fingerprint = served_fingerprint(operator)

        def syncer(client, edge_id, name):
            return Syncer(client, EdgeCache(tmp_path / name), fingerprint,
                          report=lambda: {"edge_id": edge_id, "edge_health": "ok"})

        own = syncer(door, door_key.edge_id, "own.db")
        assert own.sync_once()["status"] == "ok" and own.state["hub_key"] == "edge"
        assert "whole appid" not in caplog.text
        shared = syncer(operator, "AKIDedge-on-the-appid-key", "shared.db")
        for _ in range(2):
            assert shared.sync_once()["status"] == "ok" and shared.state["hub_key"] == "appid"
        warned = [r.getMessage() for r in caplog.records if "whole appid" in r.getMessage()]
        assert len(warned) == 1 and "hub edgekey --edge-id AKIDedge-on-the-appid-key" in warned[0]
        assert door_key.secret_key not in caplog.text and hub.secret_key not in caplog.text


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_door_key_spends_its_own_rate_not_the_sites(tmp_path, models_dir, store, request):
    """Every key of an appid drew from one bucket: a key taken off a door, sending as fast as the
    limit lets it, left the site's other doors (their syncs, their cloud fallback) and its
    operators with code 15. A bound key has a bucket of its own: in the process's limiter, and in
    PostgreSQL's, which several hub processes share."""
    from edge.api.client import CloudRateLimited
    from tests.support.hub import start_hub

    def answered(call) -> int:
        try:
            call()
        except CloudRateLimited:
            return errors.RATE_LIMITED
        return 0

    storages = [tmp_path / name for name in ("door-a", "door-b")]
    keys = [bind_edge_key(tmp_path / "hub", storage) for storage in storages]
    # a negligible refill: each bucket passes `burst` requests
    store_url = request.getfixturevalue("pg_url") if store == "postgresql" else ""
    with start_hub(tmp_path / "hub", store_url, limits={"rate_per_s": 0.001, "burst": 3}) as hub:
        door_a, door_b = (CloudClient(hub.url, k.appid, k.secret_id, k.secret_key, timeout=30, retries=0)
                          for k in keys)
        operator = hub.client(timeout=30, retries=0)
        try:
            assert [answered(door_a.packs) for _ in range(5)] == [0, 0, 0, 15, 15]
            assert [answered(operator.getgroupids) for _ in range(3)] == [0, 0, 0]
            assert answered(door_b.packs) == 0
            assert answered(operator.getgroupids) == 15  # the appid's own bucket is still one
        finally:
            for client in (door_a, door_b, operator):
                client.close()


def _cli(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    from edge.dev.devstack import cli

    return subprocess.run([*cli(), *args], capture_output=True, text=True, timeout=120, check=check)


def test_edgekey_binds_a_new_key_to_the_id_edge_id_prints(tmp_path):
    """Installing a door: `edge-verifier edge-id` on it, `hub edgekey --edge-id` on the hub, the
    printed [hub] lines into the door's config. Bad input changes nothing."""
    from edge.core.settings import ConfigError
    from edge.dev.devstack import write_toml
    from edge.hub import config

    edge_cfg = write_toml(tmp_path / "edge.toml", {"storage": {"path": str(tmp_path / "edge")}}, private=True)
    # without the site's appid the key would be made with another, and local clients refused with theirs
    unset = _cli("edge-id", "--config", str(edge_cfg))
    assert unset.returncode == 2 and "[hub] appid" in unset.stderr and not (tmp_path / "edge").exists()
    edge_cfg = write_toml(tmp_path / "edge.toml", {"storage": {"path": str(tmp_path / "edge")},
                                                   "hub": {"appid": "site"}}, private=True)
    if os.geteuid() == 0:  # root would make the storage directory root's, and the daemon could not read its key
        refused = _cli("edge-id", "--config", str(edge_cfg))
        assert refused.returncode == 2 and "service user" in refused.stderr and not (tmp_path / "edge").exists()
        (tmp_path / "edge").mkdir(mode=0o700)
    printed = _cli("edge-id", "--config", str(edge_cfg), check=True).stdout.strip()
    assert printed.startswith("AKIDedge") and printed == _cli("edge-id", "--config", str(edge_cfg)).stdout.strip()
    key_file = tmp_path / "edge" / "api-key.toml"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    made = tomllib.loads(key_file.read_text())
    assert (made["secret_id"], made["appid"]) == (printed, "site")  # the id it uploads and reports under
    key_file.rename(tmp_path / "old-key.toml")  # a new local key (a badge reader's taken): the id stays
    assert _cli("edge-id", "--config", str(edge_cfg), check=True).stdout.strip() == printed
    assert not key_file.exists()  # the daemon makes the new local key at its start

    secrets_file = tmp_path / "hub-secrets.toml"
    hub_cfg = write_toml(tmp_path / "hub.toml", {
        "secrets_file": str(secrets_file),
        "credentials": [{"appid": "site", "secret_id": "AKIDoperator", "secret_key": "o" * 43}]}, private=True)
    made = _cli("hub", "edgekey", "--config", str(hub_cfg), "--edge-id", printed)
    assert made.returncode == 0, made.stderr
    assert "restart the hub" in made.stderr and "secret_key" not in made.stderr
    lines = tomllib.loads(made.stdout)["hub"]
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    bound = [c for c in config.load(hub_cfg).all_credentials() if c.secret_id == lines["secret_id"]]
    assert [(c.appid, c.secret_key, c.edge_id) for c in bound] == [("site", lines["secret_key"], printed)]

    # an id the API accepts may hold a quote: written quoted, the file (and every key in it) still reads
    quoted = _cli("hub", "edgekey", "--config", str(hub_cfg), "--edge-id", 'door"7')
    assert quoted.returncode == 0, quoted.stderr
    assert [c.edge_id for c in config.load(hub_cfg).all_credentials()] == ["", printed, 'door"7']
    grouped = _cli("hub", "edgekey", "--config", str(hub_cfg), "--edge-id", "door-8", "--group", "staff",
                   "--group", "night shift")
    assert grouped.returncode == 2 and "groups" in grouped.stderr  # a space: no group id
    grouped = _cli("hub", "edgekey", "--config", str(hub_cfg), "--edge-id", "door-8", "--group", "staff",
                   "--group", "night")
    assert grouped.returncode == 0 and "the groups staff, night" in grouped.stderr
    assert config.load(hub_cfg).all_credentials()[-1].groups == ("staff", "night")

    before = secrets_file.read_text()
    for bad in ("a door", "../door", "x" * 129):
        refused = _cli("hub", "edgekey", "--config", str(hub_cfg), "--edge-id", bad)
        assert refused.returncode == 2 and "edge_id" in refused.stderr, refused
    assert _cli("hub", "edgekey", "--config", str(hub_cfg), "--edge-id", printed, "--appid", "nope").returncode == 2
    assert secrets_file.read_text() == before
    # a hand-written entry is checked as strictly when the hub starts
    secrets_file.write_text(before + '\n[[credentials]]\nappid = "site"\nsecret_id = "AKIDx"\n'
                            f'secret_key = "{"y" * 43}"\nedge_id = "a door"\n')
    with pytest.raises(ConfigError, match="edge_id"):
        config.load(hub_cfg).all_credentials()


def test_a_taken_doors_keys_are_revoked_and_the_hub_refuses_them(tmp_path, models_dir):
    """A door was taken off the wall: its key must stop working. The operator edited the secrets
    file by hand (a missed table, a broken file, one readable by all). `hub edgekey --revoke`
    removes that door's keys, every other key and the face crop key kept; the restarted hub
    refuses the taken key as unknown and serves the other door and the operator."""
    from edge.dev.devstack import write_toml
    from edge.hub.face_crops import read_crop_key
    from tests.support.hub import start_hub

    secrets_file = tmp_path / "hub" / "hub-secrets.toml"
    taken = [add_edge_key(secrets_file, APPID, DOOR), add_edge_key(secrets_file, APPID, DOOR, ("staff",))]
    other = add_edge_key(secrets_file, APPID, OTHER_DOOR)
    hub_cfg = write_toml(tmp_path / "hub.toml", {"secrets_file": str(secrets_file)}, private=True)

    def door(hub, cred):
        return closing(CloudClient(hub.url, cred.appid, cred.secret_id, cred.secret_key, timeout=30, retries=0))

    with start_hub(tmp_path / "hub") as hub, door(hub, taken[1]) as thief:
        assert thief.packs()["packs"]  # the taken key works until revoked
    crop_key = read_crop_key(secrets_file)
    assert crop_key is not None

    listed = _cli("hub", "edgekey", "--config", str(hub_cfg), "--list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()[1:]]
    assert [(r[0], r[2], r[3]) for r in rows] == [(DOOR, "(every group)", taken[0].secret_id),
                                                   (DOOR, "staff", taken[1].secret_id),
                                                   (OTHER_DOOR, "(every group)", other.secret_id)]
    assert not any(c.secret_key in listed.stdout + listed.stderr for c in [*taken, other])

    before = secrets_file.read_text()
    assert _cli("hub", "edgekey", "--config", str(hub_cfg), "--revoke", "--edge-id", DOOR,
                "--group", "staff").returncode == 2  # not "only its staff key": refused, nothing removed
    revoked = _cli("hub", "edgekey", "--config", str(hub_cfg), "--revoke", "--edge-id", DOOR)
    assert revoked.returncode == 0, revoked.stderr
    assert "2 key(s)" in revoked.stderr and "restart the hub" in revoked.stderr
    assert before != secrets_file.read_text()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert read_crop_key(secrets_file) == crop_key  # the hub still reads the crops it kept
    again = _cli("hub", "edgekey", "--config", str(hub_cfg), "--revoke", "--edge-id", DOOR)
    assert again.returncode == 2 and OTHER_DOOR in again.stderr  # names the doors that have keys

    with start_hub(tmp_path / "hub") as hub, door(hub, taken[0]) as thief, door(hub, taken[1]) as thief2, \
            door(hub, other) as other_door, closing(hub.client(timeout=30, retries=0)) as operator:
        for stolen in (thief, thief2):
            with pytest.raises(CloudApiError) as refused:
                stolen.packs()
            assert refused.value.code == errors.SECRET_ID_UNKNOWN
        assert other_door.packs()["packs"]
        assert operator.getgroupids()["group_ids"] == []


@pytest.mark.fast
def test_a_broken_credentials_entry_is_named_and_its_key_never_shown(tmp_path):
    """The hub said what was wrong with a [[credentials]] entry of its secrets file in pydantic's
    own words, which quote the table: an entry missing its secret_id printed the last 21
    characters of its secret_key to the journal. Now where and what, never a value."""
    from edge.core.settings import ConfigError
    from edge.hub.config import read_secrets_file

    key = "Zq8" + "k3y-" * 10
    secrets_file = tmp_path / "secrets.toml"
    entries = {
        "secret_id: Field required": f'appid = "site"\nsecret_key = "{key}"\n',
        "edge_id 'a door'": f'appid = "site"\nsecret_id = "AKIDx"\nsecret_key = "{key}"\nedge_id = "a door"\n',
        "set edge_id too": f'appid = "site"\nsecret_id = "AKIDx"\nsecret_key = "{key}"\ngroups = ["staff"]\n',
        "groups 'a/b'": f'appid = "s"\nsecret_id = "AKIDx"\nsecret_key = "{key}"\nedge_id = "e"\ngroups = ["a/b"]\n',
    }
    for said, entry in entries.items():
        secrets_file.write_text("[[credentials]]\n" + entry)
        secrets_file.chmod(0o600)
        with pytest.raises(ConfigError) as refused:
            read_secrets_file(secrets_file)
        message = str(refused.value)
        assert said in message, message
        assert not any(key[i:i + 6] in message for i in range(len(key) - 5)), message


def test_edge_id_works_on_the_example_config_before_the_door_has_its_hub_key(tmp_path):
    """The door's [hub] key is made on the hub (`hub edgekey`) from the id `edge-id` prints, so
    edge-id runs while the door's config still holds the example's placeholder key: it refused
    it ("a published example key: generate one"), and the documented install could not start.
    The daemon itself still refuses the placeholder."""
    from edge.daemon.config import example_toml
    from edge.dev.devstack import write_toml

    values = tomllib.loads(example_toml())
    values["storage"] = {"path": str(tmp_path / "edge")}
    (tmp_path / "edge").mkdir(mode=0o700)
    cfg = write_toml(tmp_path / "edge.toml", values, private=True)
    printed = _cli("edge-id", "--config", str(cfg))
    assert printed.returncode == 0 and printed.stdout.startswith("AKIDedge"), printed.stderr
    run = _cli("run", "--config", str(cfg))
    assert run.returncode == 2 and "published example key" in run.stderr
