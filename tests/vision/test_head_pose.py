"""Head pose from the five landmarks (edge.vision.quality.head_pose): the pose bands of issue 25
are measured this way, not synthesised, so the estimate must follow a known rotation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.vision.quality import head_pose

# A frontal face in 3D, eye distance 1: eyes and mouth corners in one plane, the nose tip in front
# of it (depth 0.55 eye distances) at 0.4946 of the way from the eye line down to the mouth line,
# mouth 1.16 eye distances below the eyes (ArcFace template proportions).
_FACE = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.4946 * 1.16, -0.55],
                  [-0.41, 1.16, 0.0], [0.41, 1.16, 0.0]])


def _seen(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, scale: float = 40.0) -> np.ndarray:
    """The 5 landmarks of _FACE turned by yaw (about the vertical axis), pitch, then roll in the
    image plane, projected orthographically at `scale` px per eye distance."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    pts = (_FACE - _FACE.mean(0)) @ (rz @ rx @ ry).T
    return pts[:, :2] * scale + 100.0


def test_a_frontal_face_has_no_pose():
    yaw, pitch, roll = head_pose(_seen())
    assert abs(yaw) < 0.5 and abs(pitch) < 0.5 and abs(roll) < 0.5


@pytest.mark.parametrize("angle", [-35.0, -20.0, -10.0, 10.0, 20.0, 35.0])
def test_yaw_follows_a_turn_of_the_head(angle):
    yaw, pitch, _ = head_pose(_seen(yaw=angle))
    assert abs(yaw) == pytest.approx(abs(angle), abs=4.0)  # the sign convention is the image's
    assert abs(pitch) < 4.0


@pytest.mark.parametrize("angle", [-25.0, -12.0, 12.0, 25.0])
def test_pitch_follows_a_nod(angle):
    yaw, pitch, _ = head_pose(_seen(pitch=angle))
    assert abs(pitch) == pytest.approx(abs(angle), abs=4.0)
    assert abs(yaw) < 2.0


def test_an_in_plane_rotation_is_roll_and_leaves_yaw_and_pitch_alone():
    assert abs(head_pose(_seen(roll=25.0))[2]) == pytest.approx(25.0, abs=0.5)
    for yaw, pitch in ((20.0, 0.0), (0.0, 15.0)):
        base = head_pose(_seen(yaw=yaw, pitch=pitch))
        turned = head_pose(_seen(yaw=yaw, pitch=pitch, roll=25.0))
        assert turned[0] == pytest.approx(base[0], abs=1.0) and turned[1] == pytest.approx(base[1], abs=1.0)


def test_the_estimate_does_not_depend_on_the_face_size():
    assert head_pose(_seen(yaw=25.0, scale=15.0)) == pytest.approx(head_pose(_seen(yaw=25.0, scale=80.0)), abs=1e-6)
