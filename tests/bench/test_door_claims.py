"""`bench door --claims` (edge.bench.door_claims): 1:1 claims per look and per claim."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np

from edge.bench.door_claims import admitted, by_template, daemon_thresholds, look_thresholds
from edge.core.matcher import CALIBRATED_THRESHOLDS, Enrolled, Gallery
from edge.daemon.decide import Decider


def test_the_benchs_matrix_decisions_are_the_daemons():
    """The bench decides claims with matrices; the daemon one look at a time (Decider.verify,
    the first accept published): the same claims admitted, for both rules, by the best face and
    (a person of up to 5 photos, per claim) by best face or template, with admits and refusals on
    both sides of every look's threshold."""
    rng = np.random.default_rng(7)
    thresholds = daemon_thresholds("int8")
    assert thresholds.template_photos == 5
    assert not by_template(thresholds, Decider(None), 1) and by_template(thresholds, Decider(None), 2)
    for k, t in ((1, 1), (3, 1), (2, 4), (5, 3), (6, 2)):
        faces = rng.normal(size=(k, 128))
        faces /= np.linalg.norm(faces, axis=1, keepdims=True)
        template = faces.sum(axis=0) / np.linalg.norm(faces.sum(axis=0))
        gallery = Gallery([Enrolled("alice", f"a{i}", f.astype(np.float32)) for i, f in enumerate(faces)], thresholds)
        targets = rng.uniform(0.30, 0.56, size=(300, t))
        probes = []
        for claim in targets:  # a unit vector at cosine s of the first face, per look
            looks = []
            for s in claim:
                noise = rng.normal(size=128)
                noise -= (noise @ faces[0]) * faces[0]
                looks.append(s * faces[0] + math.sqrt(1 - s * s) * noise / np.linalg.norm(noise))
            probes.append(looks)
        probes = np.array(probes, np.float32)  # (claims, T, d)
        best = (probes @ faces.T).max(axis=2)
        for rule in ("look", "claim"):
            decider = Decider(None, claim_rate_per=rule)
            scores = np.maximum(best, probes @ template) if by_template(thresholds, decider, k) else best
            bench = admitted(scores, look_thresholds(thresholds, decider, k, t))
            daemon = ["accept" in [decider.verify(gallery, v, "alice", look=n).decision for n, v in enumerate(claim)]
                      for claim in probes]
            assert list(bench) == daemon, (k, t, rule)
            assert 0 < bench.sum() < len(bench)
    # per claim its looks grow stricter; per look every look at accept
    pack = CALIBRATED_THRESHOLDS["int8"]
    assert look_thresholds(thresholds, Decider(None, claim_rate_per="look"), 3, 3) == [pack.accept] * 3
    claim = look_thresholds(thresholds, Decider(None), 3, 3)
    assert claim == sorted(claim) and claim[0] == thresholds.claim_template_accept(3, 0.5) >= \
        thresholds.claim_accept(3, 0.5) > pack.accept
    assert look_thresholds(thresholds, Decider(None), 6, 1) == [thresholds.claim_accept(6, 0.5)]  # past K = 5


def test_bench_door_claims_counts_every_claim_on_real_photos(faces_dir, models_dir, tmp_path):
    """The real command on six LFW persons of six photos each: every photo through the int8
    pipeline; the claims add up, the rules' thresholds are the daemon's, per claim admits no
    more than per look, and bad options are refused with a clear error."""
    lfw = tmp_path / "lfw"
    people = [p for p in sorted((faces_dir / "lfw").iterdir()) if len(list(p.glob("*.jpg"))) >= 6][:6]
    for person in people:
        (lfw / person.name).mkdir(parents=True)
        for p in sorted(person.glob("*.jpg"))[:6]:
            shutil.copy(p, lfw / person.name / p.name)
    cmd = [sys.executable, "-m", "edge", "bench", "door", "--claims", "--data", str(lfw), "--precision", "int8",
           "--models-dir", str(models_dir), "--photos", "1,3", "--frames", "1,3", "--workers", "1",
           "--plot", str(tmp_path / "claims.png")]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["photos"] == 36 and out["identities"] == 6
    points = {(p["photos_per_person"], p["looks"]): p for p in out["packs"]["int8"]}
    # (K, T): genuine claims = runs of T among each person's 6 - K photos not enrolled; impostor
    # claims = runs of T of each person's 6 photos x the 5 other persons
    expected = {(1, 1): (30, 36 * 5), (1, 3): (6, 12 * 5), (3, 1): (18, 36 * 5), (3, 3): (6, 12 * 5)}
    pack = CALIBRATED_THRESHOLDS["int8"]
    for (k, t), (genuine, impostor) in expected.items():
        p = points[(k, t)]
        assert (p["persons"], p["genuine_claims"], p["impostor_claims"]) == (6, genuine, impostor)
        look, claim = p["rules"]["look"], p["rules"]["claim"]
        assert look["thresholds"] == [pack.accept] * t
        shipped = daemon_thresholds("int8")
        accept = shipped.claim_template_accept if k > 1 else shipped.claim_accept  # one photo: its own face
        assert claim["thresholds"] == [accept(k, 0.5 ** (n + 1)) for n in range(t)]
        assert claim["scored_by"] == ("best-or-template" if k > 1 else "best") and look["scored_by"] == "best"
        assert claim["false_accepts"] <= look["false_accepts"]
        assert claim["far_first_look"] <= claim["far_per_claim"] <= 1
        assert 0 < look["genuine_accept"] <= 1  # the members' own photos are admitted
    assert out["plots"] and all(os.path.getsize(p) > 0 for p in out["plots"])
    # by condition band (each probe as the door sees it, the shipped margins): every claim in one
    # band of each measure, the band counts adding up to the whole
    banded = subprocess.run(cmd[:cmd.index("--frames")] + ["--frames", "1", "--bands"], capture_output=True,
                            text=True, timeout=300, env=env)
    assert banded.returncode == 0, banded.stderr[-2000:]
    for p in json.loads(banded.stdout)["packs"]["int8"]:
        assert p["impostor_claims"] > 0 and p["bands"]
        for measure in ("size", "pose", "sharpness"):
            per = [b for name, b in p["bands"].items() if name.startswith(measure + ":")]
            assert sum(b["claims"] for b in per) == p["impostor_claims"]
            for rule in ("look", "claim"):
                assert sum(b[rule]["false_accepts"] for b in per) == p["rules"][rule]["false_accepts"]
    for bad in (["--frames", "0"], ["--photos", "x"]):
        refused = subprocess.run(cmd + bad, capture_output=True, text=True, timeout=120, env=env)
        assert refused.returncode == 2 and "error:" in refused.stderr and "Traceback" not in refused.stderr
