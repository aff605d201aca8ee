"""Drawing one synthetic tracklet: a pedestrian walking through a camera, frame by frame.

What stays fixed over a tracklet (:class:`Walk`: view, facing, size, position, detector box offset and scale,
the camera's resolution factor, blur and light, the background) is drawn once from the tracklet's
``numpy.random.Generator``; then every frame advances the walking phase, moves the detector box by a smooth
random walk, draws its own sensor noise and, inside the tracklet's event run, a passer-by walking across in
front of the target or a box cut by the frame edge. The fraction of the target still visible is measured on a
mask drawn alongside (the target in white, what hides it in black, the crop box around it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from reidkit.data import _synth_draw as draw
from reidkit.data._synth_pen import SUPERSAMPLE, _Pen, _shade

_COLOURS = ("skin", "hair", "top", "pattern", "logo_rgb", "bottom", "shoes", "bag_rgb", "hat_rgb")
_MASK_LEVEL = 60  # mask pixels above this belong to the figure (its eyes, a fixed dark colour, do not)
PASSER_STRIDE = 10.0  # frames per stride cycle of a passer-by
PASSER_REACH = 0.35  # a passer-by crosses from this fraction of the crop width on one side to the other


def _flat(look: draw.Look, value: int) -> draw.Look:
    """``look`` in one grey level (masks: 255 for the target, 0 for what hides it)."""
    return dataclasses.replace(look, **{name: (value, value, value) for name in _COLOURS})


@dataclass
class Walk:
    """What stays fixed over one tracklet, and its event's run of frames ``[first, last]`` (0-based)."""

    view: int  # 0 front, 1 back, 2 side
    facing: float
    phase: float  # walking phase of the first frame (radians)
    step: float  # phase advance per frame
    height: float  # person height, canvas units
    top: float
    cx: float
    box: tuple[float, float, float, float]  # scale, aspect, x offset, y offset of the detector box
    camera: tuple[float, float, float]  # resolution factor, blur radius, light
    first: int = -1
    last: int = -2
    side: int = 0  # edge: 0 left, 1 right, 2 bottom; passer-by: -1 / +1 (the side it comes from)
    cut: tuple[float, float] = (0.0, 0.0)  # edge: the largest and smallest cut, fractions of the figure
    entering: bool = True  # edge: the run is at the start (entering) or at the end (leaving)
    passer: draw.Look | None = None
    passer_size: tuple[float, float] = (0.0, 0.0)  # height, top

    def occluded(self, t: int) -> bool:
        return self.first <= t <= self.last


