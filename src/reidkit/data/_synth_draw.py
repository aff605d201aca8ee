"""Drawing for the synthetic pedestrian generator: palettes, cameras, scenes, occluders and the final image.

Everything here is a pure function of its arguments and of the ``numpy.random.Generator`` it is given, so an
image depends only on (seed, identity, camera, image index) and never on the process that draws it. People
(:mod:`reidkit.data._synth_body`) are drawn with Pillow polygons on a canvas supersampled :data:`SUPERSAMPLE`
times (:mod:`reidkit.data._synth_pen`), cropped by a (possibly wrong) detector box and reduced to 128 x 64, then
passed through the camera's colour cast, resolution, blur and noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from reidkit.data._synth_body import Look, draw_person, person_keypoints
from reidkit.data._synth_domains import DEFAULT_DOMAIN, Domain
from reidkit.data._synth_pen import SUPERSAMPLE, _jitter, _Pen, _shade, _TeePen

HEIGHT, WIDTH = 128, 64
MARGIN_X, MARGIN_Y = 24, 30
CANVAS_W, CANVAS_H = WIDTH + 2 * MARGIN_X, HEIGHT + 2 * MARGIN_Y

# ------------------------------------------------------------------------------------------- palettes
CLOTHING_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("black", (34, 34, 38)),
    ("white", (226, 226, 220)),
    ("grey", (128, 128, 132)),
    ("red", (184, 34, 40)),
    ("blue", (46, 86, 180)),
    ("navy", (30, 40, 88)),
    ("green", (48, 134, 66)),
    ("yellow", (228, 196, 50)),
    ("orange", (230, 124, 38)),
    ("purple", (114, 58, 148)),
    ("pink", (232, 148, 180)),
    ("brown", (112, 74, 44)),
    ("beige", (204, 186, 144)),
    ("teal", (34, 144, 152)),
)
SKIN_TONES = (
    ("light", (240, 206, 182)),
    ("fair", (222, 180, 148)),
    ("medium", (192, 142, 102)),
    ("tan", (152, 104, 70)),
    ("dark", (100, 68, 48)),
)
HAIR_COLOURS = (
    ("black", (26, 22, 20)),
    ("dark_brown", (62, 42, 28)),
    ("brown", (112, 74, 42)),
    ("blonde", (212, 180, 112)),
    ("grey", (164, 164, 160)),
    ("auburn", (132, 54, 32)),
)
#: clothing-palette indices allowed for shoes (black, white, grey, red, blue, brown)
SHOE_CHOICES = (0, 1, 2, 3, 4, 11)

VIEWS = ("front", "back", "side")
_MID_GREY = np.float32(128.0)  # the level that a camera's contrast pulls pixel values towards


# ------------------------------------------------------------------------------------------- records
@dataclass
class CameraStyle:
    """Per-camera appearance: viewpoint habits, scene and imaging nuisances (strength set by difficulty)."""

    view_probs: tuple[float, float, float]
    colour_matrix: np.ndarray  # [3, 3] applied to RGB
    colour_offset: np.ndarray  # [3]
    brightness: float
    blur: tuple[float, float]
    noise: float
    downscale: tuple[float, float]
    wall: tuple[int, int, int]
    ground: tuple[int, int, int]
    texture: tuple[int, int, int]
    texture_kinds: tuple[int, int]  # two of: 0 bricks, 1 windows, 2 panels, 3 foliage, 4 shop front, 5 tiles
    horizon: float  # fraction of the canvas height where the wall meets the ground
    ground_lines: bool
    pole: tuple[int, int, int]
    car: tuple[int, int, int]
    light_slope: float
    scene_mix: float
    contrast: float = 1.0  # pixel values pulled towards mid-grey by this factor
    floor_tiles: bool = False  # a tiled floor instead of plain ground
    site: Domain = DEFAULT_DOMAIN  # the domain the camera belongs to (scene colours and textures of the site)


@dataclass
class Nuisance:
    """Difficulty-dependent strengths."""

    cast: float
    brightness: float
    blur: tuple[float, float]
    noise: float
    downscale: tuple[float, float]
    group_size: int
    shift: float
    scale: tuple[float, float]
    partial: float
    occlusion: float
    image_light: float
    scene_tint: float = 12.0  # how much the cameras' scenes differ in colour
    scene_mix: float = 0.5  # 0: a camera always shows the same scene; 1: every image a random scene


# ------------------------------------------------------------------------------------------- camera
def make_camera(rng: np.random.Generator, level: Nuisance, domain: Domain = DEFAULT_DOMAIN) -> CameraStyle:
    """Draw one camera's style; ``level`` scales the strength of its nuisances, ``domain`` sets the site's
    light, colours, scenes and imaging (the default domain draws exactly what this always drew)."""
    view_probs = rng.dirichlet((1.2, 1.2, 1.2))
    view_probs = 0.15 + 0.55 * view_probs  # every view happens in every camera, some more often
    view_probs = view_probs / view_probs.sum()
    cast = level.cast * domain.cast
    gains = np.exp(cast * rng.normal(0.0, 1.0, 3))
    mix = cast * 0.45 * rng.normal(0.0, 1.0, (3, 3))
    np.fill_diagonal(mix, 0.0)
    matrix = np.diag(gains) + mix
    matrix /= max(1e-3, matrix.sum(axis=1).mean())  # keep the overall level; the cast is in the ratios
    if domain.light_colour != (1.0, 1.0, 1.0):
        matrix = np.diag(domain.light_colour) @ matrix  # the colour of the site's light
    offset = cast * 45.0 * rng.normal(0.0, 1.0, 3)
    brightness = domain.brightness * float(
        np.exp(level.brightness * domain.light_spread * rng.normal(0.0, 1.0))
    )
    blur_range = (level.blur[0] + domain.blur, level.blur[1] + domain.blur)
    blur_low = blur_range[0] + (blur_range[1] - blur_range[0]) * rng.uniform(0.0, 0.6)
    blur = (blur_low, blur_low + (blur_range[1] - blur_range[0]) * 0.4)
    down_range = (level.downscale[0] * domain.resolution, level.downscale[1] * domain.resolution)
    down_high = down_range[1]
    down_low = down_range[0] + (down_range[1] - down_range[0]) * rng.uniform(0.0, 0.6)
    # scenes are mostly unsaturated (concrete, asphalt, glass) with a mild tint of the camera's place
    tint = rng.normal(0.0, level.scene_tint * domain.scene_tint, 3)
    site = np.asarray(domain.scene_colour, dtype=np.float64)
    wall = tuple(
        int(v) for v in np.clip(rng.uniform(*domain.wall) + tint + site + rng.normal(0, 6, 3), 0, 255)
    )
    ground = tuple(
        int(v) for v in np.clip(rng.uniform(*domain.ground) + 0.6 * tint + site + rng.normal(0, 6, 3), 0, 255)
    )
    texture = tuple(
        int(v)
        for v in np.clip(
            np.asarray(wall) + rng.choice((-1, 1)) * rng.uniform(25, 60) + rng.normal(0, 10, 3), 0, 255
        )
    )
    return CameraStyle(
        view_probs=tuple(float(p) for p in view_probs),
        colour_matrix=matrix.astype(np.float32),
        colour_offset=offset.astype(np.float32),
        brightness=brightness,
        blur=blur,
        noise=level.noise * domain.noise * float(rng.uniform(0.6, 1.4)),
        downscale=(down_low, down_high),
        wall=wall,
        ground=ground,
        texture=texture,
        texture_kinds=tuple(
            domain.textures[int(k)] for k in rng.choice(len(domain.textures), 2, replace=False)
        ),
        horizon=float(rng.uniform(0.55, 0.78)),
        ground_lines=bool(rng.random() < 0.5),
        pole=tuple(int(v) for v in rng.integers(60, 200) + rng.integers(-15, 16, 3)),
        car=CLOTHING_COLOURS[int(rng.integers(0, len(CLOTHING_COLOURS)))][1],
        light_slope=float(rng.uniform(-0.25, 0.25)),
        scene_mix=level.scene_mix,
        contrast=domain.contrast,
        floor_tiles=bool(rng.random() < domain.tiled_floor) if domain.tiled_floor > 0 else False,
        site=domain,
    )


# ------------------------------------------------------------------------------------------- scene
def draw_background(pen: _Pen, camera: CameraStyle, rng: np.random.Generator) -> None:
    """Wall + ground in the camera's style, with per-image variation (offsets, clutter, light)."""
    horizon = CANVAS_H * (camera.horizon + rng.uniform(-0.04, 0.04))
    mix, site = camera.scene_mix, camera.site
    wall = np.asarray(camera.wall, dtype=np.float64)
    ground = np.asarray(camera.ground, dtype=np.float64)
    texture = np.asarray(camera.texture, dtype=np.float64)
    colour = np.asarray(site.scene_colour, dtype=np.float64)
    wall = (1 - mix) * wall + mix * (rng.uniform(*site.wall) + colour + rng.normal(0, 12, 3))
    ground = (1 - mix) * ground + mix * (rng.uniform(*site.ground) + colour + rng.normal(0, 10, 3))
    texture = (1 - mix) * texture + mix * (wall + rng.choice((-1, 1)) * rng.uniform(25, 60))
    wall, ground, texture = (_jitter(tuple(c), 6, rng) for c in (wall, ground, texture))
    pen.rect(0, 0, CANVAS_W, horizon, wall)
    pen.rect(0, horizon, CANVAS_W, CANVAS_H, ground)
    offset_x = rng.uniform(0, 40)
    if rng.random() < mix:
        kind = site.textures[int(rng.integers(0, len(site.textures)))]
    else:
        kind = camera.texture_kinds[int(rng.random() < 0.35)]  # the camera sees two kinds of scene
    if kind == 0:  # bricks
        row = 7.0
        y, r = 0.0, 0
        while y < horizon:
            pen.rect(0, y, CANVAS_W, min(horizon, y + 1), texture)
            shift = (offset_x + (r % 2) * 7) % 14
            x = -shift
            while x < CANVAS_W:
                pen.rect(x, y, x + 1, min(horizon, y + row), texture)
                x += 14
            y += row
            r += 1
    elif kind == 1:  # windows
        x = -offset_x
        while x < CANVAS_W:
            y = 8 + rng.uniform(-2, 2)
            while y + 20 < horizon:
                pen.rect(x, y, x + 16, y + 20, texture)
                pen.rect(x + 7.5, y, x + 8.5, y + 20, wall)
                y += 30
            x += 28
    elif kind == 2:  # panels
        x = -offset_x
        width = 9
        i = 0
        while x < CANVAS_W:
            pen.rect(x, 0, x + width, horizon, texture if i % 2 else wall)
            x += width
            i += 1
    elif kind == 3:  # foliage
        for _ in range(14):
            cx, cy = rng.uniform(0, CANVAS_W), rng.uniform(0, horizon)
            r = rng.uniform(5, 14)
            pen.ellipse(cx, cy, r, r * 0.8, _jitter(texture, 18, rng))
    elif kind == 4:  # shop front: a door and a sign
        x = rng.uniform(-10, CANVAS_W - 30)
        pen.rect(x, horizon * 0.25, x + 34, horizon, texture)
        pen.rect(x + 3, horizon * 0.3, x + 31, horizon - 2, _shade(texture, 0.6))
        pen.rect(0, horizon * 0.08, CANVAS_W, horizon * 0.18, _jitter(texture, 30, rng))
    else:  # tiles: a grid of square tiles
        _draw_grid(pen, 0.0, horizon, rng.uniform(0, 10), 10.0, texture)
    if camera.floor_tiles:
        _draw_floor_tiles(pen, horizon, ground, rng)
    if camera.ground_lines:
        y = horizon + 6
        gap = 6.0
        while y < CANVAS_H:
            pen.rect(0, y, CANVAS_W, y + 1, _shade(ground, 0.8))
            gap *= 1.25
            y += gap
    for _ in range(int(rng.integers(0, 3))):  # clutter: bins, signs, passers-by far away
        x = rng.uniform(-10, CANVAS_W)
        w, h = rng.uniform(6, 20), rng.uniform(8, 30)
        base = horizon + rng.uniform(-5, 20)
        colour = CLOTHING_COLOURS[int(rng.integers(0, len(CLOTHING_COLOURS)))][1]
        pen.rect(x, base - h, x + w, base, _jitter(colour, 20, rng))


