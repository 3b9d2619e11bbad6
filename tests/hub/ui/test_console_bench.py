"""`edge-verifier bench ui` runs end to end on a small store and prints what docs/benchmarks.md quotes."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_ui_prints_the_page_latencies():
    out = subprocess.run([sys.executable, "-m", "edge", "bench", "ui", "--json", "--persons", "120", "--rounds", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["persons"] == 120 and set(result["page_ms"]) == {"p50", "p95", "max"}
    assert set(result["pages"]) == {"persons", "persons_last", "search", "person", "groups", "decisions",
                                   "decisions_person", "decisions_day", "doors", "doors_person"}
    assert 0 < result["page_ms"]["p50"] <= result["page_ms"]["p95"] <= result["page_ms"]["max"]
