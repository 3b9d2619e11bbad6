"""`edge-verifier demo` ends by itself, prints each decision and cleans up its processes."""

from __future__ import annotations

import json
import subprocess

from tests.broker_fixtures import EDGE_VERIFIER


def test_demo_without_shared_photos_uses_package_samples_and_ends_by_itself(models_dir, tmp_path):
    proc = subprocess.run([str(EDGE_VERIFIER), "demo", "--faces", str(tmp_path / "absent"),
                           "--timeout", "120", "--rate", "4"],
                          capture_output=True, text=True, timeout=200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["enrolled"] == ["astronaut"] and summary["accepted"] == ["astronaut"]
    assert any(line.split()[1] == "ACCEPT" and "astronaut" in line for line in lines[:-1])
    assert "scikit-image" in proc.stderr
