"""Drawing for the synthetic pedestrian generator: scenes, people, occluders and camera nuisances.

Everything here is a pure function of its arguments and of the ``numpy.random.Generator`` it is given, so an
image depends only on (seed, identity, camera, image index) and never on the process that draws it. People are
drawn with Pillow polygons on a canvas supersampled :data:`SUPERSAMPLE` times, cropped by a (possibly wrong)
detector box and reduced to 128 x 64, then passed through the camera's colour cast, resolution, blur and noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HEIGHT, WIDTH = 128, 64
SUPERSAMPLE = 2
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


# ------------------------------------------------------------------------------------------- records
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
    texture_kinds: tuple[int, int]  # two of: 0 bricks, 1 windows, 2 panels, 3 foliage, 4 shop front
    horizon: float  # fraction of the canvas height where the wall meets the ground
    ground_lines: bool
    pole: tuple[int, int, int]
    car: tuple[int, int, int]
    light_slope: float
    scene_mix: float


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


def _jitter(rgb: tuple[int, int, int], amount: float, rng: np.random.Generator) -> tuple[int, int, int]:
    noise = rng.normal(0.0, amount, 3).tolist()
    return tuple(int(min(255.0, max(0.0, c + n))) for c, n in zip(rgb, noise, strict=True))


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in rgb)


# ------------------------------------------------------------------------------------------- camera
def make_camera(rng: np.random.Generator, level: Nuisance) -> CameraStyle:
    """Draw one camera's style; ``level`` scales the strength of its nuisances."""
    view_probs = rng.dirichlet((1.2, 1.2, 1.2))
    view_probs = 0.15 + 0.55 * view_probs  # every view happens in every camera, some more often
    view_probs = view_probs / view_probs.sum()
    cast = level.cast
    gains = np.exp(cast * rng.normal(0.0, 1.0, 3))
    mix = cast * 0.45 * rng.normal(0.0, 1.0, (3, 3))
    np.fill_diagonal(mix, 0.0)
    matrix = np.diag(gains) + mix
    matrix /= max(1e-3, matrix.sum(axis=1).mean())  # keep the overall level; the cast is in the ratios
    offset = cast * 45.0 * rng.normal(0.0, 1.0, 3)
    brightness = float(np.exp(level.brightness * rng.normal(0.0, 1.0)))
    blur_low = level.blur[0] + (level.blur[1] - level.blur[0]) * rng.uniform(0.0, 0.6)
    blur = (blur_low, blur_low + (level.blur[1] - level.blur[0]) * 0.4)
    down_high = level.downscale[1]
    down_low = level.downscale[0] + (level.downscale[1] - level.downscale[0]) * rng.uniform(0.0, 0.6)
    # scenes are mostly unsaturated (concrete, asphalt, glass) with a mild tint of the camera's place
    tint = rng.normal(0.0, level.scene_tint, 3)
    wall = tuple(int(v) for v in np.clip(rng.uniform(70, 200) + tint + rng.normal(0, 6, 3), 0, 255))
    ground = tuple(int(v) for v in np.clip(rng.uniform(60, 170) + 0.6 * tint + rng.normal(0, 6, 3), 0, 255))
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
        noise=level.noise * float(rng.uniform(0.6, 1.4)),
        downscale=(down_low, down_high),
        wall=wall,
        ground=ground,
        texture=texture,
        texture_kinds=tuple(int(k) for k in rng.choice(5, 2, replace=False)),
        horizon=float(rng.uniform(0.55, 0.78)),
        ground_lines=bool(rng.random() < 0.5),
        pole=tuple(int(v) for v in rng.integers(60, 200) + rng.integers(-15, 16, 3)),
        car=CLOTHING_COLOURS[int(rng.integers(0, len(CLOTHING_COLOURS)))][1],
        light_slope=float(rng.uniform(-0.25, 0.25)),
        scene_mix=level.scene_mix,
    )


