"""The joints of a synthetic pedestrian: where the limbs are drawn from and to, and the COCO-17 keypoints.

The limb end points are computed here once and used both to draw the figure (:mod:`reidkit.data._synth_body`)
and to report its keypoints, so the ground truth is exactly where the limbs are. COCO-17 joints of a figure
(logical canvas units), by view:

* shoulders, elbows, wrists: the arm's drawn start, bend and end (the end is the wrist; the hand is drawn just
  below it); hips, knees, ankles: the leg's drawn start, bend and end (the shoe is drawn just below the ankle).
  Front and back views bend the arm halfway and the leg at :data:`KNEE_FRACTION`; the profile's straight arm
  bends halfway, its leg at 0.45.
* front view: the person's left is on the image's right; the eyes are the two drawn eyes, the nose is below
  them (0.4 of the head's vertical radius below its centre), the ears are the head's sides at eye height.
* back view: the person's left is on the image's left; the ears as from the front, the eyes and the nose at
  their front-view places but not seen (visibility 0).
* side view (profile): walking to the right shows the right side. The nose is the drawn nose, the near eye the
  drawn eye, the near ear behind the head's centre; the far eye and ear are at the near ones' places, not seen.
  The far arm and leg are the ones drawn first, darker (visibility 1 like every joint of the body).

Every other joint has visibility 1 here; occluders and the detector's crop are applied by the caller
(:func:`reidkit.data._synth_draw.render`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from reidkit.data._synth_body import _Body

Point = tuple[float, float]
KNEE_FRACTION = 0.42  # front / back view: knee height as a fraction of the leg, from the hip


def arm_joints(body: _Body, side: float) -> tuple[Point, Point, Point]:
    """Front / back view: ``(shoulder, elbow, wrist)`` of the arm on image side ``side`` (-1 left, +1 right)."""
    cx, H, shoulder, arm_w, y_shoulder = body.cx, body.height, body.shoulder, body.arm_w, body.y_shoulder
    shoulder_pt = (cx + side * (shoulder - arm_w * 0.35), y_shoulder + arm_w * 0.45)
    reach = 0.30 * H * (1 - 0.12 * abs(body.swing))
    hand = (cx + side * (shoulder + arm_w * 0.15), shoulder_pt[1] + reach)
    elbow = ((shoulder_pt[0] + hand[0]) / 2 + side * 0.6, (shoulder_pt[1] + hand[1]) / 2)
    return shoulder_pt, elbow, hand


def leg_joints(body: _Body, side: float) -> tuple[Point, Point, Point]:
    """Front / back view: ``(hip, knee, ankle)`` of the leg on image side ``side`` (-1 left, +1 right)."""
    cx, H, hip, y_hip, leg_len = body.cx, body.height, body.hip, body.y_hip, body.leg_len
    lift = 0.025 * H * max(0.0, side * body.swing)
    hip_x = cx + side * hip * 0.5
    ankle = (cx + side * hip * 0.55, body.y_ankle - lift)
    knee = (hip_x + side * 0.5, y_hip + leg_len * KNEE_FRACTION - lift * 0.5)
    return (hip_x, y_hip), knee, ankle


def side_swing(body: _Body) -> tuple[float, float]:
    """Side view: ``(arm angle, leg angle)`` in radians of the near limbs (the far ones swing the other way)."""
    return -0.45 * body.swing, 0.36 * body.swing


def side_arm_joints(body: _Body, angle: float) -> tuple[Point, Point, Point]:
    """Side view: ``(shoulder, elbow, wrist)`` of an arm swung by ``angle``."""
    f = body.facing
    sh = (body.cx + f * body.depth * 0.1, body.y_shoulder + body.arm_w * 0.5)
    reach = 0.30 * body.height
    hand = (sh[0] + math.sin(angle) * reach * f * 1.0, sh[1] + math.cos(angle) * reach)
    return sh, ((sh[0] + hand[0]) / 2, (sh[1] + hand[1]) / 2), hand


def side_leg_joints(body: _Body, angle: float) -> tuple[Point, Point, Point]:
    """Side view: ``(hip, knee, ankle)`` of a leg swung forward by ``angle``."""
    cx, f, leg_len = body.cx, body.facing, body.leg_len
    hip_pt = (cx, body.y_hip + 0.01 * body.height)
    ankle = (cx + math.sin(angle) * leg_len, hip_pt[1] + math.cos(angle) * leg_len * 0.98)
    knee = (
        cx + math.sin(angle) * leg_len * 0.45 + (f * 1.5 if angle * f < 0 else 0),
        hip_pt[1] + math.cos(angle) * leg_len * 0.45,
    )
    return hip_pt, knee, ankle


def figure_keypoints(body: _Body, view: int) -> np.ndarray:
    """COCO-17 ``[17, 3]`` float32 ``(x, y, visibility)`` of a figure in logical canvas units (see the module).

    Args:
        body: the figure's landmarks.
        view: 0 front, 1 back, 2 side.
    """
    points = np.ones((17, 3), dtype=np.float32)
    cx, cy, rx, ry = body.cx, body.head_cy, body.head_rx, body.head_ry
    if view == 2:
        f = body.facing
        near_left = f < 0  # walking to the right shows the right side
        arm, leg = side_swing(body)
        limbs = {
            True: (side_arm_joints(body, arm), side_leg_joints(body, leg)),
            False: (side_arm_joints(body, -arm), side_leg_joints(body, -leg)),
        }
        left_arm, left_leg = limbs[near_left]
        right_arm, right_leg = limbs[not near_left]
        eye, ear = (cx + f * rx * 0.55, cy + ry * 0.05), (cx - f * rx * 0.1, cy + ry * 0.1)
        face = [(cx + f * rx * 0.9, cy + ry * 0.15), eye, eye, ear, ear]
        seen = [1.0, float(near_left), float(not near_left), float(near_left), float(not near_left)]
    else:
        left = 1.0 if view == 0 else -1.0  # the image side of the person's left
        left_arm, right_arm = arm_joints(body, left), arm_joints(body, -left)
        left_leg, right_leg = leg_joints(body, left), leg_joints(body, -left)
        eye_y = cy + ry * 0.12
        face = [
            (cx, cy + ry * 0.4),
            (cx + left * rx * 0.4, eye_y),
            (cx - left * rx * 0.4, eye_y),
            (cx + left * rx, eye_y),
            (cx - left * rx, eye_y),
        ]
        front = float(view == 0)
        seen = [front, front, front, 1.0, 1.0]
    joints = list(face)
    for left_joint, right_joint in zip((*left_arm, *left_leg), (*right_arm, *right_leg), strict=True):
        joints += [left_joint, right_joint]  # COCO-17 pairs: left then right
    points[:, :2] = np.asarray(joints, dtype=np.float32)
    points[:5, 2] = seen
    return points
