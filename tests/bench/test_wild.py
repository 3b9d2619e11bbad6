"""Faces as a door sees them (edge.bench.wild) and `bench door --data DIR --degrade` (issue 25)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge.bench.wild import Degrade, FolderFaces, degrade_image, fit_margins, pair_tails


def test_degrade_spec_parses_ranges_and_refuses_nonsense():
    d = Degrade.parse("size=40:120,blur=0:1.5,rotate=-8:8")
    assert (d.size, d.blur, d.rotate) == ((40.0, 120.0), (0.0, 1.5), (-8.0, 8.0))
    assert Degrade.parse("size=64").size == (64.0, 64.0)
    assert Degrade.parse("") is None and Degrade.parse(None) is None
    for bad in ("size=120:40", "size=4:8", "blur=-1:2", "zoom=2", "size="):
        with pytest.raises(ValueError):
            Degrade.parse(bad)


def test_each_photo_draws_its_own_condition_reproducibly_within_the_ranges():
    d = Degrade.parse("size=40:120,blur=0:1.5,rotate=-8:8")
    draws = [d.draw(f"p{i}/f01.jpg", seed=3) for i in range(200)]
    assert draws == [d.draw(f"p{i}/f01.jpg", seed=3) for i in range(200)]
    assert draws != [d.draw(f"p{i}/f01.jpg", seed=4) for i in range(200)]
    sizes = np.array([s for s, _, _ in draws])
    assert sizes.min() >= 40 and sizes.max() <= 120
    assert (sizes < 69.3).mean() == pytest.approx(0.5, abs=0.12)  # log-uniform: half under the geometric mean
    assert all(0 <= b <= 1.5 and -8 <= r <= 8 for _, b, r in draws)


def _photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = (rng.random((240, 200, 3)) * 255).astype(np.uint8)
    return img


def test_a_photo_is_scaled_so_the_face_reaches_the_target_and_never_enlarged():
    img = _photo()
    small = degrade_image(img, face_size=120.0, target=60.0, sigma=0.0, angle=0.0)
    assert small.shape[:2] == (120, 100)
    same = degrade_image(img, face_size=50.0, target=60.0, sigma=0.0, angle=0.0)
    assert same.shape == img.shape and np.array_equal(same, img)


def test_blur_and_rotation_change_the_pixels_not_the_size():
    import cv2

    img = _photo()
    blurred = degrade_image(img, 120.0, None, sigma=1.5, angle=0.0)
    turned = degrade_image(img, 120.0, None, sigma=0.0, angle=10.0)
    assert blurred.shape == turned.shape == img.shape

    def sharp(x):
        return cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()

    assert sharp(blurred) < sharp(img) / 4
    assert not np.array_equal(turned, img)


def _faces(n_persons: int = 40, per: int = 3, dim: int = 16, seed: int = 0):
    """Synthetic clean and probe embeddings; the first half of the probes are 'small' faces
    whose impostor scores are pushed up (a shared direction), the rest large."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_persons, dim))
    person = np.repeat(np.arange(n_persons), per)
    clean = centres[person] + 0.6 * rng.normal(size=(len(person), dim))
    clean /= np.linalg.norm(clean, axis=1, keepdims=True)
    probe = clean + 0.3 * rng.normal(size=clean.shape)
    n = len(person)
    small = np.arange(n) % 2 == 0
    probe[small] += 1.5 * clean.mean(0)  # small faces look alike: a heavier impostor tail
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    size = np.where(small, 50.0, 120.0).astype(np.float32)
    zeros = np.zeros(n, np.float32)
    ff = FolderFaces([f"p{p}/f{i}.jpg" for i, p in enumerate(person)], clean.astype(np.float32),
                     probe.astype(np.float32), np.ones(n, bool), np.ones(n, bool), size, size / 2,
                     zeros, zeros, zeros + 300)
    return ff, person.astype(str)


def test_pair_tails_split_by_band_and_the_fit_asks_a_margin_only_where_the_tail_is_heavier():
    ff, person = _faces()
    tails = pair_tails(ff, person, accept=0.5, fars=(1e-2,), reject=0.1)
    small, large = tails["size:0-64"], tails["size:96+"]
    assert small["probes"] == large["probes"] == len(person) // 2
    assert tails["all"]["impostor_pairs"] == small["impostor_pairs"] + large["impostor_pairs"]
    assert small["score_at_far"]["0.01"] > large["score_at_far"]["0.01"]
    ref = large["score_at_far"]["0.01"]
    fitted = fit_margins(tails, ref, "0.01")
    assert fitted["size:0-64"] == pytest.approx(small["score_at_far"]["0.01"] - ref, abs=1e-4)
    assert fitted["size:0-64"] >= small["score_at_far"]["0.01"] - ref - 1e-9  # rounded up: the rate holds
    assert fitted["size:96+"] == 0.0  # never negative
    assert "size:64-96" not in fitted  # no probes there: nothing measured, nothing claimed
    # A per-photo accept threshold (the condition's) is applied photo by photo.
    acc = np.where(ff.size < 64, 0.5 + fitted["size:0-64"], 0.5)
    raised = pair_tails(ff, person, accept=acc, fars=(1e-2,))
    assert raised["size:0-64"]["far_at_accept"] <= small["far_at_accept"]
    assert raised["size:96+"]["far_at_accept"] == large["far_at_accept"]


