"""The condition a face was seen in, and what it changes in the decision (issue 25).

An impostor tail read off large frontal faces (LFW's) is optimistic for small and turned faces:
strangers score higher against enrolled faces when the probe is small, blurred or turned. So a
face is put in a band along each measure the quality gate already takes (edge.vision.quality):

- size: the shorter side of the face box in frame pixels (what the gate calls `size`);
- pose: the larger of |yaw| and |pitch|, estimated from the five landmarks;
- sharpness: variance of the Laplacian of the aligned crop.

`judge` then says what the door does with the face: decide it at thresholds raised by the
worst margin of its bands (edge.core.false_admit.BAND_MARGINS, measured by `edge-verifier bench
door --degrade`; a margin is never negative, so no threshold falls below today's), or withhold
the decision below a documented limit (DOOR_LIMITS) with a reason the person can act on:
`step_closer` for a face too small, `face_the_camera` for one turned too far. A withheld face is
never an accept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# Lower edges of each band (the last band is open-ended). Size: the quality gate refuses faces
# under 40 px; the in-the-wild tail (issue 25) came from faces of 46-98 px against LFW's 100+.
SIZE_EDGES = (0.0, 64.0, 96.0)
POSE_EDGES = (0.0, 15.0, 25.0)
SHARPNESS_EDGES = (0.0, 50.0, 150.0)
MEASURES = ("size", "pose", "sharpness")

STEP_CLOSER = "step_closer"
FACE_THE_CAMERA = "face_the_camera"


@dataclass(frozen=True)
class Condition:
    """What the quality gate measured on one face."""

    size: float  # shorter side of the face box, frame px
    yaw: float
    pitch: float
    sharpness: float

    @property
    def turn(self) -> float:
        return max(abs(self.yaw), abs(self.pitch))

    @classmethod
    def of(cls, quality: Any) -> "Condition":
        """From an edge.vision.quality.Quality (or anything with those attributes)."""
        return cls(float(quality.size), float(quality.yaw), float(quality.pitch), float(quality.sharpness))


def band_of(value: float, edges: tuple[float, ...]) -> str:
    """The band label of `value`: "lo-hi" for an inner band, "lo+" for the last one."""
    i = max(k for k, e in enumerate(edges) if value >= e) if value >= edges[0] else 0
    return f"{edges[i]:g}+" if i == len(edges) - 1 else f"{edges[i]:g}-{edges[i + 1]:g}"


def bands(cond: Condition) -> dict[str, str]:
    """{measure: band label} of one face, e.g. {"size": "64-96", "pose": "0-15", ...}."""
    return {"size": band_of(cond.size, SIZE_EDGES), "pose": band_of(cond.turn, POSE_EDGES),
            "sharpness": band_of(cond.sharpness, SHARPNESS_EDGES)}


def all_bands() -> dict[str, list[str]]:
    """Every band label of every measure, in order."""
    out = {}
    for measure, edges in zip(MEASURES, (SIZE_EDGES, POSE_EDGES, SHARPNESS_EDGES)):
        out[measure] = [band_of(e, edges) for e in edges]
    return out


@dataclass(frozen=True)
class Judgement:
    """What the door does with a face in this condition."""

    withhold: str | None  # STEP_CLOSER | FACE_THE_CAMERA: no decision on this face, or None
    margin: float  # added to the accept thresholds (>= 0)
    band: str  # the band whose margin applied ("" when none raised the threshold)
    bands: dict[str, str]

    def as_dict(self) -> dict:
        return {"bands": dict(self.bands), "margin": self.margin, "band": self.band or None,
                "withheld": self.withhold}


def judge(cond: Condition | None, margins: Mapping[str, float], limits: Mapping[str, float]) -> Judgement:
    """The door's rule for one face: withheld beyond `limits` ({"min_size": px, "max_turn":
    degrees}), else decided at thresholds raised by the largest margin among its bands
    (`margins`: {"size:40-64": cosine, ...}; negative values count as 0: never below today's)."""
    if cond is None:
        return Judgement(None, 0.0, "", {})
    b = bands(cond)
    if cond.size < limits.get("min_size", 0.0):
        return Judgement(STEP_CLOSER, 0.0, "", b)
    if cond.turn > limits.get("max_turn", 180.0):
        return Judgement(FACE_THE_CAMERA, 0.0, "", b)
    margin, worst = 0.0, ""
    for measure, label in b.items():
        m = float(margins.get(f"{measure}:{label}", 0.0))
        if m > margin:
            margin, worst = m, f"{measure}:{label}"
    return Judgement(None, round(margin, 4), worst, b)
