"""The first access rules (DESIGN.md "Door"): an accepted person of the configured groups may
pass in `normal` mode. Pure: the same request, history and mode give the same verdict.

`request.accept` is computed strictly by the daemon (edge.daemon.door_link.access_request):
only an accept of the shipped policy, live where liveness is required, not stale and not an
offline-policy allow, is one. Everything else — uncertain, unknown, reject, an attack, a stale
or offline decision — is `not_accepted` here, whatever else the request says.
"""

from __future__ import annotations

from typing import Callable, Iterable

from edge.door.interface import AccessHistory, AccessRequest, Outcome, Verdict

RULE = "accepted_in_groups"


class GroupRules:
    """`groups` empty: any accepted person; `mode_of(door)` is the door's mode now."""

    def __init__(self, groups: Iterable[str], mode_of: Callable[[str], str] = lambda door: "normal"):
        self.groups = frozenset(groups)
        self.mode_of = mode_of

    def evaluate(self, request: AccessRequest, history: AccessHistory) -> Verdict:
        if not request.accept or request.decision != "accept" or not request.person_id:
            return Verdict(Outcome.DENY, "not_accepted", RULE)
        mode = self.mode_of(request.door)
        if mode == "locked_down":
            return Verdict(Outcome.DENY, "locked_down", RULE)
        if mode not in ("normal", "unlocked"):
            return Verdict(Outcome.DENY, "unknown_mode", RULE)  # a mode these rules do not know
        if self.groups and not self.groups.intersection(request.groups):
            return Verdict(Outcome.DENY, "not_in_groups", RULE)
        return Verdict(Outcome.GRANT, "granted", RULE)


class NoHistory:
    """The first rules ask nothing of the past."""

    def last_grant(self, person_id: str, door: str | None = None) -> float | None:
        return None

    def last_door(self, person_id: str, doors: tuple[str, ...]) -> str | None:
        return None