def test_bench_door_on_a_few_cfp_identities_degraded(faces_dir, models_dir, tmp_path):
    """The real command on 12 CFP persons: every photo through the whole pipeline, probes
    downscaled and blurred, galleries of 4 persons x 2 photos; the counts add up, every band
    is reported, and the fitted margins are never negative."""
    cfp = faces_dir / "cfp"
    if not cfp.is_dir():
        pytest.skip(f"{cfp} absent")
    env_cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    import os

    cmd = [sys.executable, "-m", "edge", "bench", "door", "--data", str(cfp), "--identities", "12",
           "--persons", "4", "--photos", "2", "--galleries", "2", "--precision", "int8", "--models-dir",
           str(models_dir), "--degrade", "size=36:100,blur=0:1", "--conditions", "none,shipped",
           "--workers", "1", "--plot", str(tmp_path / "det.png")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env_cache})
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    e = out["packs"]["int8"]
    assert out["photos"] == 72 and e["photos_with_face"] <= 72
    assert e["probes_decided"] + sum(e["probes_not_decided"].values()) == 72
    assert e["probe_measures"]["size"][2] <= 100 * 1.2  # the probes were downscaled
    assert {r["conditions"] for r in e["results"]} == {"none", "shipped"}
    for r in e["results"]:
        assert r["non_mated"] + r["mated"] > 0
        for measure in ("size", "pose", "sharpness"):
            per = [b for k, b in r["bands"].items() if k.startswith(measure + ":")]
            assert sum(b["non_mated"] for b in per) == r["non_mated"]
            assert sum(b["mated"] for b in per) == r["mated"]
            assert sum(b["false_admits"] for b in per) == r["false_admits"]
    assert all(v >= 0 for v in e["fitted"]["margins"].values())
    today = e["pairs"]["today"]["all"]
    assert today["probes"] == e["probes_decided"] and today["impostor_pairs"] > 0
    assert out["plots"] and all((tmp_path / p).exists() for p in out["plots"])


