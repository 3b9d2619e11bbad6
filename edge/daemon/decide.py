"""The decision policy for one face (DESIGN.md "Decision policy"), with cloud fallback.

Local score from the matcher -> accept | reject | uncertain. Uncertain goes to the hub's
/face/verify (through the cloud client: timeout, retries, breaker); when the hub cannot answer,
the configured offline policy decides and the result says `source: offline-policy`. Scoring
itself lives in edge.matcher; this module only applies the policy and records what happened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge.matcher import Decision, Gallery, confidence


@dataclass
class Outcome:
    mode: str                 # verify | identify
    decision: str             # accept | reject | unknown | uncertain
    source: str               # local | cloud | offline-policy
    person_id: str = ""
    person_name: str = ""
    score: float | None = None
    confidence: float | None = None
    cloud: dict | None = None
    candidates: list[dict] = field(default_factory=list)
    cloud_ms: float = 0.0


class Decider:
    """Applies the policy; `image_for_cloud()` is only called when the cloud is asked."""

    def __init__(self, cloud, *, offline: str = "deny", cloud_fallback: bool = True):
        self.cloud = cloud
        self.offline = offline
        self.cloud_fallback = cloud_fallback and cloud is not None

    def verify(self, gallery: Gallery, embedding: np.ndarray, person_id: str,
               image_for_cloud: Callable[[], bytes]) -> Outcome:
        cand = gallery.verify(embedding, person_id)
        if cand is None:
            # Not in the local cache (yet): only the hub can say.
            return self._uncertain(Outcome("verify", "uncertain", "local", person_id), person_id,
                                   image_for_cloud, unknown_person=True)
        out = Outcome("verify", "", "local", cand.person_id, cand.person_name, round(cand.score, 4),
                      confidence(cand.score, gallery.thresholds))
        d = gallery.thresholds.decide(cand.score)
        if d is Decision.ACCEPT:
            out.decision = "accept"
            return out
        if d is Decision.REJECT:
            out.decision = "reject"
            return out
        return self._uncertain(out, person_id, image_for_cloud)

    def identify(self, gallery: Gallery, embedding: np.ndarray, group_ids: list[str] | None,
                 image_for_cloud: Callable[[], bytes]) -> Outcome:
        res = gallery.identify(embedding, group_ids or None)
        out = Outcome("identify", "unknown", "local")
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
        if res.decision is Decision.ACCEPT:
            out.decision = "accept"
            return out
        # Close to someone but not sure (or two people too close): ask the hub about the best.
        return self._uncertain(out, best.person_id, image_for_cloud)

    def _uncertain(self, out: Outcome, person_id: str, image_for_cloud: Callable[[], bytes],
                   unknown_person: bool = False) -> Outcome:
        from edge.cloud import CloudApiError, CloudError

        negative = "unknown" if out.mode == "identify" or unknown_person else "reject"
        if self.cloud_fallback:
            t0 = time.perf_counter()
            try:
                data = self.cloud.verify(person_id, image=image_for_cloud())
                out.cloud_ms = (time.perf_counter() - t0) * 1000
                out.cloud = {"session_id": data.get("session_id", ""), "code": 0,
                             "ismatch": bool(data.get("ismatch")),
                             "confidence": data.get("confidence"), "latency_ms": round(out.cloud_ms, 1)}
                out.source = "cloud"
                out.decision = "accept" if out.cloud["ismatch"] else negative
                if out.decision == "accept" and not out.person_id:
                    out.person_id = person_id
                return out
            except CloudApiError as exc:
                # The hub answered: e.g. no face in our crop (-1101) or unknown person (-1303).
                out.cloud_ms = (time.perf_counter() - t0) * 1000
                out.cloud = {"session_id": "", "code": exc.code, "ismatch": False,
                             "confidence": None, "latency_ms": round(out.cloud_ms, 1),
                             "message": exc.message}
                out.source = "cloud"
                out.decision = negative
                return out
            except CloudError as exc:
                out.cloud_ms = (time.perf_counter() - t0) * 1000
                out.cloud = {"session_id": "", "code": None, "ismatch": None, "confidence": None,
                             "latency_ms": round(out.cloud_ms, 1), "error": str(exc)}
        out.source = "offline-policy"
        out.decision = {"deny": negative, "allow": "accept", "uncertain": "uncertain"}[self.offline]
        if unknown_person and self.offline == "allow":
            out.decision = negative  # never let in someone this device has never heard of
        return out
