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


def test_an_event_that_withholds_its_decision_or_raises_the_threshold_conforms():
    """Issue 25: the event says which threshold applied and why (the face's condition), or why
    no decision was taken; a negative margin or an unknown reason is not in the contract."""
    from dataclasses import replace

    import numpy as np

    from edge.core.conditions import Condition
    from edge.core.matcher import Enrolled, Gallery, thresholds_for
    from edge.daemon.decide import Decider
    from edge.daemon.decision_event import decision_event

    t = replace(thresholds_for("int8", false_admit_rate=1e-3), band_margins=(("size:0-64", 0.05),),
                limits=(("min_size", 48.0),))
    gallery = Gallery([Enrolled("ann", "ann#0", np.eye(8)[0], ("door",))], t)
    decider = Decider(None)
    events = [decision_event(decider.identify(gallery, np.eye(8)[0], ["door"], condition=c), device="door-t",
                             camera="test", fingerprints={"pack": "0" * 16}, cache_version="v")
              for c in (Condition(44, 0, 0, 300), Condition(56, 0, 0, 300))]
    withheld, raised = events
    assert (withheld["decision"], withheld["reason"], withheld["score"]) == ("unknown", "step_closer", None)
    assert raised["condition"]["margin"] == 0.05 and raised["condition"]["band"] == "size:0-64"
    for event in events:
        assert _errors("event", event) == []
    bad = {**raised, "condition": {**raised["condition"], "margin": -0.01}}
    assert _errors("event", bad)
    assert _errors("event", {**withheld, "reason": "come_back_later"})
