"""The published JSON Schemas are the MQTT contract: what the daemon builds conforms, drift fails."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.broker import sample_event, schema_errors

README = Path(__file__).resolve().parents[2] / "README.md"


def _errors(leaf: str, message: dict) -> list[str]:
    return schema_errors(f"p/door/{leaf}", json.dumps(message).encode())


def test_an_event_built_by_the_daemon_conforms_and_an_undocumented_field_or_value_does_not():
    event = sample_event()
    assert _errors("event", event) == []
    assert any("liveness" in e for e in _errors("event", {**event, "liveness": 0.9}))
    assert any("decision" in e for e in _errors("event", {**event, "decision": "maybe"}))
    assert any("event_id" in e for e in _errors("event", {k: v for k, v in event.items() if k != "event_id"}))
    assert _errors("event", {**event, "event_id": "not-a-uuid"})


def test_the_readme_event_example_conforms():
    text = README.read_text()
    section = text[text.index("#### Events (MQTT)"):]
    example = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    assert _errors("event", json.loads(example)) == []


def test_only_event_and_state_topics_are_checked():
    assert schema_errors("p/door/availability", b"online") == []
    assert schema_errors("p/door/state", b"{}")  # every state field is required