# ------------------------------------------------------------------------------------------- pen
class _Pen:
    """Pillow drawing in logical canvas coordinates (scaled by :data:`SUPERSAMPLE`)."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)

    def polygon(self, points, fill) -> None:
        self.draw.polygon([(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points], fill=fill)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill) -> None:
        s = SUPERSAMPLE
        self.draw.ellipse(((cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s), fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill) -> None:
        s = SUPERSAMPLE
        x0, x1 = min(x0, x1), max(x0, x1)
        y0, y1 = min(y0, y1), max(y0, y1)
        self.draw.rectangle((x0 * s, y0 * s, max(x0 * s, x1 * s - 1), max(y0 * s, y1 * s - 1)), fill=fill)

    def pieslice(self, cx, cy, rx, ry, start, end, fill) -> None:
        s = SUPERSAMPLE
        self.draw.pieslice(
            ((cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s), start, end, fill=fill
        )

    def limb(self, p0, p1, w0: float, w1: float, fill, round_end: bool = True) -> None:
        """A tapered segment from p0 (width w0) to p1 (width w1), with rounded joints."""
        (x0, y0), (x1, y1) = p0, p1
        dx, dy = x1 - x0, y1 - y0
        length = math.hypot(dx, dy) or 1e-6
        nx, ny = -dy / length, dx / length
        self.polygon(
            [
                (x0 + nx * w0 / 2, y0 + ny * w0 / 2),
                (x1 + nx * w1 / 2, y1 + ny * w1 / 2),
                (x1 - nx * w1 / 2, y1 - ny * w1 / 2),
                (x0 - nx * w0 / 2, y0 - ny * w0 / 2),
            ],
            fill,
        )
        self.ellipse(x0, y0, w0 / 2, w0 / 2, fill)
        if round_end:
            self.ellipse(x1, y1, w1 / 2, w1 / 2, fill)

    def patterned_polygon(self, points, base, pattern: int, colour, period: float, phase: float) -> None:
        """Fill a polygon with ``base`` plus horizontal stripes (1) or checks (2) in ``colour``."""
        if pattern == 0:
            self.polygon(points, base)
            return
        s = SUPERSAMPLE
        xs = [x * s for x, _ in points]
        ys = [y * s for _, y in points]
        x0, y0 = int(math.floor(min(xs))), int(math.floor(min(ys)))
        x1, y1 = int(math.ceil(max(xs))) + 1, int(math.ceil(max(ys))) + 1
        size = (max(1, x1 - x0), max(1, y1 - y0))
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in zip(xs, ys, strict=True)], fill=255)
        tile = Image.new("RGB", size, base)
        draw = ImageDraw.Draw(tile)
        step = period * s
        if pattern == 1:
            thick = step * 0.45
            y = -phase * step
            while y < size[1]:
                draw.rectangle((0, y, size[0], y + thick - 1), fill=colour)
                y += step
        else:
            thick = max(1.0, step * 0.28)
            y = -phase * step
            while y < size[1]:
                draw.rectangle((0, y, size[0], y + thick - 1), fill=colour)
                y += step
            x = (size[0] / 2) % step - step
            while x < size[0]:
                draw.rectangle((x, 0, x + thick - 1, size[1]), fill=colour)
                x += step
        self.image.paste(tile, (x0, y0), mask)


# ------------------------------------------------------------------------------------------- scene
def draw_background(pen: _Pen, camera: CameraStyle, rng: np.random.Generator) -> None:
    """Wall + ground in the camera's style, with per-image variation (offsets, clutter, light)."""
    horizon = CANVAS_H * (camera.horizon + rng.uniform(-0.04, 0.04))
    mix = camera.scene_mix
    wall = np.asarray(camera.wall, dtype=np.float64)
    ground = np.asarray(camera.ground, dtype=np.float64)
    texture = np.asarray(camera.texture, dtype=np.float64)
    wall = (1 - mix) * wall + mix * (rng.uniform(70, 200) + rng.normal(0, 12, 3))
    ground = (1 - mix) * ground + mix * (rng.uniform(60, 170) + rng.normal(0, 10, 3))
    texture = (1 - mix) * texture + mix * (wall + rng.choice((-1, 1)) * rng.uniform(25, 60))
    wall, ground, texture = (_jitter(tuple(c), 6, rng) for c in (wall, ground, texture))
    pen.rect(0, 0, CANVAS_W, horizon, wall)
    pen.rect(0, horizon, CANVAS_W, CANVAS_H, ground)
    offset_x = rng.uniform(0, 40)
    if rng.random() < mix:
        kind = int(rng.integers(0, 5))
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
    else:  # shop front: a door and a sign
        x = rng.uniform(-10, CANVAS_W - 30)
        pen.rect(x, horizon * 0.25, x + 34, horizon, texture)
        pen.rect(x + 3, horizon * 0.3, x + 31, horizon - 2, _shade(texture, 0.6))
        pen.rect(0, horizon * 0.08, CANVAS_W, horizon * 0.18, _jitter(texture, 30, rng))
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


