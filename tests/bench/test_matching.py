"""`bench matching`: identify alone under each [identify] rule on the same galleries and probes."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_matching_times_both_rules_side_by_side():
    run = subprocess.run([sys.executable, "-m", "edge", "bench", "matching", "--persons", "30,60", "--photos", "2",
                          "--probes", "10", "--rounds", "2", "--json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert [r["persons"] for r in out["results"]] == [30, 60]
    for r in out["results"]:
        assert r["faces"] == r["persons"] * 2
        for rule in ("best", "best-or-template"):
            assert 0 < r[rule]["p50_ms"] <= r[rule]["p99_ms"]
        assert r["ratio_p50"] == round(r["best-or-template"]["p50_ms"] / r["best"]["p50_ms"], 2)


def test_bench_matching_refuses_a_gallery_of_one():
    run = subprocess.run([sys.executable, "-m", "edge", "bench", "matching", "--persons", "1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--persons" in run.stderr
