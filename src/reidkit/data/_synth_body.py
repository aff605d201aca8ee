"""Drawing one pedestrian for the synthetic generator: the :class:`Look` record and the figure in three views.

A figure is laid out once as landmarks (:class:`_Body`: head, shoulders, hips, limb widths, walking swing) from
the person's proportions, then drawn part by part, back to front: front and back views share one routine
(:func:`_draw_front_or_back`), the side view (profile) has its own (:func:`_draw_side`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reidkit.data._synth_joints import (
    arm_joints,
    figure_keypoints,
    leg_joints,
    side_arm_joints,
    side_leg_joints,
    side_swing,
)
from reidkit.data._synth_pen import _Pen, _shade

_FAR_SHADE = 0.72  # side view: the far arm and leg are darker


@dataclass
class Look:
    """Everything needed to draw one person: attribute codes and the exact colours (RGB 0..255)."""

    build: int  # 0 slim, 1 average, 2 broad
    height: int  # 0 short, 1 medium, 2 tall (proportions: head size, leg length)
    hair_style: int  # 0 short, 1 long, 2 shaved
    top_pattern: int  # 0 plain, 1 stripes, 2 checks
    sleeves: int  # 0 short, 1 long
    logo: int  # 0 none, 1 circle, 2 square, 3 triangle, 4 cross
    bottom_type: int  # 0 trousers, 1 shorts, 2 skirt
    bag: int  # 0 none, 1 backpack, 2 shoulder bag
    hat: int  # 0 none, 1 cap, 2 beanie
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    top: tuple[int, int, int]
    pattern: tuple[int, int, int]
    logo_rgb: tuple[int, int, int]
    bottom: tuple[int, int, int]
    shoes: tuple[int, int, int]
    bag_rgb: tuple[int, int, int]
    hat_rgb: tuple[int, int, int]
    width_scale: float = 1.0  # small persistent build jitter


@dataclass(frozen=True)
class _Body:
    """Landmarks of a person being drawn (logical canvas units; ``y`` grows downwards)."""

    cx: float  # centre line
    height: float  # head top to feet
    facing: float  # +1 walking to the right, -1 to the left (side view)
    swing: float  # sin(walking phase): legs and arms swing with it
    head_cy: float
    head_rx: float
    head_ry: float
    y_neck: float
    y_shoulder: float
    y_hip: float
    y_ankle: float
    y_top_end: float  # lower edge of the top
    shoulder: float  # half width of the shoulders
    hip: float  # half width of the hips
    arm_w: float
    leg_w: float
    leg_len: float

    @property
    def depth(self) -> float:
        """Half depth of the torso seen in profile."""
        return self.shoulder * 0.62


def _landmarks(look: Look, *, cx: float, top: float, height: float, facing: float, phase: float) -> _Body:
    """Lay out a person of ``look``'s proportions whose head top is at ``top`` and feet at ``top + height``."""
    H = height
    head_ry = H * (0.067 - 0.004 * look.height)
    leg_fraction = 0.455 + 0.02 * look.height
    y_hip = top + H * (1 - leg_fraction)
    y_ankle = top + H * 0.962
    shoulder = H * (0.098 + 0.022 * look.build) * look.width_scale
    return _Body(
        cx=cx,
        height=H,
        facing=facing,
        swing=math.sin(phase),
        head_cy=top + head_ry,
        head_rx=head_ry * 0.8,
        head_ry=head_ry,
        y_neck=top + 2 * head_ry - 1,
        y_shoulder=top + 2 * head_ry + 0.025 * H,
        y_hip=y_hip,
        y_ankle=y_ankle,
        y_top_end=y_hip + 0.025 * H,
        shoulder=shoulder,
        hip=shoulder * (0.8 if look.bottom_type != 2 else 0.84),
        arm_w=H * (0.046 + 0.006 * look.build),
        leg_w=H * (0.056 + 0.008 * look.build),
        leg_len=y_ankle - y_hip,
    )