def make_walk(
    camera: draw.CameraStyle,
    level: draw.Nuisance,
    rng: np.random.Generator,
    *,
    length: int,
    event: str,
    passer: draw.Look | None,
) -> Walk:
    """Draw what stays fixed over a tracklet of ``length`` frames and place its event (``""``, ``"passer_by"``
    or ``"edge"``) in it."""
    height = draw.HEIGHT * rng.uniform(0.88, 0.94)
    walk = Walk(
        view=int(rng.choice(3, p=camera.view_probs)),
        facing=float(rng.choice((-1.0, 1.0))),
        phase=float(rng.uniform(0, 2 * math.pi)),
        step=2 * math.pi / float(rng.uniform(8.0, 16.0)),  # one stride cycle every 8..16 frames
        height=height,
        top=draw.MARGIN_Y + (draw.HEIGHT - height) * rng.uniform(0.3, 0.7),
        cx=draw.MARGIN_X + draw.WIDTH / 2 + rng.uniform(-1.5, 1.5),
        box=(
            float(rng.uniform(*level.scale)),
            float(np.exp(rng.normal(0, 0.04))),
            float(rng.normal(0, level.shift) * draw.WIDTH),
            float(rng.normal(0, level.shift * 0.6) * draw.HEIGHT),
        ),
        camera=(
            float(rng.uniform(*camera.downscale)),
            float(rng.uniform(*camera.blur)),
            camera.brightness * float(np.exp(level.image_light * rng.normal())),
        ),
    )
    if event == "passer_by":
        if passer is None:
            raise ValueError("make_walk: a passer_by event needs the passer's look")
        run = max(1, round(length * rng.uniform(0.3, 0.6)))
        walk.first = int(rng.integers(0, length - run + 1))
        walk.side = int(rng.choice((-1, 1)))
        walk.passer = passer
        size = height * rng.uniform(1.0, 1.08)  # nearer the camera: bigger, feet lower
        walk.passer_size = (size, walk.top + height - size + rng.uniform(1.0, 5.0))
    elif event == "edge":
        run = max(1, round(length * rng.uniform(0.25, 0.5)))
        walk.entering = bool(rng.random() < 0.5)
        walk.first = 0 if walk.entering else length - run
        walk.side = int(rng.choice(3, p=(0.4, 0.4, 0.2)))
        # the smallest bottom cut is deeper: the lower legs are thin, cutting them hides little of the figure
        smallest = rng.uniform(0.25, 0.32) if walk.side == 2 else rng.uniform(0.12, 0.2)
        walk.cut = (float(rng.uniform(0.4, 0.6)), float(smallest))
    elif event:
        raise ValueError(f"make_walk: unknown event {event!r}")
    if event:
        walk.last = walk.first + run - 1
    return walk


def crop_box(walk: Walk, jitter: np.ndarray) -> tuple[float, float, float, float]:
    """The detector box ``(x0, y0, x1, y1)`` in canvas units: the tracklet's box moved by ``jitter`` ``[3]``
    (centre x, centre y, log scale)."""
    scale, aspect, dx, dy = walk.box
    scale *= math.exp(float(jitter[2]))
    width = min(draw.WIDTH * scale * aspect, draw.CANVAS_W)
    height = min(draw.HEIGHT * scale, draw.CANVAS_H)
    cx = draw.MARGIN_X + draw.WIDTH / 2 + dx + float(jitter[0])
    cy = draw.MARGIN_Y + draw.HEIGHT / 2 + dy + float(jitter[1])
    x0 = min(max(0.0, cx - width / 2), draw.CANVAS_W - width)
    y0 = min(max(0.0, cy - height / 2), draw.CANVAS_H - height)
    x1, y1 = x0 + width, y0 + height
    return x0, y0, x1, y1


def _cut(walk: Walk, box, figure: np.ndarray, t: int) -> tuple[float, float, float, float]:
    """``box`` cut by the frame edge in frame ``t`` of an edge run: the edge crosses the figure (``figure``:
    its mask ``[H, W]`` on the supersampled canvas), the farther in, the farther from the fully visible frames."""
    x0, y0, x1, y1 = box
    run = walk.last - walk.first + 1
    k = (walk.last - t) if walk.entering else (t - walk.first)  # 0 next to the fully visible frames
    largest, smallest = walk.cut
    cut = smallest + (largest - smallest) * (k / (run - 1) if run > 1 else 1.0)
    columns, rows = np.flatnonzero(figure.any(axis=0)), np.flatnonzero(figure.any(axis=1))
    left, right = columns[0] / SUPERSAMPLE, (columns[-1] + 1) / SUPERSAMPLE
    feet, head = (rows[-1] + 1) / SUPERSAMPLE, rows[0] / SUPERSAMPLE
    if walk.side == 0:
        x0 = max(x0, left + cut * (right - left))
    elif walk.side == 1:
        x1 = min(x1, right - cut * (right - left))
    else:  # the feet are below the frame: the box loses some width too
        height = y1 - y0
        y1 = min(y1, feet - cut * (feet - head))
        shrink = (x1 - x0) * (1 - math.sqrt((y1 - y0) / height)) / 2
        x0, x1 = x0 + shrink, x1 - shrink
    return x0, y0, x1, y1


