"""`bench door --templates` (edge.bench.door_templates): person templates and multi-look tracks,
each rule on its own impostor tail (issue 25)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge.bench.door_templates import (
    APPROACH,
    FIRST_LOOK,
    Policy,
    RuleFit,
    decide_looks,
    draw_units,
    face_margins,
    fit_rules,
    policies,
    rule_scores,
    run_policy,
    templates,
)
from edge.bench.wild import FolderFaces
from edge.core.false_admit import per_pair_far


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _people(n_persons: int, per: int, dim: int, spread: float, seed: int):
    """Synthetic photos: each person a random direction, each photo that plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_persons, dim))
    person = np.repeat(np.arange(n_persons), per)
    emb = _unit(centres[person] + spread * rng.normal(size=(len(person), dim)))
    by_person = {str(p): np.flatnonzero(person == p) for p in range(n_persons)}
    return emb, person.astype(str), by_person


def test_each_rule_scores_a_person_as_defined():
    rng = np.random.default_rng(0)
    clean = _unit(rng.normal(size=(9, 8)))
    probe = _unit(rng.normal(size=(4, 8)))
    units = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    s = rule_scores(probe, clean, units)
    for u, rows in enumerate(units):
        mean = clean[rows].sum(axis=0)
        for p in range(len(probe)):
            best = max(float(probe[p] @ clean[r]) for r in rows)
            tmpl = float(probe[p] @ mean) / float(np.linalg.norm(mean))
            assert s["best"][p, u] == pytest.approx(best, abs=1e-6)
            assert s["template"][p, u] == pytest.approx(tmpl, abs=1e-6)
            assert s["max"][p, u] == pytest.approx(max(best, tmpl), abs=1e-6)
    assert np.allclose(np.linalg.norm(templates(clean, units), axis=1), 1.0)


def test_units_are_distinct_k_photo_subsets_of_one_person():
    by_person = {"a": np.arange(0, 6), "b": np.arange(6, 9), "c": np.arange(9, 11)}
    units, owner = draw_units(by_person, 3, per_person=5, rng=np.random.default_rng(1))
    assert set(owner) == {"a", "b"}  # c has 2 photos: no unit of 3
    assert (owner == "b").sum() == 1 and (owner == "a").sum() == 5  # C(3,3) = 1; C(6,3) = 20 >= 5
    for u, o in zip(units, owner):
        assert len(set(u)) == 3 and set(u) <= set(by_person[o].tolist())
    assert len({tuple(u) for u in units}) == len(units)


def test_a_fitted_threshold_holds_the_per_person_rate_on_its_own_pairs():
    """The tail is read off impostor pairs (probe, another person's unit): at the threshold for
    N persons, about per_pair_far(rate, N) of those pairs pass, for every rule."""
    emb, person, by_person = _people(160, 5, 24, 0.9, seed=3)
    usable = np.ones(len(person), bool)
    fits = fit_rules(emb, emb, person, usable, by_person, 3, per_person=6, seed=0)
    units, owner = draw_units(by_person, 3, 6, np.random.default_rng([0, 3, 7]))
    scores = rule_scores(emb, emb, units)
    other = person[:, None] != owner[None, :]
    for rule, fit in fits.items():
        assert fit.impostor_pairs == int(other.sum())
        p = per_pair_far(0.05, 10)
        share = float(np.mean(scores[rule][other] >= fit.threshold(0.05, 10)))
        assert share == pytest.approx(p, rel=0.25)  # read at 5e-3: thousands of pairs over it
        # more persons searched: a stricter threshold
        assert fit.threshold(1e-3, 400) > fit.threshold(1e-3, 100) > fit.threshold(1e-3, 10)
    # Templates average the photos' noise out: a person's own photos score higher on them.
    assert fits["template"].tar["0.0001"] >= fits["best"].tar["0.0001"]