def draw_person(
    pen: _Pen, look: Look, *, cx: float, top: float, height: float, view: int, facing: float, phase: float
) -> None:
    """Draw a pedestrian whose head top is at ``top`` and feet at ``top + height``.

    Args:
        view: 0 front, 1 back, 2 side.
        facing: +1 walking to the right, -1 to the left (side view only).
        phase: walking phase in radians (legs and arms swing with it).
    """
    body = _landmarks(look, cx=cx, top=top, height=height, facing=facing, phase=phase)
    if view == 2:
        _draw_side(pen, look, body)
    else:
        _draw_front_or_back(pen, look, body, front=view == 0)


def person_keypoints(
    look: Look, *, cx: float, top: float, height: float, view: int, facing: float, phase: float
) -> np.ndarray:
    """COCO-17 ``[17, 3]`` keypoints (logical canvas units) of the pedestrian :func:`draw_person` draws with the
    same arguments (see :func:`reidkit.data._synth_joints.figure_keypoints`)."""
    return figure_keypoints(_landmarks(look, cx=cx, top=top, height=height, facing=facing, phase=phase), view)


# ------------------------------------------------------------------------------------------- front / back
def _draw_front_or_back(pen: _Pen, look: Look, body: _Body, *, front: bool) -> None:
    """Front (``front``) or back view, back to front: what shows behind, legs, bottom, arms, top, bag, head."""
    if front:
        _draw_behind_front(pen, look, body)
    _draw_legs(pen, look, body)
    _draw_bottom(pen, look, body)
    _draw_arms(pen, look, body)
    _draw_top(pen, look, body, front=front)
    if look.bag == 1:
        _draw_backpack(pen, look, body, front=front)
    elif look.bag == 2:
        _draw_shoulder_bag(pen, look, body, front=front)
    _draw_head(pen, look, body, front=front)
    view = 0 if front else 1
    _draw_hat(pen, look, body.cx, body.head_cy, body.head_rx, body.head_ry, view=view, facing=0.0)


def _draw_behind_front(pen: _Pen, look: Look, body: _Body) -> None:
    """Seen from the front: long hair behind the shoulders and a backpack peeking out at the sides."""
    cx, H, shoulder, y_shoulder, head_rx = body.cx, body.height, body.shoulder, body.y_shoulder, body.head_rx
    if look.hair_style == 1:
        pen.rect(cx - head_rx * 1.08, body.head_cy, cx + head_rx * 1.08, y_shoulder + 0.07 * H, look.hair)
    if look.bag == 1:
        pen.rect(
            cx - shoulder * 1.08,
            y_shoulder + 3,
            cx + shoulder * 1.08,
            y_shoulder + 0.2 * H,
            _shade(look.bag_rgb, 0.8),
        )


def _draw_legs(pen: _Pen, look: Look, body: _Body) -> None:
    """Both legs (trousers, or bare with shorts over the thighs) and the shoes."""
    H, leg_w = body.height, body.leg_w
    for side in (-1.0, 1.0):
        hip_pt, knee, ankle = leg_joints(body, side)
        if look.bottom_type == 0:
            pen.limb(hip_pt, ankle, leg_w * 1.05, leg_w * 0.85, look.bottom)
        else:
            pen.limb(hip_pt, ankle, leg_w * 0.85, leg_w * 0.65, look.skin)
            if look.bottom_type == 1:
                pen.limb(hip_pt, knee, leg_w * 1.12, leg_w * 1.05, look.bottom, round_end=False)
        shoe_y = ankle[1] + 0.018 * H
        pen.ellipse(ankle[0], shoe_y, leg_w * 0.62, 0.022 * H, look.shoes)


def _draw_bottom(pen: _Pen, look: Look, body: _Body) -> None:
    """The skirt, or the waist of the shorts or trousers."""
    cx, H, hip, y_hip = body.cx, body.height, body.hip, body.y_hip
    if look.bottom_type == 2:
        y_hem = y_hip + body.leg_len * 0.4
        pen.polygon(
            [
                (cx - hip, y_hip - 2),
                (cx + hip, y_hip - 2),
                (cx + hip * 1.45, y_hem),
                (cx - hip * 1.45, y_hem),
            ],
            look.bottom,
        )
    elif look.bottom_type != 0:
        pen.rect(cx - hip, y_hip - 2, cx + hip, y_hip + 0.05 * H, look.bottom)
    else:
        pen.rect(cx - hip, y_hip - 2, cx + hip, y_hip + 0.04 * H, look.bottom)


