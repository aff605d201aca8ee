"""Drawing for the synthetic multi-camera video: one fixed scene per camera and the people composed into it.

A :class:`CameraScene` is a wall and a ground plane seen by a fixed camera, drawn once (in the camera's
:class:`~reidkit.data._synth_draw.CameraStyle` colours) and kept as an array. Perspective is a linear ground
model: a person whose feet are at image row ``y`` is ``scale * (y - vanish)`` pixels tall, so people lower in
the frame are bigger. :func:`compose` draws the people of one frame onto a copy of it, far to near, each
as a small supersampled RGBA sprite (:func:`reidkit.data._synth_body.draw_person`), passes the sprite through
the camera's colour cast and light, and measures what is left visible of each person after occlusion by
nearer people and the frame edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from reidkit.data._synth_body import Look, draw_person
from reidkit.data._synth_draw import CameraStyle
from reidkit.data._synth_pen import SUPERSAMPLE, _jitter, _Pen, _shade

#: sprite extent around the centre line and above the head top, as fractions of the person's height
_HALF_WIDTH = 0.46
_HEAD_ROOM = 0.05
_FOOT_ROOM = 0.04
PAUSE_PROBABILITY = 0.3  # a walker stands still for a while on the way
DETECT_MIN_VISIBILITY = 0.1  # the simulated detector never finds people less visible than this
DETECT_SURE_VISIBILITY = 0.4  # ... and misses people more often the less visible below this they are
FALSE_POSITIVES_PER_FRAME = 0.03
_MIN_DRAWN_HEIGHT = 48.0  # smaller figures are drawn larger, then reduced


@dataclass
class CameraScene:
    """One camera's fixed view.

    Attributes:
        name: camera name (``c1`` ...).
        width: frame width in pixels.
        height: frame height in pixels.
        style: the camera's colours (wall, ground, props) and colour cast.
        wall_base: image row where the wall meets the ground.
        vanish: image row where a person's height would shrink to 0 (above ``wall_base``).
        scale: person height in pixels per pixel of feet row below ``vanish``.
        feet_range: lowest and highest image row people's feet walk on.
        gain: ``[H, 1, 1]`` float32 brightness times the vertical light gradient.
        background: ``[H, W, 3]`` uint8 RGB scene with the colour style applied.
    """

    name: str
    width: int
    height: int
    style: CameraStyle
    wall_base: float
    vanish: float
    scale: float
    feet_range: tuple[float, float]
    gain: np.ndarray
    background: np.ndarray

    def person_height(self, feet: float) -> float:
        """Height in pixels of a person of average height whose feet are at image row ``feet``."""
        return self.scale * (feet - self.vanish)

    def styled(self, rgb: np.ndarray, row0: int) -> np.ndarray:
        """The camera's colour cast and light applied to ``rgb`` ``[h, w, 3]`` whose top row is ``row0``.

        Returns:
            ``[h, w, 3]`` float32, not clipped.
        """
        pixels = rgb.astype(np.float32) @ self.style.colour_matrix.T + self.style.colour_offset
        return pixels * self.gain[row0 : row0 + rgb.shape[0]]


@dataclass(frozen=True)
class Figure:
    """One person to draw in one frame.

    Attributes:
        pid: the person's global id.
        look: the person's appearance.
        cx: centre line (image column, may be outside the frame).
        feet: image row of the feet.
        height: height in pixels, head top to feet.
        view: 0 front, 1 back, 2 side.
        facing: +1 walking to the right, -1 to the left.
        phase: walking phase in radians.
    """

    pid: int
    look: Look
    cx: float
    feet: float
    height: float
    view: int
    facing: float
    phase: float


@dataclass(frozen=True)
class Placed:
    """A person as drawn in one frame: the full box (may extend past the frame) and the visible fraction.

    Attributes:
        pid: the person's global id.
        box: ``(x, y, w, h)`` integer pixels, the tight box of the whole figure.
        visibility: fraction of the figure's pixels that show (not behind a nearer person, inside the frame).
    """

    pid: int
    box: tuple[int, int, int, int]
    visibility: float


def make_scene(name: str, style: CameraStyle, size: tuple[int, int], rng: np.random.Generator) -> CameraScene:
    """Lay out and draw one camera's scene from its style; ``rng`` varies the layout and props."""
    width, height = size
    # the crop generator's horizon (0.55..0.78 of a crop) becomes a wall base at 0.33..0.47 of the frame
    wall_base = height * (0.33 + (style.horizon - 0.55) * 0.6 + rng.uniform(-0.02, 0.02))
    feet_low = wall_base + 0.1 * height
    feet_high = 0.97 * height
    scale = float(rng.uniform(0.8, 0.95))
    # the tallest (nearest) person spans ~0.58..0.68 of the frame height
    nearest = height * float(rng.uniform(0.58, 0.68))
    vanish = feet_high - nearest / scale
    rows = np.linspace(-0.5, 0.5, height, dtype=np.float32)
    gain = (style.brightness * (1.0 + style.light_slope * rows)).astype(np.float32)[:, None, None]
    canvas = Image.new("RGB", (width * SUPERSAMPLE, height * SUPERSAMPLE))
    _draw_backdrop(_Pen(canvas), style, width, height, wall_base, vanish, rng)
    plain = np.asarray(canvas.reduce(SUPERSAMPLE))
    scene = CameraScene(
        name=name,
        width=width,
        height=height,
        style=style,
        wall_base=float(wall_base),
        vanish=float(vanish),
        scale=scale,
        feet_range=(float(feet_low), float(feet_high)),
        gain=gain,
        background=np.zeros((height, width, 3), np.uint8),
    )
    scene.background = np.clip(scene.styled(plain, 0) + 0.5, 0, 255).astype(np.uint8)
    return scene


