"""The values a decision is made of, typed: what the matcher, the policy, the claims and the
published event (edge/schemas/event.schema.json) share.

Enums are `StrEnum`: they compare equal to, format as and serialise to their plain value, so
the event, the logs and the metric labels carry "accept", not "Decision.ACCEPT".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeGuard

# What an id (a person's, a group's, a door's) may not hold: the face API refuses it
# (edge.api.ops.check_ident), and what other parts take as an id is checked by the same rule
# (access-log records, the hub's claim refusals): ids become links, paths and log lines.
ID_FORBIDDEN = frozenset(" /\\\t\r\n\x0b\x0c")


def is_id(value: object, max_chars: int = 128) -> TypeGuard[str]:
    """`value` is text an id may be: 1..max_chars printable characters, none of ID_FORBIDDEN."""
    return (isinstance(value, str) and 0 < len(value) <= max_chars and value.isprintable()
            and not ID_FORBIDDEN.intersection(value))


class Mode(StrEnum):
    VERIFY = "verify"      # 1:1 against a claimed person
    IDENTIFY = "identify"  # 1:N within the configured groups


class Decision(StrEnum):
    ACCEPT = "accept"
    UNCERTAIN = "uncertain"  # between the thresholds: the hub or the offline policy decides
    REJECT = "reject"        # verify: not the claimed person
    UNKNOWN = "unknown"      # identify: nobody enrolled; verify: a person this device never heard of


class Source(StrEnum):
    LOCAL = "local"
    CLOUD = "cloud"
    OFFLINE_POLICY = "offline-policy"  # the hub could not answer; [policy] offline decided


@dataclass
class CloudAnswer:
    """What the hub's /face/verify said about an uncertain face, or why it could not say."""
    latency_ms: float
    session_id: str = ""
    code: int | None = 0            # 0 answered; the hub's error code; None: no answer at all
    ismatch: bool | None = False    # None when the hub was not reached
    confidence: float | None = None
    message: str | None = None      # the hub's message with its error code
    error: str | None = None        # why the hub could not be reached

    def as_dict(self) -> dict:
        d = {"session_id": self.session_id, "code": self.code, "ismatch": self.ismatch,
             "confidence": self.confidence, "latency_ms": round(self.latency_ms, 1)}
        if self.message is not None:
            d["message"] = self.message
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass(frozen=True)
class TrackLiveness:
    """A face track's liveness: its last scored frames fused (edge.daemon.liveness decides with
    it; the event carries it)."""
    score: float | None  # median p(live) of the frames below; None before the first
    frames: int  # scored frames fused (at most the configured number)
    verdict: str | None  # "live" | "attack"; None until enough frames are scored

    def as_dict(self) -> dict:
        return {"score": None if self.score is None else round(self.score, 4), "frames": self.frames,
                "verdict": self.verdict}


@dataclass(frozen=True)
class Claim:
    """A verify claim: the next face seen should be `person_id` (until `expires`, monotonic)."""
    person_id: str
    expires: float
    request_id: str = ""

    def as_dict(self) -> dict:
        return {"person_id": self.person_id, "request_id": self.request_id}


@dataclass
class Latency:
    """Milliseconds spent per stage on one decision."""
    detect_ms: float
    embed_ms: float
    match_ms: float
    cloud_ms: float = 0.0

    def as_dict(self) -> dict:
        return {k: round(v, 1) for k, v in self.__dict__.items()}