def draw_occluder(
    pen: _Pen, camera: CameraStyle, rng: np.random.Generator, other: Callable[[], Look] | None
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


# ------------------------------------------------------------------------------------------- person
def draw_person(
    pen: _Pen, look: Look, *, cx: float, top: float, height: float, view: int, facing: float, phase: float
) -> None:
    """Draw a pedestrian whose head top is at ``top`` and feet at ``top + height``.

    Args:
        view: 0 front, 1 back, 2 side.
        facing: +1 walking to the right, -1 to the left (side view only).
        phase: walking phase in radians (legs and arms swing with it).
    """
    H = height
    head_ry = H * (0.067 - 0.004 * look.height)
    head_rx = head_ry * 0.8
    head_cy = top + head_ry
    y_neck = top + 2 * head_ry - 1
    y_shoulder = top + 2 * head_ry + 0.025 * H
    leg_fraction = 0.455 + 0.02 * look.height
    y_hip = top + H * (1 - leg_fraction)
    y_ankle = top + H * 0.962
    shoulder = H * (0.098 + 0.022 * look.build) * look.width_scale  # half width
    hip = shoulder * (0.8 if look.bottom_type != 2 else 0.84)
    arm_w = H * (0.046 + 0.006 * look.build)
    leg_w = H * (0.056 + 0.008 * look.build)
    swing = math.sin(phase)
    skin, hair = look.skin, look.hair
    y_top_end = y_hip + 0.025 * H
    knee_fraction = 0.42
    leg_len = y_ankle - y_hip
    if view == 2:
        body = _Body(
            cx=cx,
            height=H,
            facing=facing,
            swing=swing,
            head_cy=head_cy,
            head_rx=head_rx,
            head_ry=head_ry,
            y_neck=y_neck,
            y_shoulder=y_shoulder,
            y_hip=y_hip,
            y_top_end=y_top_end,
            shoulder=shoulder,
            arm_w=arm_w,
            leg_w=leg_w,
            leg_len=leg_len,
        )
        _draw_side(pen, look, body)
        return
    front = view == 0
    # long hair behind the shoulders (front view) / backpack seen from the front peeks out at the sides
    if look.hair_style == 1 and front:
        pen.rect(cx - head_rx * 1.08, head_cy, cx + head_rx * 1.08, y_shoulder + 0.07 * H, hair)
    if look.bag == 1 and front:
        pen.rect(
            cx - shoulder * 1.08,
            y_shoulder + 3,
            cx + shoulder * 1.08,
            y_shoulder + 0.2 * H,
            _shade(look.bag_rgb, 0.8),
        )
    # legs
    for side in (-1.0, 1.0):
        lift = 0.025 * H * max(0.0, side * swing)
        hip_x = cx + side * hip * 0.5
        ankle = (cx + side * hip * 0.55, y_ankle - lift)
        knee = (hip_x + side * 0.5, y_hip + leg_len * knee_fraction - lift * 0.5)
        if look.bottom_type == 0:
            pen.limb((hip_x, y_hip), ankle, leg_w * 1.05, leg_w * 0.85, look.bottom)
        else:
            pen.limb((hip_x, y_hip), ankle, leg_w * 0.85, leg_w * 0.65, skin)
            if look.bottom_type == 1:
                pen.limb((hip_x, y_hip), knee, leg_w * 1.12, leg_w * 1.05, look.bottom, round_end=False)
        shoe_y = ankle[1] + 0.018 * H
        pen.ellipse(ankle[0], shoe_y, leg_w * 0.62, 0.022 * H, look.shoes)
    if look.bottom_type == 2:
        y_hem = y_hip + leg_len * 0.4
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
    # arms (outside the torso) and hands
    for side in (-1.0, 1.0):
        shoulder_pt = (cx + side * (shoulder - arm_w * 0.35), y_shoulder + arm_w * 0.45)
        reach = 0.30 * H * (1 - 0.12 * abs(swing))
        hand = (cx + side * (shoulder + arm_w * 0.15), shoulder_pt[1] + reach)
        elbow = ((shoulder_pt[0] + hand[0]) / 2 + side * 0.6, (shoulder_pt[1] + hand[1]) / 2)
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
    # torso
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
        pen.pieslice(cx, y_shoulder - 0.5, shoulder * 0.3, 0.03 * H, 0, 180, skin)
    # bags
    if look.bag == 1:
        if front:
            for side in (-1.0, 1.0):
                x = cx + side * shoulder * 0.55
                pen.limb(
                    (x, y_shoulder), (x + side * 0.5, y_shoulder + torso_h * 0.45), 2.2, 2.2, look.bag_rgb
                )
        else:
            pack_top = y_shoulder + 0.01 * H
            pen.rect(
                cx - shoulder * 0.78, pack_top, cx + shoulder * 0.78, pack_top + torso_h * 0.7, look.bag_rgb
            )
            pen.rect(
                cx - shoulder * 0.5,
                pack_top + torso_h * 0.42,
                cx + shoulder * 0.5,
                pack_top + torso_h * 0.66,
                _shade(look.bag_rgb, 0.7),
            )
    elif look.bag == 2:
        strap_side = 1.0 if front else -1.0
        pen.limb(
            (cx - strap_side * shoulder * 0.7, y_shoulder),
            (cx + strap_side * hip * 0.95, y_top_end - 2),
            1.8,
            1.8,
            _shade(look.bag_rgb, 0.8),
        )
        bx = cx + strap_side * hip * 1.05
        pen.rect(bx - 0.055 * H, y_top_end - 3, bx + 0.055 * H, y_top_end + 0.075 * H, look.bag_rgb)
    # neck + head
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
    _draw_hat(pen, look, cx, head_cy, head_rx, head_ry, view=view, facing=0.0)


@dataclass
class _Body:
    """Landmarks of a person being drawn (logical canvas units)."""

    cx: float
    height: float
    facing: float
    swing: float
    head_cy: float
    head_rx: float
    head_ry: float
    y_neck: float
    y_shoulder: float
    y_hip: float
    y_top_end: float
    shoulder: float
    arm_w: float
    leg_w: float
    leg_len: float


def _draw_side(pen: _Pen, look: Look, body: _Body) -> None:
    """Side view (profile), walking towards ``body.facing``."""
    cx, H, f, swing = body.cx, body.height, body.facing, body.swing
    skin, hair = look.skin, look.hair
    head_cy, head_rx, head_ry = body.head_cy, body.head_rx, body.head_ry
    y_shoulder, y_hip, y_top_end = body.y_shoulder, body.y_hip, body.y_top_end
    depth = body.shoulder * 0.62
    arm_w, leg_w, leg_len = body.arm_w, body.leg_w, body.leg_len
    leg_angle = 0.36 * swing
    arm_angle = -0.45 * swing
    far_shade = 0.72

    def leg(angle: float, shade: float) -> None:
        hip_pt = (cx, y_hip + 0.01 * H)
        ankle = (cx + math.sin(angle) * leg_len, hip_pt[1] + math.cos(angle) * leg_len * 0.98)
        knee = (
            cx + math.sin(angle) * leg_len * 0.45 + (f * 1.5 if angle * f < 0 else 0),
            hip_pt[1] + math.cos(angle) * leg_len * 0.45,
        )
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

    def arm(angle: float, shade: float) -> None:
        sh = (cx + f * depth * 0.1, y_shoulder + arm_w * 0.5)
        reach = 0.30 * H
        hand = (sh[0] + math.sin(angle) * reach * f * 1.0, sh[1] + math.cos(angle) * reach)
        top_colour = _shade(look.top, shade)
        if look.sleeves == 1:
            pen.limb(sh, hand, arm_w, arm_w * 0.85, top_colour)
        else:
            pen.limb(sh, hand, arm_w * 0.8, arm_w * 0.7, _shade(skin, shade))
            mid = (sh[0] + (hand[0] - sh[0]) * 0.33, sh[1] + (hand[1] - sh[1]) * 0.33)
            pen.limb(sh, mid, arm_w * 1.1, arm_w * 1.05, top_colour, round_end=False)
        pen.ellipse(hand[0], hand[1] + arm_w * 0.3, arm_w * 0.5, arm_w * 0.6, _shade(skin, shade))

    if look.hair_style == 1:
        pen.rect(cx - f * head_rx * 1.05, head_cy, cx - f * head_rx * 0.1, y_shoulder + 0.08 * H, hair)
    arm(-arm_angle, far_shade)
    leg(-leg_angle, far_shade)
    if look.bag == 1:
        pack_top = y_shoulder + 0.01 * H
        back = cx - f * depth
        pen.rect(
            min(back, back - f * 0.11 * H),
            pack_top,
            max(back, back - f * 0.11 * H),
            pack_top + (y_top_end - y_shoulder) * 0.68,
            look.bag_rgb,
        )
    leg(leg_angle, 1.0)
    if look.bottom_type == 2:
        y_hem = y_hip + leg_len * 0.4
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
    if look.bag == 1:  # strap over the shoulder
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
    arm(arm_angle, 1.0)
    # neck + head in profile
    pen.rect(cx - head_rx * 0.4, body.y_neck - 2, cx + head_rx * 0.4, y_shoulder + 1, _shade(skin, 0.9))
    pen.ellipse(cx, head_cy, head_rx * 0.95, head_ry, skin)
    pen.ellipse(
        cx + f * head_rx * 0.9, head_cy + head_ry * 0.15, head_rx * 0.22, head_ry * 0.18, skin
    )  # nose
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
    _draw_hat(pen, look, cx, head_cy, head_rx, head_ry, view=2, facing=f)


def _draw_logo(pen: _Pen, logo: int, cx: float, cy: float, size: float, colour) -> None:
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


def _draw_hat(pen: _Pen, look: Look, cx, cy, rx, ry, *, view: int, facing: float) -> None:
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


# ------------------------------------------------------------------------------------------- image
def render(
    look: Look,
    camera: CameraStyle,
    level: Nuisance,
    rng: np.random.Generator,
    other: Callable[[], Look] | None = None,
) -> Image.Image:
    """One 128 x 64 RGB image of ``look`` seen by ``camera`` (all randomness from ``rng``)."""
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
    draw_person(pen, look, cx=cx, top=top, height=person_height, view=view, facing=facing, phase=phase)
    if rng.random() < level.occlusion:
        draw_occluder(pen, camera, rng, other)
    image = canvas.resize((WIDTH, HEIGHT), Image.BILINEAR, box=_detector_box(level, rng))
    # camera: resolution, blur
    low, high = camera.downscale
    factor = rng.uniform(low, high)
    if factor < 0.97:
        small = (max(8, round(WIDTH * factor)), max(16, round(HEIGHT * factor)))
        image = image.resize(small, Image.BILINEAR).resize((WIDTH, HEIGHT), Image.BILINEAR)
    radius = rng.uniform(*camera.blur)
    if radius > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    # camera: colour cast, brightness and a light gradient, sensor noise
    pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3) @ camera.colour_matrix.T
    pixels = (pixels + camera.colour_offset).reshape(HEIGHT, WIDTH, 3)
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
