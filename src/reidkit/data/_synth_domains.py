"""Sites for the synthetic pedestrian generator: named domains that change the statistics of a whole data set.

Real ReID data sets differ by site (Market-1501's summer campus, DukeMTMC-reID's winter campus, a shopping mall
at night), so a model trained on one drops on another. A :class:`Domain` is such a site: the colours its people
wear (a weighting of the clothing palette), the family and colours of its backgrounds, its light (brightness,
contrast, the colour of the light, how much the cameras' colour casts differ), its imaging (resolution, blur,
noise) and its usual number of cameras. ``"default"`` is the generator as it always was: with it every draw is
the same as before, so its output keeps its bytes; every other domain also draws its own people, cameras and
layout (the domain's name enters every random stream, see :func:`stream_seed`).

This module is pure data (no drawing): :mod:`reidkit.data._synth_draw` reads a domain when it makes a camera and
draws a background, :mod:`reidkit.data.synth` when it dresses the identities.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from reidkit.errors import ConfigError

#: the wall texture kinds of :func:`reidkit.data._synth_draw.draw_background`
TEXTURES = ("bricks", "windows", "panels", "foliage", "shop_front", "tiles")
_TAG_DOMAIN = 300  # apart from the stream tags of synth (1..7), synth_video (101..) and synth_tracklets (201..)


@dataclass(frozen=True)
class Domain:
    """One site's statistics. The defaults are those of the ``"default"`` domain (the original generator).

    Attributes:
        name: the domain's name (``--domain``).
        description: one line for ``--help`` and the README.
        cams: cameras when ``generate`` is not given a number.
        palette: ``(colour name, weight)`` pairs over :data:`reidkit.data._synth_draw.CLOTHING_COLOURS`: how
            often a group's top, bottom, bag and hat take each colour (colours not named get weight 0); empty:
            uniform, drawn as the default generator draws them.
        shades: ``(colour name, RGB)`` pairs: the site's own shade of a clothing colour (the fashion of the
            place: pastel, muted, fluorescent); colours not named keep their shade.
        wall: range of the grey level of the walls.
        ground: range of the grey level of the ground.
        scene_colour: RGB offset added to every wall and ground colour (the site's materials).
        textures: wall texture kinds (indices into :data:`TEXTURES`, >= 2 of them) the cameras see.
        tiled_floor: probability that a camera's floor is tiled (0: never, as the default generator).
        brightness: the site's light, a multiplier of every pixel.
        contrast: pixel values are pulled towards mid-grey by this factor (1: unchanged).
        light_colour: RGB gains of the site's light (warm lamps, cold daylight).
        light_spread: multiplier of the difficulty's spread of brightness between cameras.
        scene_tint: multiplier of the difficulty's spread of scene colours between cameras.
        cast: multiplier of the difficulty's per-camera colour cast (how much the cameras differ in colour).
        resolution: multiplier of the difficulty's resolution factors (below ~0.97 a crop is reduced and
            enlarged again).
        blur: added to the difficulty's blur radii (pixels).
        noise: multiplier of the difficulty's sensor noise.
    """

    name: str
    description: str
    cams: int = 6
    palette: tuple[tuple[str, float], ...] = ()
    shades: tuple[tuple[str, tuple[int, int, int]], ...] = ()
    wall: tuple[float, float] = (70.0, 200.0)
    ground: tuple[float, float] = (60.0, 170.0)
    scene_colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    textures: tuple[int, ...] = (0, 1, 2, 3, 4)
    tiled_floor: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    light_colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    light_spread: float = 1.0
    scene_tint: float = 1.0
    cast: float = 1.0
    resolution: float = 1.0
    blur: float = 0.0
    noise: float = 1.0

    @property
    def is_default(self) -> bool:
        """True for the original generator (its random streams and draws are kept as they were)."""
        return self.name == "default"

    def palette_weights(self, names: tuple[str, ...]) -> list[float] | None:
        """Normalised weights of ``names`` (the clothing colours, in palette order); None for uniform."""
        if not self.palette:
            return None
        weights = dict(self.palette)
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ConfigError(f"domain {self.name!r}: palette names unknown colours {unknown}; known: {names}")
        values = [float(weights.get(name, 0.0)) for name in names]
        total = sum(values)
        return [value / total for value in values]

    def clothing(
        self, colours: tuple[tuple[str, tuple[int, int, int]], ...]
    ) -> list[tuple[int, int, int]]:
        """The RGB of each of ``colours`` (``(name, RGB)`` pairs) as this site's people wear it."""
        shades = dict(self.shades)
        unknown = sorted(set(shades) - {name for name, _ in colours})
        if unknown:
            raise ConfigError(f"domain {self.name!r}: shades name unknown colours {unknown}")
        return [tuple(shades.get(name, rgb)) for name, rgb in colours]


