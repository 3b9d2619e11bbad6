"""The decision policy for one face, with cloud fallback.

Local score from the matcher -> accept | reject | uncertain. Uncertain goes to the hub's
/face/verify (through the cloud client: timeout, retries, breaker); when the hub cannot answer,
the configured offline policy decides and the result says `source: offline-policy`. Scoring
itself lives in edge.core.matcher; this module only applies the policy and records what happened.

The two steps can be taken apart: without an image, `verify`/`identify` stop at the local
outcome (an uncertain one stays `uncertain`, source `local`), and `settle` finishes it later.
The daemon scores every good frame of a face track locally and sends only the track's best
frame to the hub.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from edge.core.conditions import Condition, Judgement
from edge.core.domain import CloudAnswer, Decision, Mode, Source, TrackLiveness
from edge.core.false_admit import look_share
from edge.core.matcher import CONFIDENCE_AT_ACCEPT, Gallery, confidence, hub_confidence_needed

if TYPE_CHECKING:
    from edge.api.client import CloudClient


@dataclass
class Outcome:
    mode: Mode
    decision: Decision
    source: Source
    person_id: str = ""
    person_name: str = ""
    score: float | None = None
    confidence: float | None = None
    cloud: CloudAnswer | None = None
    candidates: list[dict] = field(default_factory=list)
    cloud_ms: float = 0.0
    unknown_person: bool = False  # verify of a person the local cache does not hold
    liveness: TrackLiveness | None = None  # None with [liveness] mode = off (edge.daemon.liveness)
    reason: str | None = None  # why a face was refused before matching counted ("presentation_attack")
    threshold: float | None = None  # the accept threshold applied (identify: follows the gallery)
    # The face's condition bands and what they changed: the margin added to the threshold and
    # the band it came from, or the reason the decision was withheld (edge.core.conditions).
    condition: Judgement | None = None
    rule: str | None = None  # how the face was scored against a person ([identify] rule; verify too)
    # in a track: which look of the approach (identify) or of the claim (verify) this frame was
    # (1: its first scored frame) and the share of the rate it could spend ([identify] rate_per,
    # [verify] rate_per)
    look: int | None = None
    rate_share: float | None = None
    # The confidence the hub's answer must reach to admit (edge.core.matcher.hub_confidence_needed):
    # the hub answers at the pack's accept, confidence 70, and `threshold` may be higher (the
    # face's condition, the claimed person's faces, the gallery, the look). None: its ismatch.
    cloud_confidence_needed: float | None = None


ImageForCloud = Callable[[], bytes]


def _answer(data: dict, cloud_ms: float) -> CloudAnswer:
    """The hub's verify answer as the event carries it, taken strictly (CLOUD_API: ismatch a
    bool, confidence 0-100, session_id text): `"ismatch": "false"` was a yes, and a NaN or a
    text confidence made an event off its schema."""
    session, confidence = data.get("session_id"), data.get("confidence")
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) \
            or not (math.isfinite(confidence) and 0 <= confidence <= 100):
        confidence = None
    return CloudAnswer(cloud_ms, session[:128] if isinstance(session, str) else "", 0,
                       data.get("ismatch") is True, confidence)


def _reaches(out: Outcome) -> bool:
    """Whether the hub's answer admits: its ismatch, and its confidence raised as far over 70 as
    the edge raised its threshold over accept. The hub decides at the pack's accept (confidence
    70) on the best of the person's faces; without this a face the edge held under a raised
    threshold (a claimed person's faces counted, a later look, a small or turned face, identify's
    gallery) would be admitted by the hub at the plain one. Both sides run the same pack
    ([vision] precision must be the hub's), so a confidence stands for the same cosine."""
    assert out.cloud is not None
    if not out.cloud.ismatch:
        return False
    need = out.cloud_confidence_needed
    if need is None or need <= CONFIDENCE_AT_ACCEPT:
        return True
    conf = out.cloud.confidence
    return isinstance(conf, (int, float)) and not isinstance(conf, bool) and math.isfinite(conf) and conf >= need


def _withheld(mode: Mode, judged: Judgement, person_id: str = "") -> Outcome:
    """No decision on a face beyond the door's limits: never an accept, no score given (a later,
    better frame of the track replaces it), the reason says what the person can do."""
    return Outcome(mode, Decision.UNKNOWN, Source.LOCAL, person_id, reason=judged.withhold, condition=judged)


class Decider:
    """Applies the policy; `image_for_cloud()` is only called when the cloud is asked."""

    def __init__(self, cloud: CloudClient | None, *, offline: str = "deny", cloud_fallback: bool = True,
                 identify_fallback: bool = False, rate_per: str = "approach", claim_rate_per: str = "claim"):
        self.cloud = cloud
        # "approach": a track's looks spend the false-admit rate between them (look_share);
        # "look": every look may spend all of it (the rate then holds per look only)
        if rate_per not in ("approach", "look"):
            raise ValueError(f"rate_per is approach or look, not {rate_per!r}")
        self.rate_per = rate_per
        # "claim": a claim holds the accept threshold's FAR whatever the person's faces and its
        # looks (edge.core.false_admit.claim_accept); "look": per enrolled face and look
        if claim_rate_per not in ("claim", "look"):
            raise ValueError(f"claim_rate_per is claim or look, not {claim_rate_per!r}")
        self.claim_rate_per = claim_rate_per
        self.offline = offline
        self.cloud_fallback = cloud_fallback and cloud is not None
        # The hub's verify runs the same network on a crop of the same frame: for identify it
        # re-rolls the dice near the threshold instead of adding information (bench door
        # measures it), so an uncertain identify is unknown unless this is asked for.
        self.identify_fallback = identify_fallback

    def verify(self, gallery: Gallery, embedding: np.ndarray, person_id: str,
               image_for_cloud: ImageForCloud | None = None, condition: Condition | None = None,
               look: int | None = None) -> Outcome:
        """Verify one frame against the claimed person; `look` is its number among the claim's
        scored frames (0: the first; None: a single image, one look with the whole FAR)."""
        t = gallery.thresholds
        judged = t.judge(condition)
        if judged.withhold:
            return _withheld(Mode.VERIFY, judged, person_id)
        share = self.claim_share(look)
        if self.claim_rate_per == "look":  # the behaviour before: the best face, at accept
            cand, by_template = gallery.verify(embedding, person_id), False
            base = t.accept
        else:  # per claim: the person scored as identify scores them, at their own threshold
            scored = gallery.claim(embedding, person_id)
            cand, by_template = scored if scored is not None else (None, False)
            photos = gallery.photos_of(person_id)
            base = t.claim_template_accept(photos, share) if by_template else t.claim_accept(photos, share)
            if by_template:  # the template rule's own margin for this photo count, when larger
                judged = t.raised_for_person(judged, photos)
        accept = round(min(base + judged.margin, 1.0), 4)
        if cand is None:
            # Not in the local cache (yet): only the hub can say.
            out = Outcome(Mode.VERIFY, Decision.UNCERTAIN, Source.LOCAL, person_id, unknown_person=True)
        else:
            out = Outcome(Mode.VERIFY, t.decide(cand.score, accept), Source.LOCAL,
                          cand.person_id, cand.person_name, round(cand.score, 4),
                          confidence(cand.score, t), threshold=accept,
                          cloud_confidence_needed=hub_confidence_needed(accept, t),
                          rule=t.rule if by_template else "best")
        out.condition = judged if condition is not None else None
        if look is not None:
            out.look, out.rate_share = look + 1, share
        return self.settle(out, image_for_cloud) if image_for_cloud else out

    def claim_share(self, look: int | None) -> float:
        """The share of a claim's FAR its look number `look` may spend (None: a single image)."""
        return 1.0 if look is None or self.claim_rate_per == "look" else look_share(look)

    def look_share(self, look: int | None) -> float:
        """The share of the false-admit rate look number `look` of a track may spend (None: a
        single image, not part of a track: all of it)."""
        return 1.0 if look is None or self.rate_per == "look" else look_share(look)

    def identify(self, gallery: Gallery, embedding: np.ndarray, group_ids: list[str] | None,
                 image_for_cloud: ImageForCloud | None = None, condition: Condition | None = None,
                 look: int | None = None) -> Outcome:
        """Identify one frame; `look` is its number among the track's scored frames (0: the first)."""
        judged = gallery.thresholds.judge(condition)
        if judged.withhold:
            return _withheld(Mode.IDENTIFY, judged)
        share = self.look_share(look)
        res = gallery.identify(embedding, group_ids or None, raise_by=judged.margin, bands=judged.bands, share=share)
        if res.raised is not None:  # best-or-template: the first person's own margin, larger
            judged = replace(judged, margin=round(res.raised[0], 4), band=res.raised[1])
        out = Outcome(Mode.IDENTIFY, Decision.UNKNOWN, Source.LOCAL, threshold=res.threshold,
                      condition=judged if condition is not None else None, rule=gallery.thresholds.rule,
                      look=None if look is None else look + 1, rate_share=None if look is None else share,
                      cloud_confidence_needed=None if res.threshold is None
                      else hub_confidence_needed(res.threshold, gallery.thresholds))
        out.candidates = [{"person_id": c.person_id, "face_id": c.face_id,
                           "confidence": confidence(c.score, gallery.thresholds),
                           "score": round(c.score, 4), "tag": c.tag} for c in res.candidates]
        if not res.candidates:
            return out
        best = res.candidates[0]
        out.score = round(best.score, 4)
        out.confidence = confidence(best.score, gallery.thresholds)
        if res.decision is Decision.REJECT:
            return out  # nobody enrolled looks like this face: unknown
        out.person_id, out.person_name = best.person_id, best.person_name
        # Close to someone but not sure (or two people too close): the hub is asked about the best.
        out.decision = Decision.ACCEPT if res.decision is Decision.ACCEPT else Decision.UNCERTAIN
        return self.settle(out, image_for_cloud) if image_for_cloud else out

    def settle(self, out: Outcome, image_for_cloud: ImageForCloud) -> Outcome:
        """Finish a local outcome: an uncertain one goes to the hub, or to the offline policy."""
        if out.decision is not Decision.UNCERTAIN or out.source is not Source.LOCAL:
            return out
        if out.mode is Mode.IDENTIFY and not self.identify_fallback:
            out.decision = Decision.UNKNOWN  # not sure enough who it is: nobody is let in
            return out
        return self._uncertain(out, image_for_cloud)

    def _uncertain(self, out: Outcome, image_for_cloud: ImageForCloud) -> Outcome:
        from edge.api.client import CloudApiError, CloudError

        person_id = out.person_id  # the claimed person (verify) or the best candidate (identify)
        negative = Decision.UNKNOWN if out.mode is Mode.IDENTIFY or out.unknown_person else Decision.REJECT
        cloud = self.cloud if self.cloud_fallback else None  # cloud_fallback is true only with a cloud
        if cloud is not None:
            t0 = time.perf_counter()
            try:
                data = cloud.verify(person_id, image=image_for_cloud())
                out.cloud_ms = (time.perf_counter() - t0) * 1000
                out.cloud = _answer(data, out.cloud_ms)
                out.source = Source.CLOUD
                out.decision = Decision.ACCEPT if _reaches(out) else negative
                return out
            except CloudApiError as exc:
                # The hub answered: e.g. no face in our crop (-1101) or unknown person (-1303).
                out.cloud_ms = (time.perf_counter() - t0) * 1000
                out.cloud = CloudAnswer(out.cloud_ms, code=exc.code, message=exc.message)
                out.source = Source.CLOUD
                out.decision = negative
                return out
            except CloudError as exc:
                out.cloud_ms = (time.perf_counter() - t0) * 1000
                out.cloud = CloudAnswer(out.cloud_ms, code=None, ismatch=None, error=str(exc))
        out.source = Source.OFFLINE_POLICY
        out.decision = {"deny": negative, "allow": Decision.ACCEPT,
                        "uncertain": Decision.UNCERTAIN}[self.offline]
        if out.unknown_person and self.offline == "allow":
            out.decision = negative  # never let in someone this device has never heard of
        return out
