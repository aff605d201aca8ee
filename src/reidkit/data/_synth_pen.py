"""Drawing primitives for the synthetic pedestrian generator: a supersampled Pillow pen and colour helpers.

Shapes are given in logical canvas units and drawn :data:`SUPERSAMPLE` times larger, so that reducing the canvas
to the final image smooths their edges.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 2


def _jitter(rgb: tuple[int, int, int], amount: float, rng: np.random.Generator) -> tuple[int, int, int]:
    noise = rng.normal(0.0, amount, 3).tolist()
    return tuple(int(min(255.0, max(0.0, c + n))) for c, n in zip(rgb, noise, strict=True))


def _shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * factor))) for c in rgb)


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
                draw.rectangle((0, y, size[0], y + max(thick - 1, 0)), fill=colour)
                y += step
        else:
            thick = max(1.0, step * 0.28)
            y = -phase * step
            while y < size[1]:
                draw.rectangle((0, y, size[0], y + max(thick - 1, 0)), fill=colour)
                y += step
            x = (size[0] / 2) % step - step
            while x < size[0]:
                draw.rectangle((x, 0, x + max(thick - 1, 0), size[1]), fill=colour)
                x += step
        self.image.paste(tile, (x0, y0), mask)


class _TeePen:
    """Draws every shape with ``pen`` and, in white, with ``mask`` (a pen on an ``"L"`` image of the same
    size): the mask then shows what was drawn through this pen."""

    def __init__(self, pen: _Pen, mask: _Pen) -> None:
        self.pen, self.mask = pen, mask

    def polygon(self, points, fill) -> None:
        self.pen.polygon(points, fill)
        self.mask.polygon(points, 255)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill) -> None:
        self.pen.ellipse(cx, cy, rx, ry, fill)
        self.mask.ellipse(cx, cy, rx, ry, 255)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill) -> None:
        self.pen.rect(x0, y0, x1, y1, fill)
        self.mask.rect(x0, y0, x1, y1, 255)

    def pieslice(self, cx, cy, rx, ry, start, end, fill) -> None:
        self.pen.pieslice(cx, cy, rx, ry, start, end, fill)
        self.mask.pieslice(cx, cy, rx, ry, start, end, 255)

    def limb(self, p0, p1, w0: float, w1: float, fill, round_end: bool = True) -> None:
        self.pen.limb(p0, p1, w0, w1, fill, round_end)
        self.mask.limb(p0, p1, w0, w1, 255, round_end)

    def patterned_polygon(self, points, base, pattern: int, colour, period: float, phase: float) -> None:
        self.pen.patterned_polygon(points, base, pattern, colour, period, phase)
        self.mask.polygon(points, 255)