def test_spending_the_rate_over_the_looks_holds_it_per_approach():
    """Strangers' looks independent: deciding each look at the whole rate admits about
    1 - (1 - rate)^T of them; spending it over the T looks, about the rate."""
    rng = np.random.default_rng(5)
    rate, t, n = 0.02, 3, 60_000
    # cosine-like scores (thresholds stop at 1.0); one person enrolled: no second to beat
    scores = (0.1 * rng.normal(size=(n * t, 1))).astype(np.float32)
    looks = np.arange(n * t).reshape(n, t)
    z = np.sort(0.1 * rng.normal(size=2_000_000))[::-1]
    fit = RuleFit("best", [(f, float(z[int(f * z.size)])) for f in (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)])
    zero = np.zeros(n * t, np.float32)
    each = decide_looks(scores, looks, zero, Policy("best", fit.threshold(rate, 1), {}, 0.05))[0]
    spent = decide_looks(scores, looks, zero, Policy("best", fit.threshold(per_pair_far(rate, t), 1), {}, 0.05))[0]
    assert each.mean() == pytest.approx(1 - (1 - rate) ** t, rel=0.1)
    assert spent.mean() == pytest.approx(rate, rel=0.15)


def test_the_first_accepted_look_decides_and_a_close_second_person_is_not_accepted():
    # rows: look scores against persons (0, 1)
    scores = np.array([[0.30, 0.10],   # 0: under the threshold
                       [0.62, 0.60],   # 1: over it, but person 1 is too close
                       [0.70, 0.20],   # 2: accepted as person 0
                       [0.20, 0.80]],  # 3: accepted as person 1
                      np.float32)
    looks = np.array([[0, 2, 3], [1, 3, -1], [0, -1, -1]])
    pol = Policy("best", 0.5, {}, 0.05)
    accepted, who, deciding = decide_looks(scores, looks, np.zeros(4, np.float32), pol)
    assert accepted.tolist() == [True, True, False]
    assert who.tolist() == [0, 1, -1]  # the first accepted look decides, not the highest
    assert deciding.tolist() == [2, 3, 0]
    margin = np.array([0.0, 0.0, 0.25, 0.0], np.float32)  # look 2's band raises its threshold
    accepted, who, _ = decide_looks(scores, looks, margin, pol)
    assert accepted.tolist() == [True, True, False] and who.tolist() == [1, 1, -1]


def _folder(emb: np.ndarray, person: np.ndarray, seed: int) -> FolderFaces:
    rng = np.random.default_rng(seed)
    n = len(person)
    size = rng.choice([50.0, 80.0, 140.0], size=n).astype(np.float32)
    yaw = rng.uniform(-35, 35, n).astype(np.float32)
    zeros = np.zeros(n, np.float32)
    return FolderFaces([f"{p}/{i}.jpg" for i, p in enumerate(person)], emb, emb, np.ones(n, bool),
                       np.ones(n, bool), size, size / 2, yaw, zeros, zeros + 300)


@pytest.mark.parametrize("shipped, rule", [("best-shipped", "best"), ("max-shipped", "best-or-template")])
def test_the_matrix_decision_is_the_daemons(shipped, rule):
    """best-shipped and max-shipped decided with matrices give exactly what edge.daemon's Decider
    and Gallery decide on the same galleries under `[identify] rule` best and best-or-template
    (edge.bench.door.run_door): admits, misses, misidentified."""
    from edge.bench.door import draw_door, run_door
    from edge.core.matcher import thresholds_for

    emb, person, by_person = _people(150, 5, 16, 0.75, seed=11)
    ff = _folder(emb, person, seed=2)
    conds = [ff.condition(i) for i in range(len(person))]
    labels = ff.band_labels()
    rng = np.random.default_rng(4)
    # per-look against the daemon's [identify] rate_per = "look"; one look at the first look's
    # share (first-look) and two looks at theirs (approach) against rate_per = "approach"
    for looks_t, spend, rate_per in ((1, "per-look", "look"), (2, "per-look", "look"), (1, FIRST_LOOK, "approach"),
                                     (2, APPROACH, "approach")):
        doors = [draw_door(rng, by_person, 40, 3, looks_t) for _ in range(2)]
        pol = policies({}, "int8", 1e-3, 40, 3, looks_t, spend, 0.05)[shipped]
        mine = run_policy(ff.probe, ff.clean, doors, pol, face_margins(conds, pol.margins), labels, looks_t)
        t = thresholds_for("int8", false_admit_rate=1e-3, rule=rule)
        runs = [run_door(ff.clean, e, m, nm, t, "off", "best", None, probe=ff.probe, conditions=conds,
                         rate_per=rate_per) for e, m, nm in doors]
        assert mine["false_admits"] == sum(r["false_admits"] for r in runs) > 0
        assert round(mine["fnir"] * mine["mated"]) == sum(r["misses"] for r in runs) > 0
        assert mine["misidentified"] == sum(r["misidentified"] for r in runs)
        for measure in ("size", "pose", "sharpness"):
            per = [b for k, b in mine["bands"].items() if k.startswith(measure + ":")]
            assert sum(b["non_mated"] for b in per) == mine["non_mated"]
            assert sum(b["false_admits"] for b in per) == mine["false_admits"]


