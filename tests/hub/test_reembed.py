"""Upgrading a hub's model pack without new photos: the sealed face crops it keeps at enrolment
and `edge-verifier hub reembed` (real hub on loopback, SQLite and PostgreSQL, real models on
five_celebrity photos).

The hub enrols on int8; reembed embeds every stored crop with fp32 or int8-mirror (another
embedder fingerprint) while the int8 hub keeps serving; a hub restarted on that pack then accepts
an enrolled person's held-out photo, and an edge syncing that pack matches it too. The crops are AES-GCM sealed
with the appid and face_id bound: copied onto another face they do not open (the attack: that
face would otherwise be embedded from someone else's crop).
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from edge.hub.face_crops import CropCipher, CropError, new_key_text, read_crop_key
from edge.hub.reembed import reembed
from edge.hub.store import open_store
from tests.conftest import ROOT
from tests.support.hub import start_hub

EXE = [sys.executable, "-m", "edge"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request) -> str:
    """"" (SQLite beside the hub) or a new database on the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        return ""
    from tests.support.pg import new_database

    return new_database(request.getfixturevalue("pg_cluster"))


@pytest.fixture(scope="module")
def fp32(models_dir):
    from edge.vision import Pipeline

    return Pipeline.load(models_dir, precision="fp32")


def enrol(client, photos) -> dict[str, list[str]]:
    """Ben Affleck and Madonna, two train photos each; person_id -> face ids."""
    faces = {}
    for person, pid in (("Ben_Afflek", "ben"), ("Madonna", "madonna")):
        first = client.newperson(pid, ["staff"], photos(person, "train_1"))
        added = client.addface(pid, [photos(person, "train_2")])
        faces[pid] = [first["face_id"], *added["face_ids"]]
    return faces


def crop_rows(hub) -> dict[str, bytes]:
    """face_id -> the stored crop bytes, read from the database itself."""
    if hub.store_url:
        import psycopg

        with psycopg.connect(hub.store_url) as conn:
            return {f: bytes(c) for f, c in conn.execute("SELECT face_id, crop FROM face_crops")}
    with sqlite3.connect(hub.store_path) as conn:
        return dict(conn.execute("SELECT face_id, crop FROM face_crops"))


def set_crop(hub, face_id: str, crop: bytes) -> None:
    if hub.store_url:
        import psycopg

        with psycopg.connect(hub.store_url) as conn:
            conn.execute("UPDATE face_crops SET crop = %s WHERE face_id = %s", (crop, face_id))
        return
    with sqlite3.connect(hub.store_path) as conn:
        conn.execute("UPDATE face_crops SET crop = ? WHERE face_id = ?", (crop, face_id))


def hub_key(tmp_path: Path) -> bytes:
    return read_crop_key(tmp_path / "hub-secrets.toml")  # where start_hub keeps it


@pytest.fixture(scope="module", params=["fp32", "int8-mirror"])
def target(request, models_dir):
    """The pack a hub on int8 moves to: fp32 (another embedder), or int8-mirror (the same int8
    files embedding each crop with its mirror: another embedder fingerprint all the same)."""
    from edge.vision import Pipeline

    return Pipeline.load(models_dir, precision=request.param)


