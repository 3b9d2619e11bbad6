"""What the door's decisions and events become in the access log (edge.door.access_log):
one function per kind of record, so the log's fields are decided in one place
(docs/access.md#what-the-daemon-logs). Pure: they build the fields, the caller appends them.
"""

from __future__ import annotations

from typing import Any

from edge.core.syncwire import COUNTED
from edge.door.interface import AccessRequest, Outcome, Verdict

# The controller's events (edge.door.controller) by the log kind they are recorded as; a grant
# or deny that follows a decision is in that decision's record already.
ALARMS = frozenset({"forced_open", "held_open", "tamper", "alarm"})
EXITS = frozenset({"exit_request"})


def decision_record(request: AccessRequest, verdict: Verdict, *, door_outcome: str | None = None,
                    door_reason: str | None = None, why_not: str = "") -> dict[str, Any]:
    """The fields of a `decision` record: the request's evidence, the rules' verdict and what the
    door did. `door_outcome` is the controller's grant or deny when it acted (a grant the door
    could not carry out — locked down, the unlock bound, a relay fault — is logged as its deny,
    so a refused grant never counts for anti-passback); `why_not` is why the face was not an
    accept that may open."""
    ev = request.evidence
    outcome, reason = str(verdict.outcome), verdict.reason
    if verdict.outcome is Outcome.GRANT and door_outcome != "grant":
        outcome, reason = "deny", door_reason or "door_refused"
    detail = {k: v for k, v in {
        "verdict": str(verdict.outcome) if outcome != str(verdict.outcome) else None,
        "verdict_reason": verdict.reason if reason != verdict.reason else None,
        "why_not": why_not or None, "liveness_score": ev.get("liveness_score"),
        "fingerprints": ev.get("fingerprints") or None, "claim": request.claim,
        "claim_ignored": ev.get("claim_ignored"), COUNTED: ev.get(COUNTED),
    }.items() if v is not None}
    return {"door": request.door, "person_id": request.person_id or None,
            "decision": ev.get("decision", request.decision),  # the face's own, not what the rules saw
            "outcome": outcome, "reason": reason, "rule": verdict.rule, "event_id": request.event_id,
            "score": ev.get("score"), "liveness": ev.get("liveness"), "model_version": ev.get("model_version"),
            "gallery_version": ev.get("gallery_version"), "rules_version": verdict.rules_version,
            "source": request.source, "alarm": verdict.alarm or None,
            "warning": verdict.warning, "detail": detail or None}


def door_event_record(event: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(log kind, fields) for one controller event, or None when its decision's record has it."""
    kind = event["kind"]
    if kind in ("grant", "deny") and event.get("decision_event_id"):
        return None
    detail = {k: v for k, v in event.items()
              if k not in ("kind", "door", "person_id", "reason", "decision_event_id", "door_state", "source",
                           "timestamp") and v is not None}
    log_kind = "alarm" if kind in ALARMS else "exit" if kind in EXITS else "door"
    return log_kind, {"door": event.get("door"), "person_id": event.get("person_id"),
                      "outcome": kind if kind in ("grant", "deny") else None,
                      "reason": event.get("reason") or kind, "event_id": event.get("decision_event_id"),
                      "source": event.get("source"), "detail": {"event": kind, **detail}}


def rules_record(status: dict[str, Any]) -> dict[str, Any]:
    """The fields of a `rules` record: which rules are in force now (docs/access.md)."""
    return {"rules_version": status.get("version"), "reason": status["in_force"],
            "detail": {k: status[k] for k in ("refused", "error", "rules_invalid") if status.get(k) is not None}}