DOMAINS: dict[str, Domain] = {
    domain.name: domain
    for domain in (
        Domain(name="default", description="the original generator: campus streets, mixed scenes, 6 cameras"),
        Domain(
            name="mall",
            description="indoor mall: warm lamps, bright walls, shop fronts and tiles, tiled floors, bright "
            "clothes, low resolution and blur, 4 cameras",
            cams=4,
            palette=(
                ("white", 3.0),
                ("red", 3.0),
                ("yellow", 2.5),
                ("orange", 2.5),
                ("pink", 3.0),
                ("purple", 2.0),
                ("teal", 2.0),
                ("beige", 2.0),
                ("green", 1.0),
                ("blue", 1.0),
                ("black", 0.5),
            ),
            shades=(  # fashion: light, saturated shades
                ("white", (242, 236, 224)),
                ("red", (224, 58, 96)),
                ("yellow", (248, 222, 88)),
                ("orange", (248, 150, 70)),
                ("pink", (248, 168, 204)),
                ("purple", (164, 100, 204)),
                ("teal", (58, 192, 182)),
                ("beige", (228, 206, 168)),
                ("green", (112, 192, 88)),
                ("blue", (72, 142, 224)),
                ("black", (62, 56, 66)),
            ),
            wall=(165.0, 225.0),
            ground=(150.0, 205.0),
            scene_colour=(16.0, 6.0, -14.0),
            textures=(4, 5, 2),
            tiled_floor=1.0,
            brightness=1.06,
            contrast=0.85,
            light_colour=(1.2, 1.0, 0.74),
            light_spread=2.5,
            scene_tint=2.0,
            cast=0.6,
            resolution=0.55,
            blur=0.6,
            noise=1.2,
        ),
        Domain(
            name="street",
            description="outdoor street in daylight: dark winter clothes, brick, windows and foliage, dark "
            "asphalt, strong per-camera colour casts, 8 cameras",
            cams=8,
            palette=(
                ("black", 4.0),
                ("navy", 3.5),
                ("grey", 3.0),
                ("brown", 2.5),
                ("white", 1.5),
                ("blue", 1.5),
                ("green", 1.0),
                ("beige", 1.0),
                ("red", 0.5),
            ),
            shades=(  # muted winter shades
                ("black", (28, 28, 30)),
                ("navy", (34, 42, 70)),
                ("grey", (108, 110, 114)),
                ("brown", (90, 66, 46)),
                ("white", (198, 198, 194)),
                ("blue", (60, 84, 130)),
                ("green", (64, 94, 60)),
                ("beige", (168, 154, 122)),
                ("red", (138, 40, 42)),
            ),
            wall=(90.0, 190.0),
            ground=(40.0, 90.0),
            scene_colour=(-6.0, 2.0, 10.0),
            textures=(0, 1, 3),
            cast=2.2,
            light_colour=(0.94, 1.0, 1.1),
            noise=1.3,
        ),
        Domain(
            name="night",
            description="a site at night: dark, low contrast, orange street lamps, heavy sensor noise, 3 cameras",
            cams=3,
            palette=(
                ("black", 2.0),
                ("grey", 2.0),
                ("white", 2.0),
                ("navy", 1.5),
                ("red", 1.5),
                ("yellow", 1.5),
                ("blue", 1.0),
                ("green", 1.0),
                ("teal", 1.0),
                ("brown", 1.0),
            ),
            wall=(60.0, 140.0),
            ground=(40.0, 100.0),
            textures=(0, 1, 2),
            brightness=0.55,
            contrast=0.65,
            light_colour=(1.15, 0.98, 0.75),
            cast=1.5,
            noise=2.0,
        ),
    )
}
DEFAULT_DOMAIN = DOMAINS["default"]


def get_domain(name: str) -> Domain:
    """The domain called ``name``.

    Raises:
        ConfigError: ``name`` is not one of :data:`DOMAINS` (the message lists them).
    """
    if name not in DOMAINS:
        raise ConfigError(f"domain: expected one of {', '.join(DOMAINS)}, got {name!r}")
    return DOMAINS[name]


def stream_seed(seed: int, domain: Domain) -> int | tuple[int, ...]:
    """The entropy that the random streams of a data set of ``domain`` start from.

    ``seed`` itself for the default domain (its bytes stay as they were); for another domain the seed followed
    by a tag and the CRC-32 of the domain's name, so the same seed draws other people in another domain.
    """
    if domain.is_default:
        return seed
    return (seed, _TAG_DOMAIN, zlib.crc32(domain.name.encode("utf-8")))