def test_a_hub_moved_to_another_pack_keeps_its_people_without_new_photos(tmp_path, store_url, photos, target):
    from edge.core.matcher import Decision, thresholds_for
    from edge.daemon.cache import EdgeCache
    from edge.daemon.sync import Syncer

    ben_val = photos("Ben_Afflek", "val_1")
    with start_hub(tmp_path, store_url) as hub:
        client = hub.client(timeout=60, retries=0)
        faces = enrol(client, photos)
        store = open_store(store_url, str(hub.store_path))  # the command's own connection, as a second process
        try:
            assert store.embedding_coverage(target.fingerprint) == (4, 0)
            late: list[str] = []

            def enrol_during_the_run(msg: str) -> None:  # a face enrolled while reembed runs
                if msg.startswith("embedded") and not late:
                    late.extend(client.addface("ben", [photos("Ben_Afflek", "train_3")])["face_ids"])
                    # the int8 hub keeps serving its own pack meanwhile
                    assert client.verify("ben", ben_val)["ismatch"] is True

            report = reembed(store, target, CropCipher(hub_key(tmp_path)), target.precision, batch=1,
                             progress=enrol_during_the_run)
            assert late and report.embedded == 5 and report.complete
            assert not report.no_crop and not report.unreadable
            assert store.embedding_coverage(target.fingerprint) == (5, 5)
            again = reembed(store, target, CropCipher(hub_key(tmp_path)), target.precision)
            assert again.embedded == 0 and again.had_it == 5 and again.complete
        finally:
            store.close()
        client.close()

    with start_hub(tmp_path, store_url, vision={"precision": target.precision}) as hub:
        with hub.client(timeout=60, retries=0) as client:
            assert client.verify("ben", ben_val)["ismatch"] is True
            assert client.verify("madonna", ben_val)["ismatch"] is False
            assert client.identify(photos("Madonna", "val_1"), ["staff"])["candidates"][0][
                "person_id"] == "madonna"
            cache = EdgeCache(tmp_path / "edge-cache.db")  # an edge on that pack syncs them
            try:
                syncer = Syncer(client, cache, target.fingerprint, thresholds=thresholds_for(target.precision))
                assert syncer.sync_once()["status"] == "ok"
                gallery = cache.gallery(thresholds_for(target.precision))
            finally:
                cache.close()
    assert sorted(f.face_id for f in gallery.faces) == sorted([*faces["ben"], *faces["madonna"], *late])
    probe = target.analyze(cv2.imdecode(np.frombuffer(ben_val, np.uint8), cv2.IMREAD_COLOR), max_faces=1)[0]
    best = gallery.verify(probe.embedding, "ben")
    assert thresholds_for(target.precision).decide(best.score) is Decision.ACCEPT