def _draw_arms(pen: _Pen, look: Look, body: _Body) -> None:
    """Both arms (outside the torso), in long or short sleeves, and the hands."""
    arm_w, skin = body.arm_w, look.skin
    for side in (-1.0, 1.0):
        shoulder_pt, elbow, hand = arm_joints(body, side)
        if look.sleeves == 1:
            pen.limb(shoulder_pt, hand, arm_w, arm_w * 0.85, look.top)
        else:
            pen.limb(shoulder_pt, hand, arm_w * 0.8, arm_w * 0.7, skin)
            pen.limb(
                shoulder_pt,
                ((shoulder_pt[0] + elbow[0]) / 2 + side * 0.3, (shoulder_pt[1] + elbow[1]) / 2),
                arm_w * 1.08,
                arm_w * 1.05,
                look.top,
                round_end=False,
            )
        pen.ellipse(hand[0], hand[1] + arm_w * 0.35, arm_w * 0.5, arm_w * 0.6, skin)


def _draw_top(pen: _Pen, look: Look, body: _Body, *, front: bool) -> None:
    """The torso in the top's colour and pattern; from the front also the chest logo and the neckline."""
    cx, H, shoulder, hip = body.cx, body.height, body.shoulder, body.hip
    y_shoulder, y_top_end = body.y_shoulder, body.y_top_end
    torso = [
        (cx - shoulder, y_shoulder + 1.5),
        (cx - shoulder * 0.8, y_shoulder - 0.5),
        (cx + shoulder * 0.8, y_shoulder - 0.5),
        (cx + shoulder, y_shoulder + 1.5),
        (cx + hip * 1.02, y_top_end),
        (cx - hip * 1.02, y_top_end),
    ]
    period = 0.052 * H
    pen.patterned_polygon(torso, look.top, look.top_pattern, look.pattern, period, 0.3)
    torso_h = y_top_end - y_shoulder
    if front and look.logo:
        _draw_logo(pen, look.logo, cx, y_shoulder + torso_h * 0.34, shoulder * 0.42, look.logo_rgb)
    if front:  # neckline
        pen.pieslice(cx, y_shoulder - 0.5, shoulder * 0.3, 0.03 * H, 0, 180, look.skin)


def _draw_backpack(pen: _Pen, look: Look, body: _Body, *, front: bool) -> None:
    """A backpack: its two straps from the front, the pack and its pocket from the back."""
    cx, H, shoulder, y_shoulder = body.cx, body.height, body.shoulder, body.y_shoulder
    torso_h = body.y_top_end - y_shoulder
    if front:
        for side in (-1.0, 1.0):
            x = cx + side * shoulder * 0.55
            pen.limb((x, y_shoulder), (x + side * 0.5, y_shoulder + torso_h * 0.45), 2.2, 2.2, look.bag_rgb)
    else:
        pack_top = y_shoulder + 0.01 * H
        pen.rect(cx - shoulder * 0.78, pack_top, cx + shoulder * 0.78, pack_top + torso_h * 0.7, look.bag_rgb)
        pen.rect(
            cx - shoulder * 0.5,
            pack_top + torso_h * 0.42,
            cx + shoulder * 0.5,
            pack_top + torso_h * 0.66,
            _shade(look.bag_rgb, 0.7),
        )


def _draw_shoulder_bag(pen: _Pen, look: Look, body: _Body, *, front: bool) -> None:
    """A shoulder bag: a strap across the torso and the bag at the hip (right side from the front)."""
    cx, H, y_top_end = body.cx, body.height, body.y_top_end
    strap_side = 1.0 if front else -1.0
    pen.limb(
        (cx - strap_side * body.shoulder * 0.7, body.y_shoulder),
        (cx + strap_side * body.hip * 0.95, y_top_end - 2),
        1.8,
        1.8,
        _shade(look.bag_rgb, 0.8),
    )
    bx = cx + strap_side * body.hip * 1.05
    pen.rect(bx - 0.055 * H, y_top_end - 3, bx + 0.055 * H, y_top_end + 0.075 * H, look.bag_rgb)


