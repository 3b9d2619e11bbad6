"""Following faces across consecutive frames, so a decision is made once per track.

Greedy association by box overlap (IoU), with the centre distance relative to the face size
as a fallback for a fast-moving face whose boxes barely overlap. A track that misses its face
for more than `max_missed` frames ends; a face that matches no track starts a new one.
An optional appearance gate (cosine of the embeddings, via edge.core.matcher) refuses to continue a
track with a face that looks like someone else: a person stepping into the place of another
between two frames (or a slideshow of photos) gets a new track and a decision of its own.

Each track carries a `TrackState`: what the daemon keeps per face between frames (its good
frames, its claim, its liveness scores, its evidence, whether it is decided). The tracker
creates it with the track and never reads it.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence, cast

import numpy as np

from edge.core.matcher import cosine

if TYPE_CHECKING:
    from edge.core.domain import Claim
    from edge.daemon.evidence import TrackEvidence

Box = tuple[int, int, int, int]  # x, y, w, h


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Box, b: Box) -> float:
    """Distance of the box centres in units of the larger box side."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    d = ((ax + aw / 2 - bx - bw / 2) ** 2 + (ay + ah / 2 - by - bh / 2) ** 2) ** 0.5
    return d / max(aw, ah, bw, bh, 1)


@dataclass(frozen=True)
class LivenessLook:
    """One scored frame of a track: its p(live) and the face it was scored on (edge.daemon.liveness)."""
    score: float
    embedding: np.ndarray | None


@dataclass
class TrackState:
    """What the daemon keeps per face track; each field names the module that writes it."""
    good_frames: int = 0  # frames past the quality gate (edge.daemon.scoring)
    # Its decision is published (edge.daemon.settle); a claim taken reopens it (edge.daemon.claims).
    decided: bool = False
    claim: Claim | None = None  # the verify claim it carries until decided (edge.daemon.claims)
    # its last scored frames, at most [liveness] frames: p(live) and the face scored
    # (edge.daemon.liveness, which derives the verdict from them); None before the first score
    # and once forgotten.
    liveness: deque[LivenessLook] | None = None
    evidence: TrackEvidence | None = None  # what it is scored on, from its first scored frame (scoring)
    looks: int = 0  # frames identify has scored: each spends its share of the rate (scoring)
    claim_looks: int = 0  # frames verified against its claim (scoring; a claim taken restarts it: claims)


@dataclass
class Track:
    id: int
    box: Box
    hits: int = 1
    missed: int = 0
    embedding: np.ndarray | None = None  # the last embedding seen, for the appearance gate
    state: TrackState = field(default_factory=TrackState)  # the daemon's; the tracker never reads it


class Tracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, max_centre: float = 0.5,
                 min_similarity: float = 0.3):
        self.min_similarity = min_similarity
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.max_centre = max_centre
        self.tracks: list[Track] = []
        self.dropped: list[Track] = []  # the tracks the last update ended (their face gone)
        self._ids = itertools.count(1)

    def update(self, boxes: Sequence[Box],
               embeddings: Sequence[np.ndarray | None] | None = None) -> list[Track]:
        """Assign each box of this frame to a track; returns the tracks in the order of `boxes`."""
        embeddings = list(embeddings) if embeddings is not None else [None] * len(boxes)
        pairs = []
        for ti, t in enumerate(self.tracks):
            for bi, b in enumerate(boxes):
                e = embeddings[bi]
                if e is not None and t.embedding is not None and cosine(e, t.embedding) < self.min_similarity:
                    continue  # someone else stepped into this place
                o = iou(t.box, b)
                if o >= self.iou_threshold:
                    pairs.append((o, ti, bi))
                elif centre_distance(t.box, b) <= self.max_centre:
                    pairs.append((0.0, ti, bi))  # weaker than any real overlap
        pairs.sort(key=lambda p: p[0], reverse=True)
        taken_t: set[int] = set()
        out: list[Track | None] = [None] * len(boxes)
        for _, ti, bi in pairs:
            if ti in taken_t or out[bi] is not None:
                continue
            t = self.tracks[ti]
            t.box, t.missed = cast(Box, tuple(boxes[bi])), 0
            t.hits += 1
            if embeddings[bi] is not None:
                t.embedding = embeddings[bi]
            taken_t.add(ti)
            out[bi] = t
        for ti, t in enumerate(self.tracks):
            if ti not in taken_t:
                t.missed += 1
        self.dropped = [t for t in self.tracks if t.missed > self.max_missed]  # gone with this frame
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for bi, b in enumerate(boxes):
            if out[bi] is None:
                t = Track(next(self._ids), cast(Box, tuple(b)), embedding=embeddings[bi])
                self.tracks.append(t)
                out[bi] = t
        return out  # type: ignore[return-value]

    def miss_all(self) -> None:
        """A frame with no face (or a bad frame): every track ages by one."""
        self.update([])