def _draw_backdrop(
    pen: _Pen,
    style: CameraStyle,
    width: int,
    height: int,
    wall_base: float,
    vanish: float,
    rng: np.random.Generator,
) -> None:
    """Wall (two or three facades in the camera's textures), kerb, ground with perspective lines, far props."""
    unit = height / 180.0  # texture size: a brick row is 7 units at the 180-row test size
    pen.rect(0, 0, width, wall_base, style.wall)
    pen.rect(0, wall_base, width, height, style.ground)
    cuts = sorted(rng.uniform(0.2, 0.8, int(rng.integers(1, 3))) * width)
    edges = [0.0, *cuts, float(width)]
    for i, (x0, x1) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        wall = _jitter(style.wall, 10, rng)
        pen.rect(x0, 0, x1, wall_base, wall)
        _draw_facade(pen, style.texture_kinds[i % 2], x0, x1, wall_base, wall, style.texture, unit, rng)
        pen.rect(x1 - unit, 0, x1, wall_base, _shade(wall, 0.7))
    pen.rect(0, wall_base - 2.5 * unit, width, wall_base, _shade(style.wall, 0.65))  # kerb
    dark = _shade(style.ground, 0.82)
    y, gap = wall_base + 4 * unit, 5.0 * unit
    while y < height:  # paving rows, wider apart nearer the camera
        pen.rect(0, y, width, y + max(1.0, 0.6 * unit), dark)
        gap *= 1.3
        y += gap
    if style.ground_lines:
        centre = width * rng.uniform(0.3, 0.7)
        for k in range(-8, 9):  # paving joints converging to the vanishing row
            top = (centre + k * 0.05 * width, wall_base)
            spread = (wall_base - vanish) or 1.0
            bottom = (centre + k * 0.05 * width * (height - vanish) / spread, height)
            pen.limb(top, bottom, 0.6 * unit, 1.2 * unit, dark, round_end=False)
    people_scale = 0.8 * (wall_base - vanish)
    for _ in range(int(rng.integers(2, 5))):  # bins, poles and planters standing against the wall
        x = rng.uniform(0, width)
        kind = int(rng.integers(0, 3))
        if kind == 0:
            pen.rect(x, wall_base - 1.4 * people_scale, x + 1.5 * unit, wall_base, style.pole)
        elif kind == 1:
            pen.rect(
                x, wall_base - 0.5 * people_scale, x + 0.35 * people_scale, wall_base, _shade(style.pole, 0.6)
            )
        else:
            pen.rect(x, wall_base - 0.3 * people_scale, x + 1.2 * people_scale, wall_base, style.car)
            pen.ellipse(
                x + 0.6 * people_scale,
                wall_base - 0.45 * people_scale,
                0.5 * people_scale,
                0.25 * people_scale,
                _jitter((60, 120, 60), 20, rng),
            )


