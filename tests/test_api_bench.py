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
