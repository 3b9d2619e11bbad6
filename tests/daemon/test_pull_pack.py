"""One model pack per site: a real hub serves its pack, edges pull it (`models pull`, `run`)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge.api.client import CloudApiError
from edge.modelpack.fetch import sha256_file
from edge.modelpack.share import PullError, pull
from tests.conftest import MODELS, free_port
from tests.support.broker import (
    Broker,
    DaemonProc,
    Subscriber,
    enrol_five,
    write_edge_config,
)
from tests.support.hub import start_hub

EXE = Path(sys.executable).with_name("edge-verifier")


def _int8_files(models_dir: Path) -> dict[str, str]:
    meta = json.loads((models_dir / "models.json").read_text())
    return {name: meta["models"][name]["sha256"] for name in meta["packs"]["int8"]["files"].values()}


def test_hub_lists_the_pack_it_embeds_with_and_serves_its_files_by_chunk(hub_client, models_dir):
    packs = hub_client.packs()["packs"]
    assert [p["name"] for p in packs] == ["int8"]  # the test hub stores int8 embeddings only
    listed = {f["name"]: f for f in packs[0]["files"]}
    assert {n: f["sha256"] for n, f in listed.items()} == _int8_files(models_dir)
    meta = json.loads((models_dir / "models.json").read_text())
    assert packs[0]["fingerprint"] == meta["packs"]["int8"]["fingerprint"]
    chunk = hub_client.packfile("int8", "detector.fp32.onnx", 1000)
    data = base64.b64decode(chunk["data"])
    assert chunk["offset"] == 1000 and chunk["size"] == listed["detector.fp32.onnx"]["size"]
    assert data == (models_dir / "detector.fp32.onnx").read_bytes()[1000:1000 + len(data)]


@pytest.mark.parametrize(("name", "code"), [
    ("../hub.toml", -1313),            # a path: refused before the service sees it
    ("manifest.toml", 21),             # in the folder, not a file of the pack
    ("models.json", 21),
    ("embedder.fp32.onnx", 21),        # a file of a pack this hub does not serve
])
def test_packfile_serves_only_the_files_of_a_served_pack(hub_client, name, code):
    with pytest.raises(CloudApiError) as exc:
        hub_client.packfile("int8", name)
    assert exc.value.code == code


def test_a_tampered_download_is_refused_and_nothing_is_installed(hub_server, tmp_path):
    class FlipsAByte:  # a man in the middle: the real hub's answers, one byte changed
        def __init__(self, client):
            self.client = client

        def packs(self):
            return self.client.packs()

        def packfile(self, pack, name, offset=0):
            chunk = self.client.packfile(pack, name, offset)
            data = bytearray(base64.b64decode(chunk["data"]))
            if name.startswith("embedder"):
                data[len(data) // 2] ^= 1
            return {**chunk, "data": base64.b64encode(bytes(data)).decode()}

    target = tmp_path / "models"
    with hub_server.client(timeout=30) as client, pytest.raises(PullError, match="sha256"):
        pull(FlipsAByte(client), target, "int8", log=lambda m: None)
    assert not target.exists() or not any(target.iterdir())


def _pull_cli(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), "models", "pull", "--config", str(config)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_models_pull_installs_verifies_and_repairs(hub_server, tmp_path, models_dir):
    target = tmp_path / "pulled"
    cfg = write_edge_config(tmp_path / "edge.toml", device="d", camera="files:/nonexistent/*", broker=None,
                            hub=hub_server, storage=tmp_path / "data", api_port=free_port(),
                            sections={"vision": {"models_dir": str(target)}})
    first = _pull_cli(cfg)
    assert first.returncode == 0, first.stderr
    assert "pulling pack int8" in first.stderr and "%" in first.stderr  # progress on stderr
    assert {n: sha256_file(target / n) for n in _int8_files(models_dir)} == _int8_files(models_dir)
    from edge.vision import Pipeline

    pulled, built = Pipeline.load(target, "int8", threads=1), Pipeline.load(models_dir, "int8", threads=1)
    assert pulled.fingerprint == built.fingerprint
    again = _pull_cli(cfg)
    assert again.returncode == 0 and "is installed" in again.stderr and "pulling" not in again.stderr
    # A file damaged on the edge (disk, an interrupted copy) is found by its sha256 and pulled again.
    with open(target / "embedder.int8.onnx", "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\0" * 16)
    repaired = _pull_cli(cfg)
    assert repaired.returncode == 0 and "pulling pack int8" in repaired.stderr
    assert sha256_file(target / "embedder.int8.onnx") == _int8_files(models_dir)["embedder.int8.onnx"]
    # A pulled folder is not this machine's build: `models build` would rebuild it, not trust it.
    assert json.loads((target / "models.json").read_text())["recipe"] == "pulled"


@pytest.mark.parametrize("pack", ["int8", "int8-mirror"])
def test_an_edge_with_an_empty_models_dir_reaches_its_first_accept_without_building(tmp_path_factory, faces_dir,
                                                                                    pack):
    # int8-mirror: a hub that enrols on the mirror pack, an edge that pulls it and embeds that way.
    tmp = tmp_path_factory.mktemp("pull-e2e")
    frames, empty = tmp / "frames", tmp / "models"
    frames.mkdir()
    person = min(p for p in (faces_dir / "five_celebrity").iterdir() if p.is_dir())
    shutil.copy(person / "val_1.jpg", frames / "00.jpg")
    broker = Broker(tmp_path_factory.mktemp("broker"))
    broker.start()
    try:
        with (start_hub(tmp_path_factory.mktemp("hub"), vision={"precision": pack}) as hub,
              hub.client(timeout=30.0, retries=0) as client):
            enrolled = enrol_five(client, faces_dir, photos=1)
            sub = Subscriber(broker, "test/door-pull/#")
            port = free_port()
            cfg = write_edge_config(tmp / "edge.toml", device="door-pull", camera=f"files:{frames}/*",
                                    broker=broker, hub=hub, storage=tmp / "data", api_port=port,
                                    sections={"identify": {"groups": ["staff"]},
                                              "vision": {"models_dir": str(empty), "precision": pack}})
            daemon = DaemonProc(cfg, port, tmp / "daemon.log").start()
            try:
                daemon.wait_health(lambda h: h["decisions"] >= 1, 120)
                assert sub.wait_for(lambda: len(sub.json("/event")) >= 1, 15)
            finally:
                assert daemon.terminate() == 0
                sub.close()
            event = sub.json("/event")[0]
            assert event["decision"] == "accept" and event["person_id"] == person.name.lower() in enrolled
            log = (tmp / "daemon.log").read_text()
            assert f"pulling pack {pack} (" in log and f"installed pack {pack} (" in log
            assert not (empty / "cache").exists()  # nothing was fetched from a registry or built
            assert json.loads((empty / "models.json").read_text())["packs"][pack].get("embedding") == (
                "mirror-mean" if pack == "int8-mirror" else None)
            assert {p.name for p in empty.iterdir()} == {"models.json", *_int8_files(MODELS)}
    finally:
        broker.stop()


def test_an_edge_with_no_models_and_no_hub_exits_with_a_clear_error(tmp_path):
    closed = free_port()  # nothing listens there: the hub is unreachable
    hub = SimpleNamespace(url=f"http://127.0.0.1:{closed}", appid="1000001", secret_id="AKIDtest",
                          secret_key="k" * 32)
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-nohub", camera="files:/nonexistent/*",
                            broker=None, hub=hub, storage=tmp_path / "data", api_port=free_port(),
                            sections={"vision": {"models_dir": str(tmp_path / "empty")}})
    run = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "no models in" in run.stderr and "could not be pulled" in run.stderr
    assert "Traceback" not in run.stderr


def _hub_answering(answer):
    """A real HTTP server on loopback that answers every call like a hub would, with
    `answer(handler)`: the data dict of the envelope, or None to hold the request unanswered."""
    import threading
    from contextlib import contextmanager

    from tests.support.loopback import QuietHandler, serving

    release = threading.Event()

    class Handler(QuietHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            data = answer(self)
            if data is None:
                release.wait(60)  # accepted, never answered
                return
            self.reply(200, json.dumps({"code": 0, "message": "OK", "data": data}).encode(),
                       {"Content-Type": "application/json"})

    @contextmanager
    def run():
        with serving(Handler) as server:
            try:
                yield f"http://127.0.0.1:{server.server_address[1]}"
            finally:
                release.set()

    return run()


@pytest.mark.parametrize("listing", [None, {"packs": [{"name": "int8"}]}, {"packs": "not a list"},
                                     {"packs": [{"name": "int8", "fingerprint": "x", "files": [{"name": "a"}]}]}])
def test_a_start_with_models_keeps_them_when_the_hub_hangs_or_lists_nonsense(tmp_path, listing):
    """At each start the edge asks its hub for the pack: a hub that accepted the connection and
    never answered held the start 2 minutes (30 s, 4 tries), past systemd's start timeout, and
    the door never came up; a listing without `files` ended the start with a KeyError. With
    models installed the edge now asks for at most START_CHECK_S and starts on what it has; a
    pull killed part-way is cleaned up."""
    import time

    from edge.modelpack.share import START_CHECK_S, pull_or_keep

    models = tmp_path / "models"
    models.mkdir()
    (models / "models.json").write_text("{}")
    (models / ".pull-left-by-a-power-cut").mkdir()
    with _hub_answering(lambda handler: listing) as url:
        hub = SimpleNamespace(url=url, appid="1", secret_id="k", secret_key="s" * 32, timeout=5.0, retries=2)
        started = time.monotonic()
        pull_or_keep(hub, models, "int8", lambda message: None)
        assert time.monotonic() - started < START_CHECK_S + 5
    assert (models / "models.json").read_text() == "{}" and not list(models.glob(".pull-*"))


class EditsTheListing:
    """The real hub's answers, its listing of int8 changed by `edit` (a hub partly trusted)."""

    def __init__(self, client, edit):
        self.client, self.edit = client, edit

    def packs(self):
        answer = self.client.packs()
        return {**answer, "packs": [self.edit(json.loads(json.dumps(p))) for p in answer["packs"]]}

    def packfile(self, pack, name, offset=0):
        return self.client.packfile(pack, name, offset)


