"""`edge-verifier bench log --json` runs end to end (small sizes) and prints its documented
figures: what is lost of the door link's records at the hub and of its door events at an MQTT
subscriber, with the hub and the broker (a real mosquitto) each SIGKILLed."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_bench_log_counts_records_and_door_events_across_hub_and_broker_kills(models_dir):
    out = subprocess.run(
        [sys.executable, "-m", "edge", "bench", "log", "--json", "--evaluations", "200", "--decisions", "60",
         "--kills", "1", "--skip", "search"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["evaluate_us"]["n"] == 200 and 0 < result["evaluate_us"]["p50"] <= result["evaluate_us"]["p99"]
    assert (result["hub_kills"], result["broker_kills"], result["decisions"]) == (1, 1, 60)
    # every decision made a record and at least its grant event, and all of them arrived
    assert result["records"] > 60 and result["door_events"] >= 60
    assert (result["lost"], result["lost_records"], result["lost_door_events"]) == (0, 0, 0), result
    assert result["stored"] == result["records"] and result["received"] == result["door_events"]
    assert result["edge_chain_ok"] and result["uploader"]["refused"] == 0
