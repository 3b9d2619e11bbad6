"""`edge-verifier bench hub --json` runs end to end and prints its documented figures."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import FACES, ROOT


def test_bench_hub_prints_throughput_and_latency_json(faces_dir, models_dir):
    out = subprocess.run(
        [sys.executable, "-m", "edge", "bench", "hub", "--json", "--seconds", "1", "--concurrency", "2",
         "--faces", str(FACES), "--models-dir", str(models_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert {"requests", "rps", "p50_ms", "p99_ms", "errors", "concurrency"} <= set(result)
    assert result["requests"] > 0 and result["errors"] == 0 and result["concurrency"] == 2
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_bench_hub_scale_mode_compares_stores_and_process_counts(faces_dir, models_dir, pg_cluster):
    out = subprocess.run(
        [sys.executable, "-m", "edge", "bench", "hub", "--json", "--seconds", "0.5", "--concurrency", "2",
         "--processes", "2", "--store", "sqlite,postgresql", "--gallery", "50", "--pg-url", pg_cluster,
         "--faces", str(FACES), "--models-dir", str(models_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [(r["store"], r["processes"]) for r in result["runs"]] == [("sqlite", 1), ("postgresql", 2)]
    for run in result["runs"]:
        for op in ("verify", "identify"):
            assert run[op]["requests"] > 0 and run[op]["errors"] == 0
            assert 0 < run[op]["p50_ms"] <= run[op]["p99_ms"]
        assert run["rss_mb"] > 50
    gallery = result["gallery"]
    assert gallery["faces"] == 59 and gallery["matching"]["faces"] == 59 and gallery["identify"]["errors"] == 0
