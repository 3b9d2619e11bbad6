"""The decision event: what the daemon publishes on `<prefix>/<device>/event` for each face
decided (or claim that timed out), built in one place, and what becomes of an accept that
leaves too late (`mark_stale`). edge.daemon.mqtt carries it to the broker through the outbox.

Every event carries a uuid `event_id` (`new_event`): delivery is at least once, so a consumer
drops the duplicates by it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from edge.core.domain import Claim, Latency
from edge.daemon.event_age import Born, age_s

if TYPE_CHECKING:
    import numpy as np

    from edge.daemon.decide import Outcome
    from edge.vision.face import Face


def new_event(**fields: Any) -> dict:
    """An event dict with a fresh event_id and a UTC ISO-8601 timestamp, then `fields`."""
    return {"event_id": str(uuid.uuid4()),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            **fields}


def decision_event(out: Outcome, *, device: str, camera: str, fingerprints: dict[str, str],
                   cache_version: str, claim: Claim | None = None, face: Face | None = None,
                   frame: np.ndarray | None = None, t_frame: float | None = None,
                   track_id: int | None = None, frames: int | None = None,
                   latency: Latency | None = None, reason: str | None = None,
                   include_face_image: bool = False, candidates: str = "decided",
                   admits: tuple[bool, str] | None = None) -> dict[str, Any]:
    """`out` is the final Outcome; `face`/`frame` are absent for a claim no face took (then
    `reason` says why); `t_frame` (perf_counter at frame read) adds frame_to_event_ms.
    `admits`: whether the face passes the door's own check of a face, and why not
    (edge.daemon.door_link.face_check; the access rules are not applied: the door's grant event
    says what it did): an `accept` is the face's match, which a door may still refuse (an attack
    with liveness `flag`, the offline policy's allow, a person this device does not hold, a stale
    frame)."""
    event = new_event(
        device=device, camera=camera,
        mode=out.mode, decision=out.decision, person_id=out.person_id or None,
        person_name=out.person_name or None, score=out.score, confidence=out.confidence,
        source=out.source, cloud=out.cloud.as_dict() if out.cloud else None, track_id=track_id,
        threshold=out.threshold,  # the accept threshold applied (identify: follows the gallery)
        rule=out.rule,  # best face, or best face or template ([identify] rule; a claim's too)
        # the look of the track (identify) or of the claim (verify) this frame was, and the share
        # of the rate it could spend
        look=out.look, rate_share=out.rate_share,
        # which condition bands the face fell in, the margin that raised the threshold and why,
        # or the reason the decision was withheld (edge.core.conditions)
        condition=out.condition.as_dict() if out.condition is not None else None,
        frames=frames,  # good frames of the track this decision chose from
        claim=claim.as_dict() if claim else None,
        candidates=_named(out, candidates),
        face=None if face is None else {
            "box": [int(v) for v in face.box], "score": round(float(face.score), 4),
            "quality": face.quality.as_dict()},
        latency_ms=latency.as_dict() if latency else {},
        fingerprints=fingerprints,
        cache_version=cache_version,
        liveness=out.liveness.as_dict() if out.liveness is not None else None,
    )
    reason = reason or out.reason
    if reason is not None:
        event["reason"] = reason
    if admits is not None:
        event["admits"], event["why_not"] = admits[0], admits[1] or None
    if include_face_image and face is not None and frame is not None:
        from edge.vision import crop_jpeg

        event["face_image"] = base64.b64encode(crop_jpeg(frame, face.box)).decode()
    if t_frame is not None:
        event["latency_ms"]["frame_to_event_ms"] = round((time.perf_counter() - t_frame) * 1000, 1)
    return event


def fit_message(payload: bytes, max_bytes: int) -> bytes | None:
    """The event within the broker's message size (`[mqtt] max_message_bytes`): over it, without
    its face image (the decision still goes); None when it is over it even so."""
    if len(payload) <= max_bytes:
        return payload
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    if isinstance(event, dict) and event.pop("face_image", None) is not None:
        smaller = json.dumps(event, separators=(",", ":")).encode()
        if len(smaller) <= max_bytes:
            return smaller
    return None


def _named(out: Outcome, which: str) -> list[dict] | None:
    """The `candidates` an event names ([mqtt] event_candidates): `decided`, the person an
    accept admitted and nobody else; `all`, the three nearest whatever the decision."""
    if which == "all":
        return out.candidates[:3] or None
    if out.decision != "accept" or not out.person_id:
        return None
    return [c for c in out.candidates if c.get("person_id") == out.person_id][:1] or None


LATE_AFTER_S = 2.0  # an event sent later than this after it happened says so (late_s)


def mark_late(payload: bytes, born: Born | None, born_now: Born | None, now: float | None = None) -> bytes:
    """Any event (a decision, a door event) sent more than LATE_AFTER_S after it was made says
    how late it is (`late_s`, on the boot clock where it was stamped with one): an outage's
    backlog, a grant replayed after the live state, looked current to a consumer, which could
    only compare the Pi's wall clock with its own. Anything else is returned as is."""
    if (born is not None and born_now is not None and born.boot == born_now.boot
            and born_now.at - born.at <= LATE_AFTER_S):
        return payload  # in time, by the boot clock: not parsed (most events, on the sender's path)
    try:
        event = json.loads(payload)
        wall_age = (time.time() if now is None else now) - datetime.fromisoformat(event["timestamp"]).timestamp()
    except (ValueError, KeyError, TypeError, AttributeError):  # not one of our events: not ours to mark
        return payload
    if not isinstance(event, dict) or "late_s" in event:
        return payload
    age, _ = age_s(wall_age, born, born_now)
    if age <= LATE_AFTER_S:
        return payload
    event["late_s"] = round(age, 1)
    return json.dumps(event, separators=(",", ":")).encode()


def mark_stale(payload: bytes, max_age_s: float, now: float | None = None,
               born: Born | None = None, born_now: Born | None = None) -> bytes:
    """An accept older than `max_age_s` leaves as decision `unknown`, reason `stale_accept`,
    with its age: a controller must not open the door for someone who may have left long ago.
    Its age is read on the boot clock when it was stamped with one (`born`, edge.daemon.event_age:
    a step of the wall clock moves neither end), else from its timestamp, and counts from its
    frame (`frame_to_event_ms`: an accept decided 15 s after its frame, a slow cloud fallback,
    left as a fresh one). Anything else is returned as is."""
    if max_age_s <= 0 or b'"decision":"accept"' not in payload:
        return payload
    try:
        event = json.loads(payload)
        wall_age = (time.time() if now is None else now) - datetime.fromisoformat(event["timestamp"]).timestamp()
    except (ValueError, KeyError, TypeError):  # not one of our events: not ours to judge
        return payload
    age, across_boot = age_s(wall_age, born, born_now)
    latency = event.get("latency_ms")
    before = latency.get("frame_to_event_ms") if isinstance(latency, dict) else None
    if isinstance(before, (int, float)) and not isinstance(before, bool) and 0 < before < 86_400_000:
        age += before / 1000  # the frame came this long before the decision
    if age <= max_age_s and not across_boot:
        return payload
    event.update(decision="unknown", reason="stale_accept", stale_s=round(age, 1))
    if "admits" in event:
        event.update(admits=False, why_not="stale")
    return json.dumps(event, separators=(",", ":")).encode()