def _draw_facade(
    pen: _Pen, kind: int, x0: float, x1: float, base: float, wall, texture, unit: float, rng
) -> None:
    """One facade between columns ``x0`` and ``x1``: 0 bricks, 1 windows, 2 panels, 3 foliage, 4 shop front."""
    texture = _jitter(texture, 8, rng)
    if kind == 0:
        row, y, r = 7 * unit, 0.0, 0
        while y < base:
            pen.rect(x0, y, x1, min(base, y + 0.8 * unit), texture)
            x = x0 + (r % 2) * 7 * unit
            while x < x1:
                pen.rect(x, y, x + 0.8 * unit, min(base, y + row), texture)
                x += 14 * unit
            y += row
            r += 1
    elif kind == 1:
        x = x0 + rng.uniform(2, 10) * unit
        while x + 16 * unit < x1:
            y = 8 * unit
            while y + 20 * unit < base - 4 * unit:
                pen.rect(x, y, x + 16 * unit, y + 20 * unit, texture)
                pen.rect(x + 7.5 * unit, y, x + 8.5 * unit, y + 20 * unit, wall)
                y += 30 * unit
            x += 28 * unit
    elif kind == 2:
        x, i = x0, 0
        while x < x1:
            pen.rect(x, 0, min(x1, x + 12 * unit), base, texture if i % 2 else wall)
            x += 12 * unit
            i += 1
    elif kind == 3:
        for _ in range(max(3, int((x1 - x0) / (12 * unit)))):
            r = rng.uniform(6, 16) * unit
            pen.ellipse(
                rng.uniform(x0, x1), rng.uniform(0.2, 0.9) * base, r, r * 0.8, _jitter(texture, 18, rng)
            )
    else:
        pen.rect(x0, base * 0.1, x1, base * 0.22, _jitter(texture, 30, rng))  # sign
        x = x0 + rng.uniform(0.1, 0.4) * (x1 - x0)
        door = min(40 * unit, 0.5 * (x1 - x0))
        pen.rect(x, base * 0.3, x + door, base, texture)
        pen.rect(x + 3 * unit, base * 0.34, x + door - 3 * unit, base - 2 * unit, _shade(texture, 0.6))


def _sprite(figure: Figure) -> tuple[int, int, np.ndarray]:
    """Draw one figure alone: ``(left, top, rgba)`` with ``rgba`` ``[h, w, 4]`` uint8 at frame resolution.

    Small figures are drawn ``zoom`` times larger and reduced by that much more: the body's shape sizes (stripe
    and check widths among them) are meant for figures of at least :data:`_MIN_DRAWN_HEIGHT` units.
    """
    size = figure.height
    left = math.floor(figure.cx - _HALF_WIDTH * size) - 1
    top = math.floor(figure.feet - size * (1 + _HEAD_ROOM)) - 1
    width = math.ceil(figure.cx + _HALF_WIDTH * size) + 1 - left
    height = math.ceil(figure.feet + _FOOT_ROOM * size) + 2 - top
    zoom = max(1, math.ceil(_MIN_DRAWN_HEIGHT / size))
    canvas = Image.new("RGBA", (width * zoom * SUPERSAMPLE, height * zoom * SUPERSAMPLE), (0, 0, 0, 0))
    draw_person(
        _Pen(canvas),
        figure.look,
        cx=(figure.cx - left) * zoom,
        top=(figure.feet - size - top) * zoom,
        height=size * zoom,
        view=figure.view,
        facing=figure.facing,
        phase=figure.phase,
    )
    return left, top, np.asarray(canvas.reduce(zoom * SUPERSAMPLE))


