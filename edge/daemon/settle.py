"""The settle window: a face track is decided on its best frame, not its first.

Every good frame of a track is scored locally; the best so far is kept. A local accept is
decided at once; anything else waits up to `settle_s` for a better frame, or until the face
leaves or the camera ends, and only then is the best frame finished by the decision policy
(the hub is asked about that one frame, when uncertain).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from edge.core.domain import Claim, Decision, Latency
from edge.daemon.evidence import rank, replaces
from edge.vision import crop_jpeg

if TYPE_CHECKING:
    import numpy as np

    from edge.core.matcher import Gallery
    from edge.daemon.decide import Decider, Outcome
    from edge.daemon.tracker import Track
    from edge.vision.face import Face


@dataclass
class Candidate:
    """A track's best frame so far, with what its decision and its event need."""
    track: Track
    out: Outcome  # local only: settle() finishes it
    face: Face
    frame: np.ndarray  # the BGR frame the face is in (its crop goes to the hub, when asked)
    t_frame: float  # perf_counter when the frame was read
    latency: Latency
    claim: Claim | None
    gallery: Gallery  # the gallery it was scored against
    since: float = field(default_factory=time.monotonic)  # the track's first scored frame
    frames: int = 1
    # the claimed person is another face of the frame, recognised and not judged an attack: a
    # refusal of the claim on this one is not counted towards their lockout (edge.daemon.scoring)
    claimed_in_view: bool = False

    def rank(self) -> tuple[bool, float]:
        return rank(self.out)


Decided = Callable[[Candidate, "Outcome"], None]  # (the chosen candidate, its final Outcome)


class SettleWindow:
    def __init__(self, decider: Decider, settle_s: float, on_decided: Decided, evidence: str = "best"):
        self.decider = decider
        self.settle_s = settle_s
        self.on_decided = on_decided
        self.evidence = evidence  # edge.daemon.evidence: which frame's outcome a track keeps
        self._pending: dict[int, Candidate] = {}  # track id -> its best frame, not yet decided

    def __len__(self) -> int:
        return len(self._pending)

    def holds(self, track_id: int) -> bool:
        """Whether a decision of this track waits to be settled."""
        return track_id in self._pending

    def consider(self, cand: Candidate) -> None:
        """Keep the track's best frame so far and decide at once on a local accept; anything
        else waits for `settle_due`, which the loop runs right after each frame."""
        track_id = cand.track.id
        best = self._pending.get(track_id)
        if best is not None:
            cand.since, cand.frames = best.since, best.frames + 1
            cand.claimed_in_view = cand.claimed_in_view or best.claimed_in_view
            if not replaces(self.evidence, cand.rank(), best.rank()):
                best.frames, best.claimed_in_view = cand.frames, cand.claimed_in_view
                cand = best
        self._pending[track_id] = cand
        if cand.out.decision is Decision.ACCEPT:
            self.settle(track_id)

    def settle_due(self, alive: Iterable[int], camera_ended: bool) -> None:
        """Decide the tracks whose settle window is over, whose face has left (not among the
        `alive` track ids) or whose camera has no more frames to give."""
        if not self._pending:
            return
        alive = set(alive)
        now = time.monotonic()
        for track_id, cand in list(self._pending.items()):
            if camera_ended or track_id not in alive or now - cand.since >= self.settle_s:
                self.settle(track_id)

    def settle(self, track_id: int) -> None:
        """Finish a track's best local outcome (the hub is asked only now, about this frame)
        and hand it on. It stays pending until `on_decided` returns (the event is then in the
        outbox), so /health never shows a moment with the decision in neither place."""
        c = self._pending.get(track_id)
        if c is None:
            return
        # only this track's face: the hub verifies the largest face it finds in what it is sent
        out = self.decider.settle(c.out, lambda: crop_jpeg(c.frame, c.face.box, only_face=True))
        c.latency.cloud_ms = out.cloud_ms
        c.track.state.decided = True
        self.on_decided(c, out)
        del self._pending[track_id]