def _draw_head(pen: _Pen, look: Look, body: _Body, *, front: bool) -> None:
    """Neck, head and hair; from the front also the eyes."""
    cx, H, head_cy, head_rx, head_ry = body.cx, body.height, body.head_cy, body.head_rx, body.head_ry
    y_neck, y_shoulder, skin, hair = body.y_neck, body.y_shoulder, look.skin, look.hair
    pen.rect(cx - head_rx * 0.45, y_neck - 2, cx + head_rx * 0.45, y_shoulder + 1, _shade(skin, 0.9))
    pen.ellipse(cx, head_cy, head_rx, head_ry, skin)
    if look.hair_style != 2:
        if front:
            pen.pieslice(cx, head_cy + 0.3, head_rx * 1.06, head_ry * 1.04, 180, 360, hair)
        else:
            pen.ellipse(cx, head_cy, head_rx * 1.06, head_ry * 1.02, hair)
            if look.hair_style == 1:
                pen.rect(cx - head_rx * 1.05, head_cy, cx + head_rx * 1.05, y_shoulder + 0.08 * H, hair)
    else:
        pen.pieslice(cx, head_cy, head_rx * 1.0, head_ry * 1.0, 200, 340, _shade(hair, 1.0))
        if not front:
            pen.ellipse(cx, head_cy - head_ry * 0.1, head_rx * 0.95, head_ry * 0.8, _shade(skin, 0.85))
    if front:
        eye_y = head_cy + head_ry * 0.12
        for side in (-1.0, 1.0):
            pen.ellipse(cx + side * head_rx * 0.4, eye_y, 0.55, 0.55, (30, 25, 25))


# ------------------------------------------------------------------------------------------- side
def _draw_side(pen: _Pen, look: Look, body: _Body) -> None:
    """Side view (profile), walking towards ``body.facing``: the far limbs first, darker, then the near ones."""
    arm_angle, leg_angle = side_swing(body)
    if look.hair_style == 1:
        f, head_rx = body.facing, body.head_rx
        pen.rect(
            body.cx - f * head_rx * 1.05,
            body.head_cy,
            body.cx - f * head_rx * 0.1,
            body.y_shoulder + 0.08 * body.height,
            look.hair,
        )
    _draw_side_arm(pen, look, body, -arm_angle, _FAR_SHADE)
    _draw_side_leg(pen, look, body, -leg_angle, _FAR_SHADE)
    if look.bag == 1:
        _draw_side_backpack(pen, look, body)
    _draw_side_leg(pen, look, body, leg_angle, 1.0)
    _draw_side_torso(pen, look, body)
    _draw_side_straps(pen, look, body)
    _draw_side_arm(pen, look, body, arm_angle, 1.0)
    _draw_side_head(pen, look, body)
    _draw_hat(pen, look, body.cx, body.head_cy, body.head_rx, body.head_ry, view=2, facing=body.facing)


def _draw_side_leg(pen: _Pen, look: Look, body: _Body, angle: float, shade: float) -> None:
    """One leg in profile, swung forward by ``angle`` (radians), its colours darkened by ``shade``."""
    H, f, skin, leg_w = body.height, body.facing, look.skin, body.leg_w
    hip_pt, knee, ankle = side_leg_joints(body, angle)
    bottom = _shade(look.bottom, shade)
    if look.bottom_type == 0:
        pen.limb(hip_pt, knee, leg_w * 1.1, leg_w, bottom)
        pen.limb(knee, ankle, leg_w, leg_w * 0.85, bottom)
    else:
        pen.limb(hip_pt, knee, leg_w * 0.9, leg_w * 0.8, _shade(skin, shade))
        pen.limb(knee, ankle, leg_w * 0.8, leg_w * 0.65, _shade(skin, shade))
        if look.bottom_type == 1:
            pen.limb(hip_pt, knee, leg_w * 1.15, leg_w * 1.05, bottom, round_end=False)
    sx = ankle[0] + f * leg_w * 0.35
    pen.ellipse(sx, ankle[1] + 0.016 * H, leg_w * 0.85, 0.022 * H, _shade(look.shoes, shade))