def compose(scene: CameraScene, figures: list[Figure]) -> tuple[np.ndarray, list[Placed]]:
    """Draw ``figures`` far to near (by feet row) onto the camera's background.

    Returns:
        ``(frame, placed)``: the ``[H, W, 3]`` uint8 RGB frame, and one :class:`Placed` per figure whose box
        overlaps the frame (in drawing order; visibility may be 0 when nearer people hide it completely).
    """
    frame = scene.background.astype(np.float32)
    owner = np.full((scene.height, scene.width), -1, np.int32)
    drawn: list[tuple[int, tuple[int, int, int, int], int]] = []
    for figure in sorted(figures, key=lambda f: (f.feet, f.pid)):
        left, top, rgba = _sprite(figure)
        mask = rgba[..., 3] >= 128
        total = int(mask.sum())
        if total == 0:
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (
            left + int(cols[0]),
            top + int(rows[0]),
            int(cols[-1] - cols[0] + 1),
            int(rows[-1] - rows[0] + 1),
        )
        if box[0] >= scene.width or box[0] + box[2] <= 0 or box[1] >= scene.height or box[1] + box[3] <= 0:
            continue
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + rgba.shape[1], scene.width), min(top + rgba.shape[0], scene.height)
        if x0 < x1 and y0 < y1:
            part = rgba[y0 - top : y1 - top, x0 - left : x1 - left]
            alpha = part[..., 3:4].astype(np.float32) * (1.0 / 255.0)
            region = frame[y0:y1, x0:x1]
            region += (scene.styled(part[..., :3], y0) - region) * alpha
            owner[y0:y1, x0:x1][mask[y0 - top : y1 - top, x0 - left : x1 - left]] = len(drawn)
        drawn.append((figure.pid, box, total))
    shown = np.bincount(owner.ravel() + 1, minlength=len(drawn) + 1)[1:]
    placed = [
        Placed(pid, box, float(count) / total) for (pid, box, total), count in zip(drawn, shown, strict=True)
    ]
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), placed


# ------------------------------------------------------------------------------------------- walking
@dataclass(frozen=True)
class Walk:
    """One pass of a person across a camera, frame by frame.

    Attributes:
        frames: ``[N]`` int64 consecutive frame numbers (may start <= 0: walking before the first frame).
        track: ``[N, 4]`` float64 rows ``cx, feet row, height, walking phase``.
        view: 0 front (walking towards the camera), 1 back (away), 2 side.
        facing: +1 walking to the right, -1 to the left.
    """

    frames: np.ndarray
    track: np.ndarray
    view: int
    facing: float