def _draw_grid(pen: _Pen, y0: float, y1: float, offset: float, size: float, colour) -> None:
    """One-unit lines every ``size`` units between rows ``y0`` and ``y1`` (a tiled wall)."""
    y = y0
    while y < y1:
        pen.rect(0, y, CANVAS_W, min(y1, y + 1), colour)
        y += size
    x = -offset
    while x < CANVAS_W:
        pen.rect(x, y0, x + 1, y1, colour)
        x += size


def _draw_floor_tiles(pen: _Pen, horizon: float, ground, rng: np.random.Generator) -> None:
    """A checkerboard floor below ``horizon``: rows and tiles wider nearer the camera, every other tile darker."""
    dark = _shade(ground, float(rng.uniform(0.72, 0.86)))
    y, depth, row = horizon, 4.0, 0
    shift = rng.uniform(0, 1)
    while y < CANVAS_H:
        width = depth * 2.2
        x, i = -(shift + row % 2) * width, 0
        while x < CANVAS_W:
            if i % 2:
                pen.rect(x, y, x + width, min(CANVAS_H, y + depth), dark)
            x += width
            i += 1
        y += depth
        depth *= 1.3
        row += 1


def draw_occluder(
    pen: _Pen | _TeePen, camera: CameraStyle, rng: np.random.Generator, other: Callable[[], Look] | None
) -> None:
    """A pole, a car or part of another person in front of the target (inside the nominal box)."""
    kind = int(rng.integers(0, 3))
    left, top = MARGIN_X, MARGIN_Y
    if kind == 0:  # pole / sign post
        width = rng.uniform(4.5, 8.0)
        side = rng.choice((-1.0, 1.0))
        x = left + WIDTH / 2 + side * rng.uniform(8, 22) - width / 2
        pen.rect(x, 0, x + width, CANVAS_H, _jitter(camera.pole, 10, rng))
        pen.rect(x + width * 0.65, 0, x + width, CANVAS_H, _shade(camera.pole, 0.75))
    elif kind == 1:  # a parked car or a bench covering the legs
        height = HEIGHT * rng.uniform(0.25, 0.42)
        y0 = top + HEIGHT - height + rng.uniform(0, 6)
        x0 = left + rng.uniform(-40, -5) if rng.random() < 0.5 else left + rng.uniform(10, 30)
        width = rng.uniform(55, 90)
        body = _jitter(camera.car, 12, rng)
        pen.rect(x0, y0, x0 + width, CANVAS_H, body)
        pen.rect(x0 + 4, y0 + 3, x0 + width - 4, y0 + height * 0.3, _shade(body, 0.55))
        pen.ellipse(x0 + 14, top + HEIGHT + 2, 8, 8, (25, 25, 25))
        pen.ellipse(x0 + width - 14, top + HEIGHT + 2, 8, 8, (25, 25, 25))
    elif other is not None:  # another pedestrian half in front
        side = rng.choice((-1.0, 1.0))
        cx = left + WIDTH / 2 + side * WIDTH * rng.uniform(0.45, 0.65)
        size = HEIGHT * rng.uniform(0.9, 1.0)
        draw_person(
            pen,
            other(),
            cx=cx,
            top=top + HEIGHT * 0.04,
            height=size,
            view=int(rng.integers(0, 3)),
            facing=float(-side),
            phase=rng.uniform(0, 2 * math.pi),
        )