def _draw_side_arm(pen: _Pen, look: Look, body: _Body, angle: float, shade: float) -> None:
    """One arm in profile, swung by ``angle`` (radians), its colours darkened by ``shade``."""
    skin, arm_w = look.skin, body.arm_w
    sh, _, hand = side_arm_joints(body, angle)
    top_colour = _shade(look.top, shade)
    if look.sleeves == 1:
        pen.limb(sh, hand, arm_w, arm_w * 0.85, top_colour)
    else:
        pen.limb(sh, hand, arm_w * 0.8, arm_w * 0.7, _shade(skin, shade))
        mid = (sh[0] + (hand[0] - sh[0]) * 0.33, sh[1] + (hand[1] - sh[1]) * 0.33)
        pen.limb(sh, mid, arm_w * 1.1, arm_w * 1.05, top_colour, round_end=False)
    pen.ellipse(hand[0], hand[1] + arm_w * 0.3, arm_w * 0.5, arm_w * 0.6, _shade(skin, shade))


def _draw_side_backpack(pen: _Pen, look: Look, body: _Body) -> None:
    """A backpack on the back, between the far and the near leg."""
    f, H, y_shoulder = body.facing, body.height, body.y_shoulder
    pack_top = y_shoulder + 0.01 * H
    back = body.cx - f * body.depth
    pen.rect(
        min(back, back - f * 0.11 * H),
        pack_top,
        max(back, back - f * 0.11 * H),
        pack_top + (body.y_top_end - y_shoulder) * 0.68,
        look.bag_rgb,
    )


def _draw_side_torso(pen: _Pen, look: Look, body: _Body) -> None:
    """The skirt or the waist of the shorts or trousers, then the torso in the top's colour and pattern."""
    cx, H, f, depth = body.cx, body.height, body.facing, body.depth
    y_shoulder, y_hip, y_top_end = body.y_shoulder, body.y_hip, body.y_top_end
    if look.bottom_type == 2:
        y_hem = y_hip + body.leg_len * 0.4
        pen.polygon(
            [
                (cx - depth * 1.05, y_hip - 2),
                (cx + depth * 1.05, y_hip - 2),
                (cx + depth * 1.5, y_hem),
                (cx - depth * 1.5, y_hem),
            ],
            look.bottom,
        )
    else:
        pen.rect(cx - depth * 0.95, y_hip - 2, cx + depth * 0.95, y_hip + 0.045 * H, look.bottom)
    torso = [
        (cx - depth, y_shoulder + 1),
        (cx + depth, y_shoulder + 1),
        (cx + depth * 0.95 + f * 0.5, y_top_end),
        (cx - depth * 0.95 + f * 0.5, y_top_end),
    ]
    pen.patterned_polygon(torso, look.top, look.top_pattern, look.pattern, 0.052 * H, 0.3)


def _draw_side_straps(pen: _Pen, look: Look, body: _Body) -> None:
    """A backpack's strap over the shoulder, or a shoulder bag's strap and the bag at the hip."""
    cx, H, f, depth = body.cx, body.height, body.facing, body.depth
    y_shoulder, y_top_end = body.y_shoulder, body.y_top_end
    if look.bag == 1:
        pen.limb(
            (cx - f * depth * 0.3, y_shoulder),
            (cx + f * depth * 0.2, y_shoulder + 0.1 * H),
            2.0,
            2.0,
            look.bag_rgb,
        )
    if look.bag == 2:
        pen.limb(
            (cx - f * depth * 0.6, y_shoulder),
            (cx + f * depth * 0.5, y_top_end - 2),
            1.8,
            1.8,
            _shade(look.bag_rgb, 0.8),
        )
        bx = cx + f * depth * 0.2
        pen.rect(bx - 0.05 * H, y_top_end - 3, bx + 0.05 * H, y_top_end + 0.075 * H, look.bag_rgb)


