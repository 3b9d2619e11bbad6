"""Issue 14 item 7: the edge's disk is full (every write of the daemon fails: RLIMIT_FSIZE set on
the running daemon with prlimit, so its writes get EFBIG like a full disk's ENOSPC, without
root). The accept still goes out at once with its decision's timestamp; memory stays bounded;
/health says degraded; an accept that could not leave in time goes out marked stale; the log
says it once, not per frame. Real daemon, real mosquitto, real SQLite, real models and photos."""

from __future__ import annotations

import base64
import json
import resource
import shutil
import subprocess
import threading
import time
from datetime import datetime

import numpy as np

from tests.conftest import free_port
from tests.support.broker import EDGE_VERIFIER, DaemonProc, write_edge_config

PEOPLE = ("Madonna", "Elton_John")


class PipedDaemon(DaemonProc):
    """The daemon with its log through a pipe: a file-size limit on the daemon must not stop
    its log (a pipe is no file), so the test can read what it said while its disk was full."""

    def start(self) -> "PipedDaemon":
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen([str(EDGE_VERIFIER), "run", "--config", str(self.config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()
        return self

    def _copy(self) -> None:
        for line in self.proc.stdout:
            self._fh.write(line)
            self._fh.flush()

    def terminate(self, timeout: float = 15) -> int:
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._copier.join(5)  # the last lines, then the file
        self._fh.close()
        return self.proc.returncode

    def disk_full(self, full: bool) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.prlimit(self.proc.pid, resource.RLIMIT_FSIZE, (0 if full else hard, hard))


def _seed_gallery(data, models_dir, faces_dir) -> None:
    """The cache as a sync would leave it: the photo each of PEOPLE will show, enrolled."""
    from edge.daemon.cache import EdgeCache
    from edge.vision import Pipeline, load_image

    pipeline = Pipeline.load(models_dir)
    cache = EdgeCache(data / "cache.db")
    cache.reset(pipeline.fingerprint, "")
    changes = []
    for i, name in enumerate(PEOPLE):
        face = pipeline.analyze(load_image(faces_dir / "five_celebrity" / name / "val_1.jpg"), max_faces=1)[0]
        vec = np.asarray(face.embedding, "<f4")
        changes += [{"seq": 2 * i + 1, "type": "person", "person_id": name.lower(), "deleted": False,
                     "person_name": name, "tag": "", "group_ids": ["staff"]},
                    {"seq": 2 * i + 2, "type": "face", "face_id": f"f{i}", "person_id": name.lower(),
                     "deleted": False, "embedding": base64.b64encode(vec.tobytes()).decode(), "quality": 1.0}]
    cache.apply_page(changes, len(changes))
    cache.close()


def _ts(event) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def test_a_full_disk_neither_delays_nor_refreshes_an_accept_and_a_late_one_goes_out_stale(
        mosquitto, subscribe, models_dir, faces_dir, tmp_path):
    data, drop = tmp_path / "data", tmp_path / "drop"
    drop.mkdir()
    _seed_gallery(data, models_dir, faces_dir)
    sub = subscribe("test/door-full/event", client_id="disk-full-sub")  # persistent: survives the restart
    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-full", camera=f"files:{drop}/*",
                            broker=mosquitto, storage=data, api_port=port, loop=True,
                            sections={"policy": {"stale_accept_s": 2}})
    daemon = PipedDaemon(cfg, port, tmp_path / "daemon.log").start()
    try:
        daemon.wait_health(lambda h: h["mqtt"]["connected"] and h["cache"]["persons"] == 2, 60)
        daemon.disk_full(True)

        # 1. Full disk, broker up: the accept goes out now, stamped when it was decided.
        shown = time.time()
        shutil.copy(faces_dir / "five_celebrity/Madonna/val_1.jpg", drop / "face.jpg")
        assert sub.wait_for(lambda: len(sub.json()) >= 1, 15), "no event while the disk is full"
        first = sub.json()[0]
        assert (first["decision"], first["person_id"]) == ("accept", "madonna")
        assert 0 <= _ts(first) - shown < 3
        h = daemon.wait_health(lambda h: h["decisions"] >= 1, 10)
        assert h["status"] == "degraded" and h["mqtt"]["outbox"]["writable"] is False
        daemon.wait_health(lambda h: h["pending"] == 0, 10)  # nothing piles up with its frames
        time.sleep(2.0)  # frames keep coming while the disk is full
        assert len(sub.json()) == 1  # one decision per track, not one per failed attempt

        # 2. Full disk and no broker: the next accept waits in memory, then leaves stale.
        (drop / "face.jpg").unlink()
        time.sleep(2.5)  # the face leaves; its track ends
        mosquitto.stop()
        shown = time.time()
        shutil.copy(faces_dir / "five_celebrity/Elton_John/val_1.jpg", drop / "face.jpg")
        h = daemon.wait_health(lambda h: h["decisions"] >= 2, 15)
        assert h["mqtt"]["outbox"]["held_in_memory"] >= 1 and h["status"] == "degraded"
        time.sleep(3.0)  # older than stale_accept_s by the time it can leave
        daemon.disk_full(False)
        mosquitto.start()
        assert sub.wait_for(lambda: len(sub.json()) >= 2, 30)
        late = sub.json()[1]
        assert late["person_id"] == "elton_john"
        assert (late["decision"], late["reason"]) == ("unknown", "stale_accept")
        assert late["stale_s"] >= 2 and 0 <= _ts(late) - shown < 3  # the decision's time, not the send's
        daemon.wait_health(lambda h: h["mqtt"]["outbox"]["writable"] and h["status"] == "ok", 20)
    finally:
        daemon.disk_full(False)
        assert daemon.terminate() == 0
    log = (tmp_path / "daemon.log").read_text()
    assert log.count("outbox cannot be written") == 1, log[-3000:]
    assert log.count("Traceback") == 0, log[-3000:]
    assert len(log.splitlines()) < 60, log[-3000:]
    assert all(json.loads(p) for _, p, _ in sub.messages)


def test_a_damaged_data_file_stops_the_daemon_with_a_clear_error_not_a_traceback(models_dir, tmp_path):
    """The synced cache replaced by garbage (a failing SD card, a file copied over it): the daemon
    says which file and what to do, exits 1 (systemd restarts it; the door stays locked) and
    leaves the file where it is for a human."""
    data = tmp_path / "data"
    data.mkdir()
    garbage = b"\x00not sqlite\xff" * 400
    (data / "cache.db").write_bytes(garbage)
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-damaged", camera="files:/nonexistent/*",
                            broker=None, hub=None, storage=data, api_port=free_port())
    run = subprocess.run([str(EDGE_VERIFIER), "run", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1, run.stderr[-2000:]
    assert f"{data / 'cache.db'}: file is not a database" in run.stderr and "move it aside" in run.stderr
    assert "Traceback" not in run.stderr
    assert (data / "cache.db").read_bytes() == garbage