# ------------------------------------------------------------------------------------------- image
def render(
    look: Look,
    camera: CameraStyle,
    level: Nuisance,
    rng: np.random.Generator,
    other: Callable[[], Look] | None = None,
) -> tuple[Image.Image, np.ndarray]:
    """One 128 x 64 RGB image of ``look`` seen by ``camera`` (all randomness from ``rng``) and the COCO-17
    ``[17, 3]`` float32 keypoints of ``look`` in the image's pixels (:func:`image_keypoints`)."""
    canvas = Image.new("RGB", (CANVAS_W * SUPERSAMPLE, CANVAS_H * SUPERSAMPLE))
    pen = _Pen(canvas)
    draw_background(pen, camera, rng)
    view = int(rng.choice(3, p=camera.view_probs))
    facing = float(rng.choice((-1.0, 1.0)))
    phase = float(rng.uniform(0, 2 * math.pi))
    person_height = HEIGHT * rng.uniform(0.88, 0.94)
    top = MARGIN_Y + (HEIGHT - person_height) * rng.uniform(0.3, 0.7)
    cx = MARGIN_X + WIDTH / 2 + rng.uniform(-1.5, 1.5)
    # ground shadow
    pen.ellipse(cx + rng.uniform(-3, 3), top + person_height, WIDTH * 0.32, 3.0, _shade(camera.ground, 0.6))
    where = dict(cx=cx, top=top, height=person_height, view=view, facing=facing, phase=phase)
    draw_person(pen, look, **where)
    cover = None
    if rng.random() < level.occlusion:
        cover = Image.new("L", canvas.size)  # what the occluder covers
        draw_occluder(_TeePen(pen, _Pen(cover)), camera, rng, other)
    box = _detector_box(level, rng)
    image = canvas.resize((WIDTH, HEIGHT), Image.BILINEAR, box=box)
    points = image_keypoints(person_keypoints(look, **where), box, cover)
    return apply_camera(image, camera, level, rng), points


