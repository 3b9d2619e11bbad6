"""The published JSON Schemas are the MQTT contract: what the daemon builds conforms, drift fails."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

from edge.schemas import example, schema
from tests.support.broker import sample_event, schema_errors


def _errors(leaf: str, message: dict) -> list[str]:
    return schema_errors(f"p/door/{leaf}", json.dumps(message).encode())


def test_an_event_built_by_the_daemon_conforms_and_an_undocumented_field_or_value_does_not():
    event = sample_event()
    assert _errors("event", event) == []
    assert any("liveness" in e for e in _errors("event", {**event, "liveness": 0.9}))
    assert any("decision" in e for e in _errors("event", {**event, "decision": "maybe"}))
    assert any("event_id" in e for e in _errors("event", {k: v for k, v in event.items() if k != "event_id"}))
    assert _errors("event", {**event, "event_id": "not-a-uuid"})


def test_the_shipped_example_event_and_verify_command_conform():
    """edge/schemas/examples holds the canonical examples docs/events.md shows."""
    assert _errors("event", example("event")) == []
    validator = Draft202012Validator(schema("cmd-verify"), format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(example("cmd-verify"))] == []


def test_only_event_and_state_topics_are_checked():
    assert schema_errors("p/door/availability", b"online") == []
    assert schema_errors("p/door/state", b"{}")  # every state field is required
