"""`bench door --claims` (edge.bench.door_claims): 1:1 claims per look and per claim."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np

from edge.bench.door_claims import admitted, look_thresholds
from edge.core.matcher import CALIBRATED_THRESHOLDS, Enrolled, Gallery, thresholds_for
from edge.daemon.decide import Decider


def test_the_benchs_matrix_decisions_are_the_daemons():
    """The bench decides claims with matrices; the daemon one look at a time (Decider.verify,
    the first accept published): the same claims admitted, for both rules, with admits and
    refusals on both sides of every look's threshold."""
    rng = np.random.default_rng(7)
    thresholds = thresholds_for("int8")
    for k, t in ((1, 1), (3, 1), (2, 4), (5, 3)):
        faces = rng.normal(size=(k, 128))
        faces /= np.linalg.norm(faces, axis=1, keepdims=True)
        gallery = Gallery([Enrolled("alice", f"a{i}", f.astype(np.float32)) for i, f in enumerate(faces)], thresholds)
        scores = rng.uniform(0.40, 0.56, size=(300, t)).astype(np.float32)  # each look's best-face score
        for rule in ("look", "claim"):
            decider = Decider(None, claim_rate_per=rule)
            per_look = look_thresholds(thresholds, decider, k, t)
            bench = admitted(scores, per_look)
            daemon = []
            for claim in scores:
                outs = []
                for n, s in enumerate(claim):
                    noise = rng.normal(size=128)
                    noise -= (noise @ faces[0]) * faces[0]
                    v = s * faces[0] + math.sqrt(1 - s * s) * noise / np.linalg.norm(noise)
                    assert (faces[1:] @ v < s).all()  # the first face is the claim's best, at score s
                    outs.append(decider.verify(gallery, v.astype(np.float32), "alice", look=n).decision)
                daemon.append("accept" in outs)
            assert list(bench) == daemon, (k, t, rule)
            assert 0 < bench.sum() < len(bench)
    # per claim never admits more than per look, and its looks grow stricter
    pack = CALIBRATED_THRESHOLDS["int8"]
    assert look_thresholds(pack, Decider(None, claim_rate_per="look"), 3, 3) == [pack.accept] * 3
    claim = look_thresholds(pack, Decider(None), 3, 3)
    assert claim == sorted(claim) and claim[0] == pack.claim_accept(3, 0.5) > pack.accept


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
        assert claim["thresholds"] == [pack.claim_accept(k, 0.5 ** (n + 1)) for n in range(t)]
        assert claim["false_accepts"] <= look["false_accepts"]
        assert claim["genuine_accept"] <= look["genuine_accept"]
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