def _with_file(pack: dict, name: str, sha: str, size: int) -> dict:
    pack["files"].append({"name": name, "size": size, "sha256": sha})
    pack["index"]["models"][name] = {"sha256": sha, "fingerprint": sha[:16]}
    return pack


def test_a_listing_naming_anything_but_a_model_file_is_refused_before_a_file_here_is_touched(
        hub_server, tmp_path, monkeypatch):
    """The hub's listing was checked only for '/' and a leading dot: `manifest.toml` was
    installed over a checkout's models/manifest.toml, whose next `models build` ran the package
    it named; and before even that check, a listed `/etc/hostname` with its true sha256 was hashed
    (the hub learnt whether its guess of the file was right). Names are model files of the pack's
    roles now, checked first."""
    import edge.modelpack.share as share

    target = tmp_path / "models"
    target.mkdir()
    (target / "manifest.toml").write_text("# this checkout's manifest\n")
    hashed: list[str] = []
    real_hash = share.sha256_file
    monkeypatch.setattr(share, "sha256_file", lambda p: hashed.append(str(p)) or real_hash(p))
    planted = b"[models.detector]\npackage = 'evil-pkg'\n"
    hostname = Path("/etc/hostname")
    edits = [lambda p: _with_file(p, "manifest.toml", hashlib.sha256(planted).hexdigest(), len(planted)),
             lambda p: _with_file(p, str(hostname), sha256_file(hostname) if hostname.is_file() else "0" * 64, 5),
             lambda p: {**p, "files": [{**f, "size": 10 ** 12} for f in p["files"]]}]
    with hub_server.client(timeout=30) as client:
        for edit in edits:
            with pytest.raises(PullError, match="malformed"):
                pull(EditsTheListing(client, edit), target, "int8", log=lambda m: None)
    assert hashed == [] and sorted(p.name for p in target.iterdir()) == ["manifest.toml"]
    assert (target / "manifest.toml").read_text() == "# this checkout's manifest\n"