def test_bench_door_templates_on_a_few_cfp_persons_fits_each_set_and_tests_both(faces_dir, models_dir, tmp_path):
    """The real command on two small CFP folders (10 and 8 persons, probes degraded): each rule
    fitted on each folder and decided on both, the shipped rule beside them."""
    cfp = faces_dir / "cfp"
    if not cfp.is_dir():
        pytest.skip(f"{cfp} absent")
    persons = sorted(p.name for p in cfp.iterdir() if p.is_dir())[:18]
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, names in ((a, persons[:10]), (b, persons[10:])):
        folder.mkdir()
        for name in names:
            shutil.copytree(cfp / name, folder / name)
    out_file = tmp_path / "templates.json"
    cmd = [sys.executable, "-m", "edge", "bench", "door", "--templates", "--data", str(a), "--cross", str(b),
           "--persons", "4", "--photos", "2", "--galleries", "2", "--looks", "1,2", "--units", "15",
           "--precision", "int8", "--models-dir", str(models_dir), "--degrade", "size=40:110,blur=0:1",
           "--workers", "1", "--templates-out", str(out_file)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert json.loads(out_file.read_text()) == out
    e = out["packs"]["int8"]
    assert set(e["fits"]) == {"a/K=2", "b/K=2"}
    results = [r for r in e["results"] if "skipped" not in r]
    seen = {(r["test"], r["fit"], r["rule"], r["looks"], r["spend"]) for r in results}
    for test in ("a", "b"):
        for fit in ("a", "b"):
            for rule in ("best", "template", "max"):
                assert (test, fit, rule, 1, "per-look") in seen
                assert (test, fit, rule, 2, "spent") in seen
                assert (test, fit, rule, 1, "spent/2") in seen  # two alike frames: one look, the stricter threshold
        assert (test, "shipped (LFW tail per face)", "best-shipped", 1, "per-look") in seen
    for fits in e["fits"].values():  # the door's own excess only raises the pairs' margins
        for f in fits.values():
            assert all(f["margins"][b] >= m >= 0 for b, m in f["pair_margins"].items())
    for r in results:
        fit = e["fits"].get(f"{r['fit']}/K=2", {}).get(r["rule"])
        if fit and r["looks"] == 1 and r["spend"] == "per-look":  # each rule at its own tail's threshold
            tail = RuleFit.from_dict(r["rule"], fit)
            assert r["threshold"] == tail.threshold(out["false_admit_rate"], 4)
        for measure in ("size", "pose", "sharpness"):
            per = [b for k, b in r["bands"].items() if k.startswith(measure + ":")]
            assert sum(x["mated"] for x in per) == r["mated"]
            assert sum(x["false_admits"] for x in per) == r["false_admits"]
    spent = {(r["test"], r["fit"], r["rule"]): r["threshold"] for r in results if r["spend"] == "spent"}
    each = {(r["test"], r["fit"], r["rule"]): r["threshold"] for r in results
            if r["spend"] == "per-look" and r["looks"] == 2}
    assert all(spent[k] >= each[k] for k in spent)  # spending the rate over two looks: stricter