def test_bench_lfw_on_a_folder_without_pairs_measures_1to1_by_band(faces_dir, models_dir, tmp_path):
    """`bench lfw --data DIR` on a folder with no pairs.txt (CFP, 8 persons): every probe against
    every photo, split by band; the band counts add up to the whole."""
    import os

    cfp = faces_dir / "cfp"
    if not cfp.is_dir():
        pytest.skip(f"{cfp} absent")
    cmd = [sys.executable, "-m", "edge", "bench", "lfw", "--data", str(cfp), "--identities", "8",
           "--precision", "int8", "--models-dir", str(models_dir), "--workers", "1"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    bands = out["int8"]["bands"]
    whole = bands["all"]
    assert out["photos"] == 48 and whole["probes"] > 0
    assert whole["genuine_pairs"] > 0 and whole["impostor_pairs"] > whole["genuine_pairs"]
    for measure in ("size", "pose", "sharpness"):
        per = [b for k, b in bands.items() if k.startswith(measure + ":")]
        assert sum(b["probes"] for b in per) == whole["probes"]
        assert sum(b["impostor_pairs"] for b in per) == whole["impostor_pairs"]
    assert 0 <= whole["genuine_reject"] <= 1 - whole["genuine_accept"]


def test_identify_margin_per_band_lets_at_most_the_rate_of_the_bands_strangers_through():
    from edge.bench.door import door_margins

    rng = np.random.default_rng(1)
    n = 4000
    labels = {"size": np.where(np.arange(n) < 2000, "0-64", "96+"), "pose": np.full(n, "0-15"),
              "sharpness": np.full(n, "150+")}
    top = rng.uniform(0.0, 0.45, n)
    top[:6] = [0.60, 0.58, 0.57, 0.55, 0.52, 0.51]  # six small strangers above a threshold of 0.50
    margins = door_margins(labels, np.arange(n), top, threshold=0.50, rate=1e-3)
    assert margins["size:96+"] == 0.0  # nobody there reaches the threshold: never negative
    raised = 0.50 + margins["size:0-64"]
    small = top[:2000]
    # 2 = 1e-3 x 2,000; and the margin is the least that does it (to its 4 decimals)
    assert np.sum(small >= raised) <= 2 < np.sum(small >= raised - 2e-4)
    assert "size:64-96" not in margins  # no strangers there: the rate cannot be read


def test_bench_door_tracks_counts_looks_and_never_admits_more_per_approach(faces_dir, models_dir, tmp_path):
    """`bench door --tracks` on two NUAA live sessions as strangers at doors of 8 LFW persons: the
    approaches are the sessions' good frames cut into runs of T, the per-pair shares are read at
    every threshold, and the daemon's decision with rate_per approach admits no approach that
    rate_per look refused (every look's threshold is at least as strict)."""
    import os
    import shutil

    nuaa = faces_dir / "liveness" / "nuaa" / "live"
    if not nuaa.is_dir():
        pytest.skip(f"{nuaa} absent")
    root = tmp_path / "liveness"
    for subject in ("0001", "0002"):
        (root / "nuaa" / "live" / subject).mkdir(parents=True)
        session = sorted(p for p in (nuaa / subject).glob("*.jpg"))[:9]
        for p in session:
            shutil.copy(p, root / "nuaa" / "live" / subject / p.name)
    lfw = tmp_path / "lfw"
    people = ["Abdullah_Gul", "Adrien_Brody", "Al_Sharpton", "Alan_Greenspan", "Alejandro_Toledo",
              "Abdoulaye_Wade", "Adam_Sandler", "Alastair_Campbell"]
    for person in people:
        (lfw / person).mkdir(parents=True)
        for p in sorted((faces_dir / "lfw" / person).glob("*.jpg"))[:4]:
            shutil.copy(p, lfw / person / p.name)
    cmd = [sys.executable, "-m", "edge", "bench", "door", "--tracks", str(root), "--data", str(lfw),
           "--persons", "4", "--galleries", "2", "--precision", "int8", "--models-dir", str(models_dir),
           "--track-looks", "1,3", "--rates", "0.001,0.2", "--workers", "1", "--plot", str(tmp_path / "t.png")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    recs = out["recordings"]
    assert [r["group"] for r in recs] == ["live", "live"] and all(r["good"] <= r["faces"] <= 9 for r in recs)
    good = [r["good"] for r in recs]
    for rule in ("best", "best-or-template"):
        curve = out["pairs"][rule]
        assert curve["persons"] == 8
        one, three = curve["per_T"]["1"], curve["per_T"]["3"]
        assert one["approaches"] == sum(good) and three["approaches"] == sum(g // 3 for g in good)
        assert one["pairs"] == 8 * sum(good)
        for entry in (one, three):
            assert all(a >= b for a, b in zip(entry["share_over"], entry["share_over"][1:]))  # per threshold
        assert out["pairs_by_group"][rule]["live"]["per_T"]["1"]["pairs"] == one["pairs"]  # only live here
        door = out["door"][rule]
        assert {(d["rate"], d["rate_per"], d["looks"]) for d in door} == {
            (r, p, t) for r in (0.001, 0.2) for p in ("look", "approach") for t in (1, 3)}
        for d in door:
            assert d["approaches"] == 2 * (sum(good) if d["looks"] == 1 else sum(g // 3 for g in good))
            if d["rate_per"] == "approach":
                per_look = next(e for e in door if (e["rate"], e["looks"], e["rate_per"]) ==
                                (d["rate"], d["looks"], "look"))
                assert d["admitted"] <= per_look["admitted"]
    claims = out["claims"]  # each approach claims each of the 8 persons (K = 3), per look and per claim
    assert claims["persons"] == 8
    for t_looks, apps in (("1", sum(good)), ("3", sum(g // 3 for g in good))):
        entry = claims["per_T"][t_looks]
        assert (entry["approaches"], entry["claims"]) == (apps, apps * 8)
        look, claim = entry["rules"]["look"], entry["rules"]["claim"]
        assert claim["admitted"] <= look["admitted"] and claim["thresholds"][0] > look["thresholds"][0]
        assert look["by_group"]["live"]["claims"] == entry["claims"]
    assert (tmp_path / "t.png").stat().st_size > 0
    for bad in (["--look-fps", "0"], ["--track-looks", "0,3"], ["--rates", "1.5"], ["--track-looks", "two"]):
        refused = subprocess.run(cmd + bad, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "error:" in refused.stderr and "Traceback" not in refused.stderr