def image_keypoints(
    points: np.ndarray, box: tuple[float, float, float, float], cover: Image.Image | None
) -> np.ndarray:
    """Keypoints in logical canvas units -> pixels of the image cut from the canvas by ``box`` (supersampled
    canvas pixels) and reduced to ``HEIGHT x WIDTH``.

    A joint becomes invisible (visibility 0) when it lies outside the crop, or on a pixel of ``cover`` (an
    ``"L"`` image of the supersampled canvas; non-zero where an occluder was drawn).
    """
    s = SUPERSAMPLE
    out = np.array(points, dtype=np.float32)
    x = np.asarray(points[:, 0], dtype=np.float64) * s
    y = np.asarray(points[:, 1], dtype=np.float64) * s
    if cover is not None:
        covered = np.asarray(cover) > 0
        rows = np.clip(np.floor(y).astype(np.int64), 0, covered.shape[0] - 1)
        columns = np.clip(np.floor(x).astype(np.int64), 0, covered.shape[1] - 1)
        out[covered[rows, columns], 2] = 0.0
    x0, y0, x1, y1 = box
    out[:, 0] = (x - x0) * (WIDTH / (x1 - x0))
    out[:, 1] = (y - y0) * (HEIGHT / (y1 - y0))
    outside = (out[:, 0] < 0) | (out[:, 0] > WIDTH) | (out[:, 1] < 0) | (out[:, 1] > HEIGHT)
    out[outside, 2] = 0.0
    return out