def _draw_side_head(pen: _Pen, look: Look, body: _Body) -> None:
    """Neck, head, nose, hair and the eye, in profile."""
    cx, f, head_cy, head_rx, head_ry = body.cx, body.facing, body.head_cy, body.head_rx, body.head_ry
    skin, hair = look.skin, look.hair
    pen.rect(cx - head_rx * 0.4, body.y_neck - 2, cx + head_rx * 0.4, body.y_shoulder + 1, _shade(skin, 0.9))
    pen.ellipse(cx, head_cy, head_rx * 0.95, head_ry, skin)
    nose_cx, nose_cy = cx + f * head_rx * 0.9, head_cy + head_ry * 0.15
    pen.ellipse(nose_cx, nose_cy, head_rx * 0.22, head_ry * 0.18, skin)
    if look.hair_style != 2:
        pen.pieslice(
            cx - f * head_rx * 0.1,
            head_cy,
            head_rx * 1.02,
            head_ry * 1.04,
            180 if f > 0 else 270,
            90 if f > 0 else 0,
            hair,
        )
        pen.pieslice(cx, head_cy + 0.3, head_rx * 1.0, head_ry * 1.04, 180, 360, hair)
        pen.ellipse(cx + f * head_rx * 0.45, head_cy + head_ry * 0.1, head_rx * 0.5, head_ry * 0.55, skin)
    else:
        pen.pieslice(cx, head_cy, head_rx, head_ry, 200, 340, hair)
    pen.ellipse(cx + f * head_rx * 0.55, head_cy + head_ry * 0.05, 0.55, 0.55, (30, 25, 25))


# ------------------------------------------------------------------------------------------- details
def _draw_logo(pen: _Pen, logo: int, cx: float, cy: float, size: float, colour) -> None:
    """A chest logo of kind ``logo`` (1 circle, 2 square, 3 triangle, 4 cross) centred at (cx, cy)."""
    if logo == 1:
        pen.ellipse(cx, cy, size, size, colour)
    elif logo == 2:
        pen.rect(cx - size, cy - size, cx + size, cy + size, colour)
    elif logo == 3:
        pen.polygon(
            [(cx, cy - size * 1.1), (cx + size * 1.15, cy + size * 0.9), (cx - size * 1.15, cy + size * 0.9)],
            colour,
        )
    elif logo == 4:
        pen.rect(cx - size, cy - size * 0.32, cx + size, cy + size * 0.32, colour)
        pen.rect(cx - size * 0.32, cy - size, cx + size * 0.32, cy + size, colour)


def _draw_hat(
    pen: _Pen, look: Look, cx: float, cy: float, rx: float, ry: float, *, view: int, facing: float
) -> None:
    """``look``'s hat (if any) on a head centred at (cx, cy) with radii (rx, ry), seen in ``view``."""
    if look.hat == 0:
        return
    colour = look.hat_rgb
    if look.hat == 1:  # cap: dome + brim
        pen.pieslice(cx, cy - ry * 0.05, rx * 1.1, ry * 1.08, 180, 360, colour)
        brim = _shade(colour, 0.8)
        if view == 0:
            pen.ellipse(cx, cy - ry * 0.05, rx * 1.25, ry * 0.2, brim)
        elif view == 2:
            x0, x1 = cx, cx + facing * rx * 1.9
            pen.rect(min(x0, x1), cy - ry * 0.2, max(x0, x1), cy + ry * 0.08, brim)
        else:
            pen.rect(cx - rx * 1.08, cy - ry * 0.15, cx + rx * 1.08, cy + ry * 0.05, brim)
    else:  # beanie: a taller dome with a folded band
        pen.pieslice(cx, cy - ry * 0.2, rx * 1.1, ry * 1.28, 180, 360, colour)
        pen.rect(cx - rx * 1.1, cy - ry * 0.35, cx + rx * 1.1, cy - ry * 0.02, _shade(colour, 0.75))
