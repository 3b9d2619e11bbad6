"""One camera frame -> the local outcome of each face ready to be decided.

Detect, gate on quality, embed, follow the faces across frames (tracker), score each good
frame's liveness (not once the track is decided and no claim waits for a face); a track with
enough good frames (and, with [liveness] mode = require, enough scored for liveness) is scored
locally (verify against its claim, else identify), refused when its liveness says attack, and
handed to the settle window, which picks the track's best frame and finishes the decision.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from edge.core.conditions import Condition
from edge.core.domain import Decision, Latency
from edge.daemon import metrics
from edge.daemon.evidence import TrackEvidence
from edge.daemon.settle import Candidate

if TYPE_CHECKING:
    import numpy as np

    from edge.core.matcher import Gallery
    from edge.daemon.claims import Claims
    from edge.daemon.decide import Decider
    from edge.daemon.liveness import LivenessPolicy
    from edge.daemon.settle import SettleWindow
    from edge.daemon.tracker import Tracker
    from edge.vision.pipeline import Pipeline


class FrameScorer:
    """One frame's path: pipeline -> tracker -> (liveness, claims) -> decider -> settle window."""

    def __init__(self, pipeline: Pipeline, tracker: Tracker, decider: Decider, claims: Claims,
                 window: SettleWindow, gallery: Callable[[], Gallery], *,
                 max_faces: int, min_frames: int, identify: bool, groups: list[str],
                 liveness: LivenessPolicy, evidence: str = "best"):
        self.pipeline, self.tracker, self.decider = pipeline, tracker, decider
        self.liveness = liveness
        self.claims, self.window, self.gallery = claims, window, gallery
        self.max_faces, self.min_frames = max_faces, min_frames
        self.identify, self.groups = identify, groups
        self.evidence = evidence

    def process(self, frame: np.ndarray, t_frame: float) -> None:
        """Score each face of this BGR frame (read at perf_counter `t_frame`) and hand the
        tracks ready to be decided to the settle window."""
        t0 = time.perf_counter()
        faces = self.pipeline.detect(frame, limit=self.max_faces)[: self.max_faces]
        t_detect = time.perf_counter()
        metrics.FRAMES.inc()
        metrics.STAGE.labels("detect").observe(t_detect - t0)
        for f in faces:
            metrics.FACES.labels("ok" if f.quality.ok else (f.quality.reason or "bad")).inc()
            if f.quality.ok:
                self.pipeline.embed(frame, f)
        t_embed = time.perf_counter()
        if faces:
            metrics.STAGE.labels("embed").observe(t_embed - t_detect)
        tracks = self.tracker.update([f.box for f in faces],
                                     [f.embedding if f.quality.ok else None for f in faces])
        self._end_claims_of_gone(self.tracker.dropped)
        gallery = self.gallery()
        # The face nearest the camera (the frame's largest) is the person at the door: the only
        # one identified (a member passing far behind opened the door for a stranger standing at
        # it: any of the largest faces decided), and the only one a waiting claim may go to (a
        # member further back answered a stranger's badge: edge.daemon.claims). The others are
        # tracked and judged live meanwhile, and decided once they are the nearest.
        nearest = max(range(len(faces)), key=lambda i: faces[i].box[2] * faces[i].box[3], default=-1)
        for index, (face, track) in enumerate(zip(faces, tracks)):
            if not face.quality.ok:
                continue  # quality gate: wait for a better frame of this track
            state = track.state
            state.good_frames += 1
            frame_verdict = None
            if self.liveness.enabled:
                if state.decided and not self.claims.waiting:
                    self.liveness.forget(track)  # nothing left to decide for it: spare the model
                else:
                    t_live = time.perf_counter()
                    frame_verdict = self.liveness.observe(self.pipeline, frame, face, track)
                    metrics.STAGE.labels("liveness").observe(time.perf_counter() - t_live)
            if state.good_frames < self.min_frames:
                continue
            liveness = self.liveness.of(track)
            if not self.liveness.may_decide(liveness, frame_verdict):
                continue  # wait until enough frames of this track are scored, and this one is live
            # Only a track ready to be scored takes a claim: a claim taken is always decided.
            claim = self.claims.for_track(track, self.window.settle, nearest=index == nearest)
            if state.decided or (claim is None and (not self.identify or index != nearest)):
                continue
            t_match = time.perf_counter()
            if state.evidence is None:
                state.evidence = TrackEvidence(self.evidence)
            assert face.embedding is not None  # embedded above: its quality is ok
            embedding = state.evidence.add(face.embedding)  # the track's frames so far (edge.daemon.evidence)
            # The frame's condition (size, pose, sharpness) picks the thresholds or withholds
            # the decision (edge.core.conditions).
            condition = Condition.of(face.quality)
            if claim is not None:
                out = self.decider.verify(gallery, embedding, claim.person_id, condition=condition,
                                          look=state.claim_looks)
                state.claim_looks += 1
            else:
                out = self.decider.identify(gallery, embedding, self.groups, condition=condition, look=state.looks)
                state.looks += 1
            if (self.liveness.enabled and out.decision in (Decision.ACCEPT, Decision.UNCERTAIN)
                    and out.person_id and gallery.photos_of(out.person_id)):
                # the verdict of the frames whose face could be the person decided (a refusal
                # opens nothing: it needs none): not a live face shown before a photo of them was
                # slid over it (edge.daemon.liveness)
                liveness = self.liveness.of(track, _could_be(gallery, out.person_id))
                if not self.liveness.may_decide(liveness, frame_verdict):
                    continue
            out = self.liveness.apply(out, liveness)
            latency = Latency((t_detect - t0) * 1000, (t_embed - t_detect) * 1000,
                              (time.perf_counter() - t_match) * 1000)
            metrics.STAGE.labels("match").observe(latency.match_ms / 1000)
            elsewhere = claim is not None and self._claimed_in_view(claim.person_id, index, faces, tracks, gallery)
            self.window.consider(Candidate(track, out, face, frame, t_frame, latency, claim, gallery,
                                           claimed_in_view=elsewhere))

    def _end_claims_of_gone(self, gone: list) -> None:
        """The claims of tracks `gone` before they could be decided end unanswered (Claims.end);
        one with a decision settling is decided by the window as its track leaves."""
        for t in gone:
            held = t.state.claim
            if held is not None and not t.state.decided and not self.window.holds(t.id):
                self.claims.end(held)

    def _claimed_in_view(self, person_id: str, index: int, faces: list, tracks: list, gallery: Gallery) -> bool:
        """Whether another face of this frame is `person_id`, recognised (at the accept
        threshold: a look-alike behind is not her) and not judged an attack: a claim refused on
        the nearest face is then not counted towards their lockout. A member badging her own
        card with someone else nearer had it refused on his face and counted, at every door of
        the site: locked out by whoever stood before her. (Not "judged live": the liveness of a
        track decided before is no longer scored, and hers, identified as she walked up, was
        never live again.)"""
        is_her = _could_be(gallery, person_id, gallery.thresholds.accept)
        for i, (f, t) in enumerate(zip(faces, tracks)):
            if i == index or not f.quality.ok or f.embedding is None or not is_her(f.embedding):
                continue
            seen = self.liveness.of(t)
            if seen is None or seen.verdict != "attack":
                return True
        return False


def _could_be(gallery: Gallery, person_id: str, at: float | None = None) -> Callable[[np.ndarray], bool]:
    """Whether a face could be `person_id`: it scores at least `at` (by default the reject
    threshold: a face under it is refused as them on its own) against their best face."""
    least = gallery.thresholds.reject if at is None else at

    def could_be(embedding: np.ndarray) -> bool:
        found = gallery.verify(embedding, person_id)
        return found is not None and found.score >= least

    return could_be
