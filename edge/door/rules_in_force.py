"""Which access rules the door follows now, and the mode their schedule sets (docs/access.md).

Four states, read afresh from the edge cache on each call (it keeps the parsed rules):

    synced   the hub's rule document, the last that validated: AccessPolicy decides and its
             schedule sets the door's mode
    groups   no document was ever synced and the hub has none: the `[door] groups` rules of
             the config (GroupRules)
    invalid  a document was synced but none that validates is left (the first one synced was
             broken, or the stored copy is damaged): every request is denied, `rules_invalid`
    pending  the hub said it has a version this cache has neither applied nor refused (a resync
             cut before the rules row came, after the cache was emptied for a new model pack or
             new groups; a sync cut between a page and the rules change): every request is
             denied, `rules_pending`, and no schedule sets the mode, until the sync brings it.
             Before, such a door decided on the config's groups, ignoring the site's schedules,
             levels, lockdowns and second factors.

A synced document that fails validation while a good one is kept changes nothing here: the
cache keeps the last good one (and says which version it refused, shown in `status`).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from edge.core.access_rules import RuleSet
from edge.door.access import RULES_INVALID, AccessPolicy, door_mode, local_time
from edge.door.interface import AccessHistory, AccessRequest, Outcome, Verdict
from edge.door.rules import GroupRules

log = logging.getLogger(__name__)

SYNCED, GROUPS, INVALID, PENDING = "synced", "groups", "invalid", "pending"
RULES_PENDING = "rules_pending"


class RulesInForce:
    """`synced()` is the cache's last good RuleSet (None: none); `status()` its rules_status()
    ({"version": in use or 0, "refused": version or None, "error": why})."""

    def __init__(self, synced: Callable[[], RuleSet | None], status: Callable[[], dict[str, Any]],
                 groups: GroupRules, clock_synchronised: Callable[[], bool] = lambda: True):
        self._synced, self._status, self.groups = synced, status, groups
        self._clock_synchronised = clock_synchronised  # may an unlocked window be taken (AccessPolicy)
        self._seen: tuple[Any, ...] | None = None  # the status the rules below were read at
        self._rules: RuleSet | None = None
        self._last_mode: dict[str, str] = {}  # door -> the mode rules in force last set (scheduled_mode)

    def current(self) -> tuple[str, RuleSet | None]:
        try:
            status = self._status()
            seen = (status.get("version"), status.get("refused"))
            if seen != self._seen:  # read again only when sync changed them: a damaged copy is
                self._rules = self._synced()  # then reported once, not on every tick
                self._seen = seen
        except Exception:  # a cache that cannot be read is no rules to open a door on
            log.exception("the synced access rules cannot be read; every door request is denied")
            self._seen = None
            return INVALID, None
        seen_here = max(int(status.get("version") or 0), int(status.get("refused") or 0))
        if int(status.get("hub") or 0) > seen_here:
            return PENDING, None
        if self._rules is not None:
            return SYNCED, self._rules
        ever_synced = bool(status.get("version")) or status.get("refused") is not None
        return (INVALID if ever_synced else GROUPS), None

    def evaluate(self, request: AccessRequest, history: AccessHistory) -> Verdict:
        which, rules = self.current()
        if which == SYNCED:
            return AccessPolicy(lambda: rules, self._clock_synchronised).evaluate(request, history)
        if which == INVALID:
            return Verdict(Outcome.DENY, RULES_INVALID)
        if which == PENDING:
            return Verdict(Outcome.DENY, RULES_PENDING)
        return self.groups.evaluate(request, history)

    def scheduled_mode(self, door: str, at: float) -> str | None:
        """normal | unlocked | locked_down by the synced rules' schedule at `at` (UTC epoch);
        None when no synced rules are in force (the mode is then the config's).

        Pending or invalid, a lockdown holds: the one the last good rules, still kept while
        newer ones are pending, set now; without them (a cache emptied for a new model pack, a
        damaged copy) the one rules in force last set. These states follow a sync cut short,
        and going back to the config's normal mode lifted a site's lockdown for the exit button,
        the signed remote unlock and the panel's output. Nothing unlocks meanwhile."""
        which, rules = self.current()
        if which in (PENDING, INVALID):
            kept = self._rules if which == PENDING else None
            last = self._mode(kept, door, at) if kept is not None else self._last_mode.get(door)
            return "locked_down" if last == "locked_down" else None
        if rules is None:  # never synced: the config's mode
            self._last_mode.pop(door, None)
            return None
        mode = self._mode(rules, door, at)
        self._last_mode[door] = mode
        return mode

    @staticmethod
    def _mode(rules: RuleSet, door: str, at: float) -> str:
        found = rules.doors.get(door)
        return "normal" if found is None else door_mode(rules, found, local_time(rules, at))

    def status(self) -> dict[str, Any]:
        """For /health and the log: which rules are in force, their version, what was refused."""
        which, rules = self.current()
        try:
            synced = self._status()
        except Exception:
            synced = {}
        return {"in_force": which, "version": rules.version if rules is not None else None,
                "refused": synced.get("refused"), "error": synced.get("error") or None,
                "rules_invalid": which == INVALID, "hub_version": synced.get("hub") or None}
