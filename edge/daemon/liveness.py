"""A face track's liveness: its last frames' scores fused, and what the decision does with it.

`[liveness] mode`:
- require (the default): a track is decided only once `frames` of its good frames carry a
  liveness score; when their median is under the model's threshold the track ends as `reject`
  with reason `presentation_attack`, decided here and never sent to the hub as uncertain; a live
  track is decided only on a frame that is itself scored live;
- flag: decisions wait for a verdict too, but an attack's decision stands (the event carries the
  verdict; a door never opens on one, nor on a decision without a verdict);
- off: no liveness is computed (the behaviour before it existed).

**The verdict is the decided person's.** Each score is kept with the embedding of its frame, and
the verdict of a decision counts only the frames that could be the person decided (their face
scores at least the reject threshold against that person): a live face shown for the first
frames and a member's photo slid over it for the last kept one track (each frame like the one
before), and the live frames outvoted the photo (reproduced with the real models: the door
opened for five of five pairs).
How a track is decided (LivenessNet.track): the network alone on the median p(live) of the
last frames; with `[liveness] cues = true`, the network fused with the context crop's cues
(edge/vision/liveness_fusion.json) on the mean of the frames' fused log-odds. `bench liveness`
measured both per frame and per track, leaving each source out of the fitting in turn
(docs/benchmarks.md, Liveness): the median of five against the mean and the minimum, the network
against the fusion; the fusion stops more unseen phone replays but refused more of the one
left-out backlit live webcam than the 5 % BPCER allowed, so it is not the default. A frame
withheld by a gate (too small, too close) adds no score.
Verify claims and identify are treated alike. A track already decided is scored again only
when a claim waits for a face (`forget`).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from edge.core.domain import Decision, Source, TrackLiveness
from edge.daemon import metrics
from edge.daemon.tracker import LivenessLook

if TYPE_CHECKING:
    import numpy as np

    from edge.daemon.decide import Outcome
    from edge.daemon.tracker import Track
    from edge.vision.face import Face
    from edge.vision.liveness import LivenessNet
    from edge.vision.pipeline import Pipeline

PRESENTATION_ATTACK = "presentation_attack"
MODES = ("require", "flag", "off")


class LivenessPolicy:
    def __init__(self, mode: str, frames: int, net: LivenessNet | None, fingerprint: str | None):
        if mode not in MODES:
            raise ValueError(f"liveness mode must be one of {MODES}, not {mode!r}")
        if mode != "off" and net is None:
            raise FileNotFoundError("no liveness model in the models folder: run `edge-verifier models build` "
                                    "(or set [liveness] mode = \"off\")")
        self.mode, self.frames, self.net, self.fingerprint = mode, frames, net, fingerprint

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def observe(self, pipeline: Pipeline, frame: np.ndarray, face: Face, track: Track) -> str | None:
        """Score one good frame of the track (a gate may withhold it) and count its verdict;
        this frame's verdict ("live", "attack", None when withheld)."""
        result = pipeline.check_liveness(frame, face)
        metrics.LIVENESS_FRAMES.labels(result.verdict or result.reason).inc()
        if result.score is not None:
            if track.state.liveness is None:
                track.state.liveness = deque(maxlen=self.frames)
            track.state.liveness.append(LivenessLook(result.score, face.embedding))
        return result.verdict

    def forget(self, track: Track) -> None:
        """A decided track with no claim waiting is not scored (the model would run for nothing
        on every frame of a face standing at the door); its old scores go too, so a claim that
        later re-opens it is decided on `frames` fresh frames, not on frames from before."""
        track.state.liveness = None

    def of(self, track: Track, could_be: Callable[[np.ndarray], bool] | None = None) -> TrackLiveness | None:
        """The track's liveness; with `could_be`, from the frames whose face could be the person
        decided only (a frame without its face counts for no one)."""
        if not self.enabled:
            return None
        scores = [look.score for look in track.state.liveness or ()
                  if could_be is None or (look.embedding is not None and could_be(look.embedding))]
        if not scores:
            return TrackLiveness(None, 0, None)
        net = self.net
        assert net is not None  # enabled: the constructor made sure there is one
        score, verdict = net.track(list(scores))
        return TrackLiveness(score, len(scores), verdict if len(scores) >= self.frames else None)

    def ready(self, liveness: TrackLiveness | None) -> bool:
        """Whether the track may be decided now: with liveness on, only with a verdict (in flag
        mode too: decided on its first frame, a print's accept reached the door before any
        verdict could refuse it)."""
        return not self.enabled or (liveness is not None and liveness.verdict is not None)

    def may_decide(self, liveness: TrackLiveness | None, frame_verdict: str | None) -> bool:
        """`ready`, and in require mode a live track is decided only on a frame itself scored
        live (a track judged an attack is refused on any frame)."""
        return self.ready(liveness) and (self.mode != "require" or frame_verdict == "live"
                                         or (liveness is not None and liveness.verdict == "attack"))

    def apply(self, out: Outcome, liveness: TrackLiveness | None) -> Outcome:
        """The local outcome with the track's liveness; an attack, in require mode, is refused."""
        out.liveness = liveness
        if self.mode == "require" and liveness is not None and liveness.verdict == "attack":
            out.decision, out.source, out.reason = Decision.REJECT, Source.LOCAL, PRESENTATION_ATTACK
        return out

    def health(self) -> dict[str, Any]:
        threshold = self.net.decision_threshold if self.net is not None else None
        cues = self.net is not None and self.net.fusion is not None
        return {"mode": self.mode, "frames": self.frames, "threshold": threshold, "cues": cues,
                "fingerprint": self.fingerprint}
