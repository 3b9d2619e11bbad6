"""Verify claims: "the next face seen should be this person" (MQTT cmd/verify, POST /edge/claim).

One claim waits at a time (a newer one replaces it). It goes to the first face track ready to
be scored, which keeps it until that decision is published; a claim no face took before its
timeout ends as `unknown` with reason `no_face_before_timeout`. A claim of a person locked out
after too many refusals (edge.daemon.claim_lockout) never waits: it is refused at once, reason
`claim_locked_out`. Opened from paho's thread or the API's, taken and expired from the main
loop: hence the lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge.core.domain import Claim, Decision, Mode, Source
from edge.core.syncwire import ADMITTED, REFUSED

if TYPE_CHECKING:
    from edge.daemon.claim_lockout import ClaimLockout
    from edge.daemon.decide import Outcome
    from edge.daemon.tracker import Track

log = logging.getLogger("edge.daemon")

MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.5, 300.0
# Claims refused at open wait in memory for the next turn of the loop: of a flood of them (each
# a signed command) this many are answered per turn, the rest dropped with a log line.
MAX_REFUSED_PENDING = 64


class Claims:
    def __init__(self, default_timeout_s: float, lockout: ClaimLockout | None = None):
        self.default_timeout_s = default_timeout_s
        self.lockout = lockout
        self._ended: list[Claim] = []  # taken by a track that left undecided: answered as unanswered
        self._claim: Claim | None = None
        self._refused: list[Claim] = []  # claims of locked-out persons, answered by the main loop
        self._lock = threading.Lock()

    def open(self, person_id: str, timeout_s: object = None, request_id: object = None) -> None:
        """Wait for `person_id`; a timeout_s that is no number or out of bounds is clamped or
        replaced by the default."""
        try:
            # float() takes what it can of any JSON value and raises for the rest
            timeout = min(max(float(timeout_s), MIN_TIMEOUT_S), MAX_TIMEOUT_S)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            timeout = self.default_timeout_s
        if not math.isfinite(timeout):  # NaN passes min/max unchanged and would never expire
            timeout = self.default_timeout_s
        rid = "" if request_id is None else str(request_id)[:128]
        if self.lockout is not None and (left := self.lockout.locked(person_id)) > 0:
            with self._lock:  # refused at once; the claim waiting (if any) keeps waiting
                kept = len(self._refused) < MAX_REFUSED_PENDING
                if kept:
                    self._refused.append(Claim(person_id, time.monotonic(), rid))
            if kept:
                log.info("verify claim for %s refused: locked out for %.0f s more", person_id, left)
            else:
                log.warning("verify claim for %s dropped: %d refused claims wait to be answered",
                            person_id, MAX_REFUSED_PENDING)
            return
        with self._lock:
            self._claim = Claim(person_id, time.monotonic() + timeout, rid)
        log.info("verify claim for %s (%.1fs)", person_id, timeout)

    @property
    def waiting(self) -> bool:
        """Whether a claim waits for a face (an unlocked peek: it may be taken a moment later)."""
        return self._claim is not None

    def take(self) -> Claim | None:
        with self._lock:
            claim, self._claim = self._claim, None
            return claim

    def for_track(self, track: Track, end_pending: Callable[[int], None], nearest: bool = True) -> Claim | None:
        """The claim this track is verified against: a waiting claim goes to the first track
        with a good face that is the `nearest` (the frame's largest face), and starts a new
        decision for it (even when it was identified already; `end_pending(track.id)` first
        finishes a decision still settling); a track keeps its own claim until that one is
        decided. Only the nearest face: a stranger badging with a stolen card while keeping
        their own face back had the claim answered by a member's face further away."""
        state = track.state
        held = state.claim
        if held is not None and not state.decided:
            return held
        if self._claim is None or not nearest:  # unlocked peek: the common case costs no lock
            return held
        claim = self.take()
        if claim is not None:
            end_pending(track.id)
            state.claim = claim
            state.claim_looks = 0  # a new claim spends its own FAR
            state.decided = False
            return claim
        return held

    def refused(self) -> list[Claim]:
        """The claims refused at open since the last call (locked-out persons), removed."""
        if not self._refused:  # unlocked peek: the common case costs no lock
            return []
        with self._lock:
            out, self._refused = self._refused, []
            return out

    def decided(self, claim: Claim, out: Outcome, claimed_in_view: bool = False, why_not: str = "") -> str | None:
        """A claim's decision is out: a refusal on the face counts towards its person's lockout,
        an admission clears it (the offline policy's refusals never count: edge.daemon.claim_lockout).
        Returns how it counted (REFUSED, ADMITTED or None), which its access log record says so
        that the site's other doors count it too (edge.hub.claim_refusals). `claimed_in_view`:
        the claimed person was another face of the frame, behind the one that answered
        (recognised, not judged an attack): a refusal then does not count. A member badging her own card with
        someone nearer had it refused on his face, counted at every door of the site.
        `why_not`: why the door would not open on an accept ("" when it would,
        edge.daemon.door_link.strict_accept): only an accept it opens for admits. With
        `[liveness] mode = "flag"` a print held up with the badge was an accept that cleared
        the count: a thief's own face four times, then the print, again and again, was never
        locked out. An attack counts as a refusal in every mode."""
        if self.lockout is None or not self.lockout.enabled:
            return None
        if out.decision is Decision.ACCEPT:
            if not why_not:
                self.lockout.admitted(claim.person_id)
                return ADMITTED
            if why_not == "presentation_attack":
                self.lockout.refused(claim.person_id)
                return REFUSED
            return None  # the offline policy's allow, a person this door does not hold: neither
        if out.decision is Decision.REJECT and claimed_in_view:
            log.info("verify claim for %s refused on a nearer face while they were in view: not counted",
                     claim.person_id)
            return None
        if out.decision is Decision.REJECT and out.source is not Source.OFFLINE_POLICY:
            self.lockout.refused(claim.person_id)
            return REFUSED
        return None

    def end(self, claim: Claim) -> None:
        """A track that took `claim` left before it could be decided (its liveness not yet
        judged on frames that could be the person): the claim ends, unanswered, at the next
        `expired` (it was lost: the reader got no answer at all). Never handed to another face:
        the card's owner walking up after a stranger badged with it would have opened the door
        on a second factor she never presented."""
        with self._lock:
            self._ended.append(claim)

    def expired(self) -> Claim | None:
        """A claim ended (`end`), or the waiting claim, removed, once its timeout has passed;
        else None."""
        with self._lock:
            if self._ended:
                return self._ended.pop(0)
            claim = self._claim
            if claim is None or time.monotonic() < claim.expires:
                return None
            self._claim = None
            return claim


NO_FACE = "no_face_before_timeout"


def unanswered(claim: Claim) -> Outcome:
    """The decision for a claim no face took in time."""
    from edge.daemon.decide import Outcome

    return Outcome(Mode.VERIFY, Decision.UNKNOWN, Source.LOCAL, claim.person_id)


def locked_out(claim: Claim) -> Outcome:
    """The decision for a claim of a person locked out after too many refusals: refused, no face
    (the reason also tells the door why it stays shut)."""
    from edge.daemon.claim_lockout import LOCKED_OUT
    from edge.daemon.decide import Outcome

    return Outcome(Mode.VERIFY, Decision.REJECT, Source.LOCAL, claim.person_id, reason=LOCKED_OUT)
