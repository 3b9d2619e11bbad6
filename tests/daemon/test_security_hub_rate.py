"""Issue 14 item 14: a hub that answers 15 (rate limited) is unavailable for the decision (the
offline policy decides, not "reject, source cloud"), and edge sync backs off and resumes instead
of stopping until its next interval. Against a real hub with a small rate limit."""

from __future__ import annotations

import threading

import numpy as np

from edge.core.matcher import Gallery, thresholds_for
from edge.daemon.cache import EdgeCache
from edge.daemon.decide import Decider
from edge.daemon.sync import Syncer
from tests.conftest import wait_until
from tests.support.hub import start_hub


def _enrol_in_process(hub, faces_dir, people=("Madonna", "Elton_John", "Mindy_Kaling")):
    """Enrol through the hub's own service (the HTTP rate limit is what the test is about)."""
    service = hub.app.state.service
    for name in people:
        photo = (faces_dir / "five_celebrity" / name / "train_1.jpg").read_bytes()
        service.newperson(hub.appid, name.lower(), ["staff"], photo, name, "")


def test_sync_rate_limited_by_the_hub_backs_off_and_completes_before_its_interval(faces_dir, models_dir, tmp_path):
    from edge.vision import Pipeline

    fingerprint = Pipeline.load(models_dir).fingerprint
    with start_hub(tmp_path / "hub", limits={"rate_per_s": 2, "burst": 2}) as hub:
        _enrol_in_process(hub, faces_dir)
        client = hub.client(timeout=10.0, retries=0)
        cache = EdgeCache(tmp_path / "cache.db")
        # one change per page: 3 persons need more pages than the burst allows at once
        syncer = Syncer(client, cache, fingerprint, page_size=1, interval_s=3600)
        stop = threading.Event()
        thread = threading.Thread(target=syncer.run, args=(stop,), daemon=True)
        thread.start()
        try:
            deadline_ok = wait_until(lambda: syncer.state["status"] == "ok", 20, every=0.1)
        finally:
            stop.set()
            syncer.trigger()
            thread.join(10)
            client.close()
        assert syncer.state["failures"] >= 1, "the hub's rate limit was never hit: the test proves nothing"
        assert deadline_ok, f"sync stopped at the rate limit: {syncer.state}"
        assert len(cache.gallery().person_ids) == 3


def test_an_uncertain_face_meets_a_rate_limited_hub_and_follows_the_offline_policy(models_dir, tmp_path):
    with start_hub(tmp_path / "hub", limits={"rate_per_s": 0.01, "burst": 1}) as hub:
        client = hub.client(timeout=10.0, retries=0)
        try:
            client.getgroupids()  # the only token of the bucket
            gallery = Gallery((), thresholds_for("int8"), version="empty")
            emb = np.ones(128, dtype=np.float32) / np.sqrt(128)
            for offline, expected in (("deny", "unknown"), ("uncertain", "uncertain")):
                out = Decider(client, offline=offline).verify(gallery, emb, "madonna", lambda: b"\xff\xd8 jpeg")
                assert out.cloud is not None and "15" in (out.cloud.error or ""), out.cloud
                assert (out.source, out.decision) == ("offline-policy", expected)
            assert client.breaker_state == "closed"  # a hub that answers is not a broken hub
        finally:
            client.close()