def test_an_install_that_fails_part_way_leaves_the_folder_as_it_was(hub_server, models_dir, tmp_path, monkeypatch):
    """Files were renamed into place one by one: a rename that failed (a directory where a file
    goes, a full disk) left the files before it replaced under the old models.json, which the
    start then kept ("keeping the models"), one model swapped and nothing said. A failed install
    now puts back what it replaced; and a folder whose files are not those models.json lists
    (a power cut mid-install) no longer loads."""
    import edge.modelpack.share as share
    from edge.vision import Pipeline
    from edge.vision.packs import ModelPackError

    target = tmp_path / "models"
    shutil.copytree(models_dir, target, ignore=shutil.ignore_patterns("cache", "ui", "*lite*", "embedder.fp32.onnx"))
    meta = json.loads((target / "models.json").read_text())
    meta["packs"]["int8"]["fingerprint"] = "an-older-pack0000"  # so the hub's pack is pulled
    (target / "models.json").write_text(json.dumps(meta))
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    calls = {"n": 0}
    real_replace = os.replace

    def fails_the_third_into_place(src, dst):
        if Path(dst).parent == target:
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(share.os, "replace", fails_the_third_into_place)
    with hub_server.client(timeout=30) as client, pytest.raises(OSError):
        pull(client, target, "int8", log=lambda m: None)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before
    assert not list(target.glob(".pull-*"))

    (target / "liveness.int8.onnx").write_bytes((target / "liveness.fp32.onnx").read_bytes())  # swapped
    with pytest.raises(ModelPackError, match="liveness.int8.onnx is not the one models.json lists"):
        Pipeline.load(target, "int8")