def apply_camera(
    image: Image.Image,
    camera: CameraStyle,
    level: Nuisance,
    rng: np.random.Generator,
    *,
    factor: float | None = None,
    radius: float | None = None,
    light: float | None = None,
) -> Image.Image:
    """The camera's imaging on a 128 x 64 crop: resolution, blur, colour cast, brightness, light gradient, noise.

    Args:
        factor: resolution factor (below 0.97 the crop is reduced and enlarged again); drawn from
            ``camera.downscale`` when None.
        radius: Gaussian blur radius; drawn from ``camera.blur`` when None.
        light: overall brightness multiplier; ``camera.brightness`` times a random per-image light when None.
            Fixed values keep these the same from frame to frame of a tracklet; the noise is always drawn.
    """
    # camera: resolution, blur
    if factor is None:
        low, high = camera.downscale
        factor = rng.uniform(low, high)
    if factor < 0.97:
        small = (max(8, round(WIDTH * factor)), max(16, round(HEIGHT * factor)))
        image = image.resize(small, Image.BILINEAR).resize((WIDTH, HEIGHT), Image.BILINEAR)
    if radius is None:
        radius = rng.uniform(*camera.blur)
    if radius > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    # camera: colour cast, brightness and a light gradient, sensor noise
    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3) @ camera.colour_matrix.T
    pixels = (pixels + camera.colour_offset).reshape(HEIGHT, WIDTH, 3)
    if camera.contrast != 1.0:
        pixels = _MID_GREY + camera.contrast * (pixels - _MID_GREY)
    if light is None:
        light = camera.brightness * float(np.exp(level.image_light * rng.normal()))
    gradient = 1.0 + camera.light_slope * np.linspace(-0.5, 0.5, HEIGHT, dtype=np.float32)[:, None, None]
    pixels *= light * gradient
    if camera.noise > 0:
        pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * camera.noise
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def _detector_box(level: Nuisance, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """The crop box (supersampled canvas pixels): the nominal box moved and scaled like a detector's."""
    scale = rng.uniform(*level.scale)
    width = WIDTH * scale * float(np.exp(rng.normal(0, 0.04)))
    height = HEIGHT * scale
    cx = MARGIN_X + WIDTH / 2 + rng.normal(0, level.shift) * WIDTH
    cy = MARGIN_Y + HEIGHT / 2 + rng.normal(0, level.shift * 0.6) * HEIGHT
    if rng.random() < level.partial:
        if rng.random() < 0.6:  # the legs are cut off
            keep = rng.uniform(0.55, 0.8)
            top = cy - height / 2
            height *= keep
            width *= math.sqrt(keep)
            cy = top + height / 2
        else:  # half the body is outside the box
            cx += rng.choice((-1.0, 1.0)) * WIDTH * rng.uniform(0.22, 0.32)
    width = min(width, CANVAS_W)
    height = min(height, CANVAS_H)
    x0 = min(max(0.0, cx - width / 2), CANVAS_W - width)
    y0 = min(max(0.0, cy - height / 2), CANVAS_H - height)
    s = SUPERSAMPLE
    return (x0 * s, y0 * s, (x0 + width) * s, (y0 + height) * s)