def walk_across(
    scene: CameraScene, rng: np.random.Generator, *, start: int, direction: float, fps: float, size: float
) -> Walk:
    """Walk across ``scene`` from outside the edge on the ``-direction`` side to outside the other edge.

    The feet row changes linearly with the progress across (a level walk or, 30 % of the time, a diagonal
    towards or away from the camera); the speed is 0.55..0.85 body heights per second, so people far away
    move fewer pixels per frame; some people stand still for 1..4 s on the way.

    Args:
        start: frame number of the first step.
        direction: +1 left to right, -1 right to left.
        fps: frames per second.
        size: the person's height relative to an average person.
    """
    low, high = scene.feet_range
    feet0 = rng.uniform(low, high)
    if rng.random() < 0.3:
        feet1 = feet0 + rng.choice((-1.0, 1.0)) * rng.uniform(0.4, 0.8) * (high - low)
    else:
        feet1 = feet0 + rng.normal(0.0, 0.08) * (high - low)
    feet1 = float(np.clip(feet1, low, high))
    margin = _HALF_WIDTH * size * scene.person_height(max(feet0, feet1)) + 2
    x_from, x_to = (-margin, scene.width + margin) if direction > 0 else (scene.width + margin, -margin)
    span = abs(x_to - x_from)
    slope = (feet1 - feet0) / span
    view = 2 if abs(slope) < 0.1 else (0 if slope > 0 else 1)
    speed = rng.uniform(0.55, 0.85) * (0.8 if view != 2 else 1.0)
    pause_at = rng.uniform(0.25, 0.75) if rng.random() < PAUSE_PROBABILITY else 2.0
    pause = int(round(rng.uniform(1.0, 4.0) * fps))
    progress, phase = 0.0, rng.uniform(0, 2 * math.pi)
    rows = []
    while progress <= 1.0:
        feet = feet0 + (feet1 - feet0) * progress
        height = scene.person_height(feet) * size
        rows.append((x_from + (x_to - x_from) * progress, feet, height, phase))
        if progress >= pause_at and pause > 0:
            phase = round(phase / math.pi) * math.pi  # standing: legs together
            pause -= 1
            continue
        step = speed * height / fps  # pixels
        progress += step / span
        phase += 2 * math.pi * step / (0.8 * height)  # one stride cycle per 0.8 body heights
    frames = np.arange(start, start + len(rows), dtype=np.int64)
    return Walk(frames, np.asarray(rows, dtype=np.float64), view, float(direction))


# ------------------------------------------------------------------------------------------- detections
def simulate_detections(
    scene: CameraScene, gt: list[tuple[int, Placed]], length: int, rng: np.random.Generator
) -> list[str]:
    """``det.txt`` lines simulated from the ground truth of one camera, in frame order.

    A person is found with probability 0.97 when at least :data:`DETECT_SURE_VISIBILITY` of them shows, less
    (linearly) down to 0 at :data:`DETECT_MIN_VISIBILITY`; the box is jittered by a few percent and clipped to
    the frame, the score grows with visibility. About :data:`FALSE_POSITIVES_PER_FRAME` person-sized boxes
    per frame have no person (lower scores).

    Args:
        gt: ``(frame, placed)`` ground-truth rows of the camera.
        length: number of frames.
    """
    by_frame: dict[int, list[Placed]] = {}
    for frame, placed in gt:
        by_frame.setdefault(frame, []).append(placed)
    lines = []
    for frame in range(1, length + 1):
        boxes = []
        for placed in by_frame.get(frame, []):
            visibility = placed.visibility
            if visibility < DETECT_MIN_VISIBILITY:
                continue
            hit = 0.97 * min(
                1.0, (visibility - DETECT_MIN_VISIBILITY) / (DETECT_SURE_VISIBILITY - DETECT_MIN_VISIBILITY)
            )
            if rng.random() >= hit:
                continue
            x, y, w, h = placed.box
            cx, cy = x + w / 2 + rng.normal(0, 0.03) * w, y + h / 2 + rng.normal(0, 0.02) * h
            w, h = w * math.exp(rng.normal(0, 0.03)), h * math.exp(rng.normal(0, 0.03))
            score = float(np.clip(0.5 + 0.45 * visibility + rng.normal(0, 0.07), 0.01, 1.0))
            boxes.append((cx - w / 2, cy - h / 2, w, h, score))
        for _ in range(int(rng.poisson(FALSE_POSITIVES_PER_FRAME))):
            feet = rng.uniform(*scene.feet_range)
            h = scene.person_height(feet) * rng.uniform(0.5, 1.1)
            w = h * rng.uniform(0.3, 0.5)
            boxes.append(
                (rng.uniform(-0.2 * w, scene.width - 0.8 * w), feet - h, w, h, float(rng.uniform(0.1, 0.55)))
            )
        for x, y, w, h, score in boxes:
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(scene.width), x + w), min(float(scene.height), y + h)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                lines.append(
                    f"{frame},-1,{x0:.2f},{y0:.2f},{x1 - x0:.2f},{y1 - y0:.2f},{score:.3f},-1,-1,-1\n"
                )
    return lines