def draw_frame(
    look: draw.Look, walk: Walk, background: Image.Image, box: tuple[float, float, float, float], t: int
) -> tuple[Image.Image, float]:
    """Frame ``t`` (0-based) before the camera's imaging, 128 x 64 RGB, and the visible fraction of the target.

    The target is drawn twice, on the canvas and in white on a mask; the passer-by (when in front at ``t``)
    on both, in black on the mask, so the mask's white pixels inside ``box`` are what remains visible.
    """
    canvas = background.copy()
    pen, mask = _Pen(canvas), Image.new("RGB", canvas.size)
    mask_pen = _Pen(mask)
    where = dict(cx=walk.cx, top=walk.top, height=walk.height, view=walk.view, facing=walk.facing)
    phase = walk.phase + walk.step * t
    draw.draw_person(pen, look, phase=phase, **where)
    draw.draw_person(mask_pen, _flat(look, 255), phase=phase, **where)
    figure = np.asarray(mask.getchannel(0)) > _MASK_LEVEL
    if walk.cut[0] and walk.occluded(t):
        box = _cut(walk, box, figure, t)
    if walk.passer is not None and walk.occluded(t):
        run = walk.last - walk.first + 1
        offset = walk.side * draw.WIDTH * PASSER_REACH * (1 - 2 * (t - walk.first + 0.5) / run)
        size, top = walk.passer_size
        other = dict(cx=walk.cx + offset, top=top, height=size, view=2, facing=float(-walk.side))
        other_phase = 2 * math.pi * t / PASSER_STRIDE
        draw.draw_person(pen, walk.passer, phase=other_phase, **other)
        draw.draw_person(mask_pen, _flat(walk.passer, 0), phase=other_phase, **other)
    s = SUPERSAMPLE
    x0, y0, x1, y1 = (v * s for v in box)
    shown = np.asarray(mask.getchannel(0))[int(y0) : math.ceil(y1), int(x0) : math.ceil(x1)]
    visible = int(np.count_nonzero(shown > _MASK_LEVEL)) / max(1, int(np.count_nonzero(figure)))
    image = canvas.resize((draw.WIDTH, draw.HEIGHT), Image.BILINEAR, box=(x0, y0, x1, y1))
    return image, visible


def draw_tracklet(
    look: draw.Look,
    camera: draw.CameraStyle,
    level: draw.Nuisance,
    rng: np.random.Generator,
    *,
    length: int,
    event: str,
    passer: draw.Look | None = None,
) -> Iterator[tuple[Image.Image, float, int]]:
    """The frames of one tracklet: ``(128 x 64 RGB image, visible fraction, occluded 0/1)`` in order, all
    randomness from ``rng`` (see :func:`make_walk` for ``event`` and ``passer``)."""
    walk = make_walk(camera, level, rng, length=length, event=event, passer=passer)
    background = Image.new("RGB", (draw.CANVAS_W * SUPERSAMPLE, draw.CANVAS_H * SUPERSAMPLE))
    pen = _Pen(background)
    draw.draw_background(pen, camera, rng)
    shadow = _shade(camera.ground, 0.6)
    pen.ellipse(walk.cx + rng.uniform(-3, 3), walk.top + walk.height, draw.WIDTH * 0.32, 3.0, shadow)
    factor, radius, light = walk.camera
    jitter = np.zeros(3)
    for t in range(length):
        # a smooth random walk of the box: centre x, centre y (canvas units), log scale
        jitter = 0.6 * jitter + rng.normal(0.0, 1.0, 3) * (0.012 * draw.WIDTH, 0.008 * draw.HEIGHT, 0.01)
        image, visible = draw_frame(look, walk, background, crop_box(walk, jitter), t)
        light_t = light * float(np.exp(rng.normal(0.0, 0.01)))
        image = draw.apply_camera(image, camera, level, rng, factor=factor, radius=radius, light=light_t)
        yield image, visible, int(walk.occluded(t))