def _reembed_cli(cfg: Path, *extra: str) -> tuple[dict, str]:
    out = subprocess.run([*EXE, "hub", "reembed", "--config", str(cfg), "--pack", "fp32", *extra],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr


def test_reembed_stopped_part_way_resumes_with_only_the_rest(tmp_path, store_url, photos, models_dir, caplog):
    from tests.support.pg import write_hub_config

    caplog.set_level(logging.DEBUG)  # everything the hub (in this process) logs

    with start_hub(tmp_path, store_url) as hub:
        with hub.client(timeout=60, retries=0) as client:
            faces = enrol(client, photos)
        cfg = write_hub_config(tmp_path / "hub.toml", 1, store_url, hub.secret_key,
                               storage={"path": str(hub.store_path), "url": store_url})
        first, progress = _reembed_cli(cfg, "--limit", "3", "--batch", "2")
        assert (first["embedded"], first["faces"], first["had_it"], first["complete"]) == (3, 4, 0, False)
        assert "[reembed] embedded 2/4" in progress and "[reembed] embedded 3/4" in progress
        with hub.client(timeout=60, retries=0) as client:  # enrolled between the two runs
            faces["madonna"] += client.addface("madonna", [photos("Madonna", "train_3")])["face_ids"]
        rest, _ = _reembed_cli(cfg)
        assert (rest["embedded"], rest["faces"], rest["had_it"], rest["complete"]) == (2, 5, 3, True)
        assert rest["faces_per_s"] > 0 and rest["fingerprint"] != "" and rest["pack"] == "fp32"
        assert 0 < rest["embed_seconds"] <= rest["seconds"]
        key = (tmp_path / "hub-secrets.toml").read_text().split('key = "')[1].split('"')[0]
        assert key not in progress + json.dumps(first) + json.dumps(rest)
        health = requests.get(f"{hub.url}/health", timeout=10).text
        assert key not in health and base64.b64decode(key).hex() not in health
        assert caplog.records and key not in caplog.text


def test_reembed_killed_part_way_keeps_its_committed_batches(tmp_path, photos, models_dir):
    """SIGKILL after the first committed batch (no clean-up runs): the rerun does only the rest."""
    from tests.support.pg import write_hub_config

    with start_hub(tmp_path) as hub:
        with hub.client(timeout=60, retries=0) as client:
            enrol(client, photos)
            for person, pid in (("Ben_Afflek", "ben"), ("Madonna", "madonna")):  # 6 faces: time to kill
                client.addface(pid, [photos(person, "train_3")])
        cfg = write_hub_config(tmp_path / "hub.toml", 1, "", hub.secret_key, storage={"path": str(hub.store_path)})
        proc = subprocess.Popen([*EXE, "hub", "reembed", "--config", str(cfg), "--pack", "fp32", "--batch", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            for line in proc.stderr:  # the first batch is committed before its progress line
                if line.startswith("[reembed] embedded 1/6"):
                    proc.kill()
                    break
        finally:
            proc.kill()
            proc.wait(timeout=30)
        assert proc.returncode == -9 and proc.stdout.read() == ""  # killed before its report
        store = open_store("", str(hub.store_path))
        try:
            _, done = store.embedding_coverage(read_fingerprint(models_dir, "fp32"))
        finally:
            store.close()
        assert 1 <= done < 6
        rest, _ = _reembed_cli(cfg)
        assert (rest["had_it"], rest["embedded"], rest["complete"]) == (done, 6 - done, True)


def read_fingerprint(models_dir: Path, pack: str) -> str:
    return json.loads((models_dir / "models.json").read_text())["packs"][pack]["embedder_fingerprint"]


def test_opted_out_hub_keeps_no_crop_and_reembed_lists_its_faces(tmp_path, store_url, photos, fp32):
    with start_hub(tmp_path, store_url, storage={"keep_face_crops": False}) as hub:
        with hub.client(timeout=60, retries=0) as client:
            faces = enrol(client, photos)
        assert crop_rows(hub) == {}
        store = open_store(store_url, str(hub.store_path))
        try:
            report = reembed(store, fp32, None, "fp32")
        finally:
            store.close()
    assert report.embedded == 0 and report.complete and not report.unreadable
    listed = sorted((f["person_id"], f["face_id"]) for f in report.no_crop)
    assert listed == sorted((pid, f) for pid, ids in faces.items() for f in ids)


def test_deleting_a_face_or_a_person_deletes_its_crop(tmp_path, store_url, photos, models_dir):
    with start_hub(tmp_path, store_url) as hub:
        with hub.client(timeout=60, retries=0) as client:
            faces = enrol(client, photos)
            assert set(crop_rows(hub)) == {*faces["ben"], *faces["madonna"]}
            client.delface("ben", [faces["ben"][1]])
            assert set(crop_rows(hub)) == {faces["ben"][0], *faces["madonna"]}
            client.delperson("madonna")
            assert set(crop_rows(hub)) == {faces["ben"][0]}


def test_a_stored_crop_is_sealed_to_its_face_and_key(tmp_path, store_url, photos, models_dir, fp32):
    from edge.vision import Pipeline

    with start_hub(tmp_path, store_url) as hub:
        with hub.client(timeout=60, retries=0) as client:
            faces = enrol(client, photos)
        rows = crop_rows(hub)
        ben, madonna = faces["ben"][0], faces["madonna"][0]
        key = CropCipher(hub_key(tmp_path))
        sealed = rows[ben]
        # not an image, and not one inside: the pixels are encrypted
        assert cv2.imdecode(np.frombuffer(sealed, np.uint8), cv2.IMREAD_UNCHANGED) is None
        assert b"PNG" not in sealed and b"IHDR" not in sealed
        # it is the aligned crop the enrolment embedded, bit for bit
        int8 = Pipeline.load(models_dir, precision="int8")
        bgr = cv2.imdecode(np.frombuffer(photos("Ben_Afflek", "train_1"), np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(key.open(hub.appid, ben, sealed), int8.detect(bgr)[0].aligned)
        for appid, face_id, cipher in ((hub.appid, madonna, key), (hub.other_appid, ben, key),
                                       (hub.appid, ben, CropCipher(base64.b64decode(new_key_text())))):
            with pytest.raises(CropError):
                cipher.open(appid, face_id, sealed)
        flipped = bytearray(sealed)
        flipped[40] ^= 1
        with pytest.raises(CropError):
            key.open(hub.appid, ben, bytes(flipped))

        # The attack: Ben's crop copied onto Madonna's row would give her face Ben's embedding.
        set_crop(hub, madonna, sealed)
        store = open_store(store_url, str(hub.store_path))
        try:
            report = reembed(store, fp32, key, "fp32")
            assert [f["face_id"] for f in report.unreadable] == [madonna] and report.embedded == 3
            assert madonna not in {e.face_id for e in store.embeddings(hub.appid, fp32.fingerprint)}
        finally:
            store.close()
        assert base64.b64encode(hub_key(tmp_path)).decode() not in json.dumps(report.as_json())


def test_a_malformed_key_is_refused_without_being_echoed(tmp_path):
    from edge.core.settings import ConfigError

    secret = "c2VjcmV0LWJ1dC10b28tc2hvcnQ="  # base64 of 22 bytes
    path = tmp_path / "secrets.toml"
    path.write_text(f'[face_crops]\nkey = "{secret}"\n')
    path.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        read_crop_key(path)
    assert secret not in str(info.value) and "32 bytes" in str(info.value)
    assert repr(CropCipher(b"k" * 32)) == "CropCipher(<key>)"


def test_a_pack_missing_from_the_models_folder_is_a_clear_error(tmp_path, models_dir):
    from tests.support.pg import write_hub_config

    folder = tmp_path / "models"
    folder.mkdir()
    index = json.loads((models_dir / "models.json").read_text())
    index["packs"].pop("fp32")
    (folder / "models.json").write_text(json.dumps(index))
    cfg = write_hub_config(tmp_path / "hub.toml", 1, "", "k" * 32, storage={"path": str(tmp_path / "hub.sqlite3")})
    out = subprocess.run([*EXE, "hub", "reembed", "--config", str(cfg), "--pack", "fp32", "--models-dir", str(folder)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"pack fp32 is not in {folder}/models.json" in out.stderr and "--models-dir" in out.stderr


def test_a_lost_crop_key_replaced_by_a_new_one_is_said_at_start_and_reembed_is_not_complete(
        tmp_path, store_url, photos, fp32, caplog):
    """A lost secrets file, `hub keygen` again, and the hub started as ever: every crop sealed
    before was unreadable, said by missing thumbnails alone, and `hub reembed` reported those
    faces unreadable yet `complete: true`. The start now says the key does not open the stored
    crops, and reembed is not complete while any crop does not open."""
    from edge.hub.server import say_if_the_crop_key_was_replaced

    with start_hub(tmp_path, store_url) as hub:
        with hub.client(timeout=60, retries=0) as client:
            enrol(client, photos)
        store = open_store(store_url, str(hub.store_path))
        try:
            assert say_if_the_crop_key_was_replaced(store, CropCipher(hub_key(tmp_path))) is False
            replaced = CropCipher(base64.b64decode(new_key_text()))
            assert say_if_the_crop_key_was_replaced(store, replaced) is True
            assert "does not open the stored face crops" in caplog.text
            report = reembed(store, fp32, replaced, "fp32")
            assert report.unreadable and report.complete is False
        finally:
            store.close()
