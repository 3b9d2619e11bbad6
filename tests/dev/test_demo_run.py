"""`edge-verifier demo` ends by itself, prints each decision and cleans up its processes."""

from __future__ import annotations

import json
import subprocess

from tests.support.broker import EDGE_VERIFIER


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
    # the door (backend none) opened for him, and the contact opened with no grant is an alarm
    assert summary["door_grants"] == ["astronaut"] and summary["door_alarms"] == ["forced_open"]
    assert any(line.split()[1:] == ["DOOR", "unlocked", "3", "s", "for", "astronaut"] for line in lines)
    assert any(line.split()[1:] == ["DOOR", "ALARM", "forced", "open"] for line in lines)


def test_door_lines():
    from edge.dev.demo import door_line

    at = "2026-12-06T10:26:23.000+00:00"
    assert door_line({"timestamp": at, "kind": "grant", "person_id": "ben_afflek", "unlock_s": 3.0}) == \
        "10:26:23  DOOR unlocked 3 s for ben_afflek"
    assert door_line({"timestamp": at, "kind": "forced_open"}) == "10:26:23  DOOR ALARM forced open"
    assert door_line({"timestamp": at, "kind": "door_open"}) is None


def test_a_decision_line_names_who_was_let_in_and_only_as_closest_who_was_not():
    from edge.dev.demo import _line

    event = {"timestamp": "2026-11-24T10:26:23.000+00:00", "mode": "identify", "source": "cloud",
             "person_id": "madonna", "person_name": "Madonna", "score": 0.312, "confidence": 42.0,
             "camera": "demo-camera", "latency_ms": {"frame_to_event_ms": 39.0}}
    assert _line({**event, "decision": "accept"}).split()[1:3] == ["ACCEPT", "madonna"]
    assert _line({**event, "decision": "unknown"}).split()[1:4] == ["UNKNOWN", "closest", "madonna"]
    assert _line({**event, "mode": "verify", "decision": "reject"}).split()[1:4] == ["REJECT", "claimed", "madonna"]
    assert _line({**event, "decision": "unknown", "person_id": "", "person_name": ""}).split()[1:3] == ["UNKNOWN", "-"]
    assert _line({**event, "decision": "unknown", "frames": 3}).endswith("39 ms (best of 3 frames)")
    assert _line({**event, "decision": "accept", "frames": 1}).endswith("39 ms")
    assert _line({**event, "mode": "verify", "decision": "unknown", "frames": None}).endswith("39 ms")  # no face


def test_a_decision_line_shows_its_liveness_verdict():
    from edge.dev.demo import _line

    event = {"timestamp": "2026-11-24T10:26:23.000+00:00", "mode": "identify", "source": "local",
             "person_id": "nuaa_0001", "person_name": "", "score": 0.79, "confidence": 89.0,
             "camera": "demo-camera", "latency_ms": {}}
    live = {"score": 0.148, "frames": 1, "verdict": "live"}
    assert "live (p live 0.148)" in _line({**event, "decision": "accept", "liveness": live})
    attack = {"score": 0.0001, "frames": 1, "verdict": "attack"}
    line = _line({**event, "decision": "reject", "reason": "presentation_attack", "liveness": attack})
    assert line.split()[1] == "REJECT" and "ATTACK (p live 0.000)" in line
    assert "liveness off" in _line({**event, "decision": "accept", "liveness": None})
