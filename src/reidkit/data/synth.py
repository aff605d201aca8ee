"""Synthetic pedestrians: a procedural generator of Market-1501-layout ReID datasets.

An identity is a set of persistent attributes (body build and proportions, skin, hair colour and style, top
colour + pattern + chest logo, sleeves, bottom type + colour, shoes, bag, hat). An image is identity x camera x
moment: viewpoint (a chest logo shows only from the front, a backpack mostly from the back), walking pose, the
camera's colour cast / brightness / blur / noise / resolution and scene, detector error (shifted, scaled or
partial boxes) and occluders. Hard negatives are groups of identities that share their clothing colours and
differ only in details, so colour alone cannot tell them apart while shape, pattern, logo, bag, hat and shoes
can. ``difficulty`` scales the nuisances and the group size; ``domain`` picks the site
(:data:`reidkit.data._synth_domains.DOMAINS`: backgrounds, light, colour casts, clothing palette, resolution and
blur, number of cameras), so that a model trained on one site can be measured on another.

Output (``generate``)::

    out/bounding_box_train/0002_c1s1_000451_01.jpg   train identities (all their images)
    out/bounding_box_test/...                          gallery: test identities (+ pid 0000 distractors)
    out/query/...                                      one image per test identity per camera it appears in
    out/attributes.csv                                 pid,<attribute codes>   (names of the codes in meta.json)
    out/meta.json                                      parameters, version, counts, attribute names, groups
    out/keypoints.json                                 the COCO-17 joints drawn in every image (ground truth)

Every image comes from its own ``numpy.random.Generator`` seeded by (seed, identity, camera, index), so the
bytes do not depend on ``workers``. The folder is built beside ``out`` and renamed into place when complete.

``keypoints.json`` (:mod:`reidkit.data.keypoints`, source ``"synthetic ground truth"``) holds, for every image,
the 17 joints of the pedestrian it shows in the image's pixels: visibility 0 for a joint that the detector's box
cut off, that an occluder (pole, car, passer-by) covers, or a face point turned away from the camera (eyes and
nose from the back, the far eye and ear in profile), 1 otherwise (:mod:`reidkit.data._synth_joints` says where
each joint is taken on the drawn figure). The keypoints come from the values the image was drawn with and draw
no random numbers, so the images are the same with or without them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reidkit.data import _synth_draw as draw
from reidkit.data._synth_domains import DEFAULT_DOMAIN, DOMAINS, Domain, get_domain, stream_seed
from reidkit.data.keypoints import KEYPOINTS_NAME, write_keypoints
from reidkit.errors import ConfigError, ReidkitError

FORMAT_VERSION = 1
DIFFICULTIES = ("easy", "medium", "hard")
DOMAIN_NAMES = tuple(DOMAINS)  # the sites of reidkit.data._synth_domains, "default" first
IMAGE_SIZE = (draw.HEIGHT, draw.WIDTH)
JPEG_QUALITY = 90
MAX_CAMERAS = 9  # Market-1501 file names carry a one-digit camera number
MAX_IDS = 9999  # four-digit person ids

_CLOTHING = tuple(name for name, _ in draw.CLOTHING_COLOURS)
#: attribute name -> names of its integer codes (the columns of attributes.csv, in this order)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "build": ("slim", "average", "broad"),
    "height": ("short", "medium", "tall"),
    "skin": tuple(name for name, _ in draw.SKIN_TONES),
    "hair_colour": tuple(name for name, _ in draw.HAIR_COLOURS),
    "hair_style": ("short", "long", "shaved"),
    "top_colour": _CLOTHING,
    "top_pattern": ("plain", "stripes", "checks"),
    "pattern_colour": _CLOTHING,
    "sleeves": ("short", "long"),
    "logo": ("none", "circle", "square", "triangle", "cross"),
    "logo_colour": _CLOTHING,
    "bottom_type": ("trousers", "shorts", "skirt"),
    "bottom_colour": _CLOTHING,
    "shoes_colour": _CLOTHING,
    "bag": ("none", "backpack", "shoulder_bag"),
    "bag_colour": _CLOTHING,
    "hat": ("none", "cap", "beanie"),
    "hat_colour": _CLOTHING,
}
#: attributes that members of a hard-negative group may differ in (each pair differs in >= 3 of them)
_DETAILS = (
    "top_pattern",
    "logo",
    "bag",
    "hat",
    "shoes_colour",
    "build",
    "sleeves",
    "bottom_type",
    "hair_style",
)

#: the nuisance parameters of each difficulty, side by side: field -> (easy, medium, hard)
_LEVEL_TABLE: dict[str, tuple] = {
    "cast": (0.02, 0.06, 0.1),
    "brightness": (0.05, 0.12, 0.18),
    "blur": ((0.0, 0.4), (0.2, 0.9), (0.3, 1.1)),
    "noise": (2.0, 4.0, 6.0),
    "downscale": ((0.9, 1.0), (0.65, 1.0), (0.5, 1.0)),
    "group_size": (1, 3, 6),
    "shift": (0.02, 0.04, 0.08),
    "scale": ((0.97, 1.04), (0.94, 1.10), (0.9, 1.2)),
    "partial": (0.0, 0.0, 0.12),
    "occlusion": (0.0, 0.0, 0.3),
    "image_light": (0.04, 0.08, 0.12),
    "scene_tint": (4.0, 10.0, 16.0),
    "scene_mix": (0.9, 0.5, 0.25),
}
_LEVELS = {
    level: draw.Nuisance(**{name: values[column] for name, values in _LEVEL_TABLE.items()})
    for column, level in enumerate(("easy", "medium", "hard"))
}

# stream tags: keep the random streams of different purposes apart
_TAG_SPLIT, _TAG_GROUP, _TAG_PERSON, _TAG_CAMERA, _TAG_LAYOUT, _TAG_IMAGE, _TAG_DISTRACTOR = range(1, 8)
_DISTRACTOR_KEY = 100_000  # internal identity keys of distractors start here (their file pid is 0)


class OutputExistsError(ReidkitError, FileExistsError):
    """The output folder exists and is not empty, and overwrite was not asked for."""


@dataclass
class _Person:
    key: int  # internal identity (pid for real people, _DISTRACTOR_KEY + i for distractors)
    pid: int  # pid written in file names (0 for distractors)
    split: str  # "train", "test" or "distractor"
    codes: dict[str, int]
    look: draw.Look


@dataclass(frozen=True)
class _Job:
    folder: str
    name: str
    key: int
    cam: int  # 0-based
    index: int


def _rng(seed: int | tuple[int, ...], *words: int) -> np.random.Generator:
    """The random stream of ``words`` under ``seed`` (a seed, or the entropy of :func:`stream_seed`)."""
    head = list(seed) if isinstance(seed, tuple) else [seed]
    return np.random.default_rng(np.random.SeedSequence([*head, *words]))


# ------------------------------------------------------------------------------------------- identities
def _group_colours(rng: np.random.Generator, domain: Domain = DEFAULT_DOMAIN) -> dict[str, int]:
    """A group's clothing colours: uniform over the clothing colours, or weighted by the domain's palette."""
    n = len(_CLOTHING)
    palette = domain.palette_weights(_CLOTHING)
    if palette is None:
        top = int(rng.integers(0, n))
        pattern = int(rng.choice([c for c in range(n) if c != top]))
        bottom, bag, hat = (int(rng.integers(0, n)) for _ in range(3))
    else:
        weights = np.asarray(palette, dtype=np.float64)
        top = int(rng.choice(n, p=weights))
        others = np.where(np.arange(n) == top, 0.0, weights)
        if others.sum() <= 0:  # a one-colour palette: the pattern takes any other colour
            others = np.where(np.arange(n) == top, 0.0, 1.0)
        pattern = int(rng.choice(n, p=others / others.sum()))
        bottom, bag, hat = (int(rng.choice(n, p=weights)) for _ in range(3))
    return {
        "top_colour": top,
        "pattern_colour": pattern,
        "bottom_colour": bottom,
        "bag_colour": bag,
        "hat_colour": hat,
        "jitter": int(rng.integers(0, 2**31)),
    }


def _member_codes(
    rng: np.random.Generator, colours: dict[str, int], taken: list[dict[str, int]]
) -> dict[str, int]:
    """Attribute codes for one member of a group, differing from every earlier member in >= 3 details."""
    codes: dict[str, int] = {}
    for _attempt in range(200):
        codes = {
            "build": int(rng.integers(0, 3)),
            "height": int(rng.integers(0, 3)),
            "skin": int(rng.integers(0, len(draw.SKIN_TONES))),
            "hair_colour": int(rng.integers(0, len(draw.HAIR_COLOURS))),
            "hair_style": int(rng.choice(3, p=(0.5, 0.35, 0.15))),
            "top_colour": colours["top_colour"],
            "top_pattern": int(rng.choice(3, p=(0.4, 0.35, 0.25))),
            "pattern_colour": colours["pattern_colour"],
            "sleeves": int(rng.integers(0, 2)),
            "logo": int(rng.choice(5, p=(0.3, 0.175, 0.175, 0.175, 0.175))),
            "logo_colour": int(rng.choice([c for c in range(len(_CLOTHING)) if c != colours["top_colour"]])),
            "bottom_type": int(rng.choice(3, p=(0.55, 0.25, 0.2))),
            "bottom_colour": colours["bottom_colour"],
            "shoes_colour": int(rng.choice(draw.SHOE_CHOICES)),
            "bag": int(rng.choice(3, p=(0.4, 0.3, 0.3))),
            "bag_colour": colours["bag_colour"],
            "hat": int(rng.choice(3, p=(0.55, 0.25, 0.2))),
            "hat_colour": colours["hat_colour"],
        }
        if all(sum(codes[d] != other[d] for d in _DETAILS) >= 3 for other in taken):
            break
    return codes


def _look(
    codes: dict[str, int], jitter_seed: int, rng: np.random.Generator, domain: Domain = DEFAULT_DOMAIN
) -> draw.Look:
    shared = np.random.default_rng(jitter_seed)  # the group's exact colour shades
    clothing = domain.clothing(draw.CLOTHING_COLOURS)  # the shades of the colours that the site's people wear

    def colour(name: str, amount: float = 7.0) -> tuple[int, int, int]:
        return draw._jitter(clothing[codes[name]], amount, shared)

    top, pattern, bottom = colour("top_colour"), colour("pattern_colour"), colour("bottom_colour")
    bag, hat = colour("bag_colour"), colour("hat_colour")
    return draw.Look(
        build=codes["build"],
        height=codes["height"],
        hair_style=codes["hair_style"],
        top_pattern=codes["top_pattern"],
        sleeves=codes["sleeves"],
        logo=codes["logo"],
        bottom_type=codes["bottom_type"],
        bag=codes["bag"],
        hat=codes["hat"],
        skin=draw._jitter(draw.SKIN_TONES[codes["skin"]][1], 6, rng),
        hair=draw._jitter(draw.HAIR_COLOURS[codes["hair_colour"]][1], 6, rng),
        top=top,
        pattern=pattern,
        logo_rgb=draw._jitter(clothing[codes["logo_colour"]], 6, rng),
        bottom=bottom,
        shoes=draw._jitter(clothing[codes["shoes_colour"]], 6, rng),
        bag_rgb=bag,
        hat_rgb=hat,
        width_scale=float(rng.uniform(0.95, 1.05)),
    )


def _make_people(
    seed: int | tuple[int, ...],
    ids: int,
    n_train: int,
    distractors: int,
    group_size: int,
    domain: Domain = DEFAULT_DOMAIN,
) -> tuple[list[_Person], dict[str, list[list[int]]]]:
    pids = np.arange(1, ids + 1)
    train_pids = set(int(p) for p in _rng(seed, _TAG_SPLIT).choice(pids, n_train, replace=False))
    people: list[_Person] = []
    groups: dict[str, list[list[int]]] = {"train": [], "test": []}
    test_colours: list[dict[str, int]] = []
    for split_code, split in enumerate(("train", "test")):
        members = [int(p) for p in pids if (int(p) in train_pids) == (split == "train")]
        order = _rng(seed, _TAG_GROUP, split_code).permutation(len(members))
        members = [members[i] for i in order]
        for g, start in enumerate(range(0, len(members), group_size)):
            group = sorted(members[start : start + group_size])
            group_rng = _rng(seed, _TAG_GROUP, split_code, g)
            colours = _group_colours(group_rng, domain)
            if split == "test":
                test_colours.append(colours)
            taken: list[dict[str, int]] = []
            for pid in group:
                codes = _member_codes(group_rng, colours, taken)
                taken.append(codes)
                look = _look(codes, colours["jitter"], _rng(seed, _TAG_PERSON, pid), domain)
                people.append(_Person(pid, pid, split, codes, look))
            groups[split].append(group)
    for i in range(distractors):
        rng = _rng(seed, _TAG_DISTRACTOR, i)
        # distractors dress like test groups: they are hard negatives too
        colours = test_colours[int(rng.integers(0, len(test_colours)))]
        codes = _member_codes(rng, colours, [])
        people.append(
            _Person(_DISTRACTOR_KEY + i, 0, "distractor", codes, _look(codes, colours["jitter"], rng, domain))
        )
    people.sort(key=lambda person: person.key)
    return people, groups


def _plan(
    seed: int | tuple[int, ...], people: Sequence[_Person], cams: int, images_per_camera: tuple[int, int]
) -> list[_Job]:
    """Which images exist: cameras per person, images per camera, file names and folders."""
    jobs: list[_Job] = []
    used: set[tuple[str, str]] = set()
    low, high = images_per_camera
    for person in people:
        rng = _rng(seed, _TAG_LAYOUT, person.key)
        if person.split == "distractor":
            seen = sorted(int(c) for c in rng.choice(cams, int(rng.integers(1, 3)), replace=False))
        else:
            seen = sorted(int(c) for c in rng.choice(cams, int(rng.integers(2, cams + 1)), replace=False))
        for cam in seen:
            count = int(rng.integers(low, high + 1))
            frame = int(rng.integers(0, 900_000))
            for index in range(count):
                frame += int(rng.integers(5, 80))
                if person.split == "train":
                    folder = "bounding_box_train"
                elif person.split == "test" and index == 0:
                    folder = "query"
                else:
                    folder = "bounding_box_test"
                box = 1
                name = f"{person.pid:04d}_c{cam + 1}s1_{frame:06d}_{box:02d}.jpg"
                while (folder, name) in used:
                    box += 1
                    name = f"{person.pid:04d}_c{cam + 1}s1_{frame:06d}_{box:02d}.jpg"
                used.add((folder, name))
                jobs.append(_Job(folder, name, person.key, cam, index))
    return jobs


# ------------------------------------------------------------------------------------------- rendering
_WORKER_STATE: dict = {}


def _init_worker(state: dict) -> None:
    _WORKER_STATE.clear()
    _WORKER_STATE.update(state)


def _render_job(job: _Job) -> tuple[str, np.ndarray]:
    """Draw and write one image; returns its path relative to the root and its ``[17, 3]`` keypoints."""
    state = _WORKER_STATE
    seed, level = state["seed"], state["level"]
    rng = _rng(seed, _TAG_IMAGE, job.key, job.cam, job.index)

    def passer_by() -> draw.Look:  # a random other pedestrian, drawn only when one occludes the target
        other_rng = _rng(seed, _TAG_IMAGE, job.key, job.cam, job.index, 1)
        return _look(
            _member_codes(other_rng, _group_colours(other_rng, state["domain"]), []),
            int(other_rng.integers(0, 2**31)),
            other_rng,
            state["domain"],
        )

    image, points = draw.render(state["looks"][job.key], state["cameras"][job.cam], level, rng, passer_by)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    with open(os.path.join(state["root"], job.folder, job.name), "wb") as stream:
        stream.write(buffer.getvalue())
    return f"{job.folder}/{job.name}", points


# ------------------------------------------------------------------------------------------- public API
def generate(
    out: str | Path,
    *,
    ids: int = 100,
    cams: int | None = None,
    seed: int = 0,
    difficulty: str = "medium",
    domain: str = "default",
    distractors: int = 0,
    images_per_camera: int | tuple[int, int] = (2, 6),
    train_fraction: float = 0.5,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a Market-1501-layout synthetic dataset to ``out`` and return a summary.

    Args:
        out: output folder; built in a temp folder beside it and renamed into place when complete.
        ids: number of identities (pids 1..ids), split into train and test by ``train_fraction``.
        cams: number of cameras (2..9); each identity appears in a random subset of >= 2 of them. None: the
            domain's number (6 for ``"default"``).
        seed: non-negative seed; the same arguments give the same bytes whatever ``workers`` is.
        difficulty: one of :data:`DIFFICULTIES`; scales camera nuisances and hard-negative group size and
            turns on misaligned / partial boxes and occluders at ``"hard"``.
        domain: one of :data:`DOMAIN_NAMES`: the site (backgrounds, light, colour casts, clothing palette,
            resolution, blur, cameras). ``"default"`` is the original generator; another domain draws other
            people, cameras and layout from the same seed.
        distractors: extra people written as pid 0000 into ``bounding_box_test`` (never queried).
        images_per_camera: images of an identity per camera it appears in: a number or an inclusive
            (low, high) range; at least 2, so every camera keeps a gallery image besides its query.
        train_fraction: fraction of identities used for training (both splits keep >= 1 identity).
        workers: processes drawing images.
        overwrite: replace an existing non-empty ``out`` (only once the new one is complete).
        progress: show a progress bar.

    Returns:
        ``{"root", "difficulty", "domain", "seed", "cams", "ids", "distractors", "images", "train", "query", "gallery",
        "distractor_images", "seconds", "images_per_second"}``; ``train`` / ``query`` / ``gallery`` /
        ``distractor_images`` are ``{"ids": int, "images": int}`` (distractor images are part of the gallery).

    Raises:
        ConfigError: a bad argument (names the argument and what was expected).
        OutputExistsError: ``out`` exists, is not empty and ``overwrite`` is False.
    """
    site = get_domain(domain)
    cams = site.cams if cams is None else cams
    low_high = _check_arguments(
        ids, cams, seed, difficulty, distractors, images_per_camera, train_fraction, workers
    )
    out = Path(out)
    _check_output(out, overwrite)
    n_train = min(ids - 1, max(1, round(ids * train_fraction)))
    started = time.perf_counter()
    key, people, groups, state = _cast(seed, site, difficulty, ids, n_train, distractors, cams)
    jobs = _plan(key, people, cams, low_high)
    state["looks"] = {person.key: person.look for person in people}
    params = {
        "ids": ids,
        "cams": cams,
        "seed": seed,
        "difficulty": difficulty,
        "domain": domain,
        "distractors": distractors,
        "images_per_camera": list(low_high),
        "train_fraction": train_fraction,
    }
    counts = _counts(jobs, people)
    _write_dataset(
        out, overwrite, jobs, people, state, _meta(params, counts, groups), workers=workers, progress=progress
    )
    seconds = time.perf_counter() - started
    return {
        **_summary_head(out, params),
        "distractors": distractors,
        "images": len(jobs),
        **counts,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(jobs) / max(seconds, 1e-9), 1),
    }


def _cast(
    seed: int, site: Domain, difficulty: str, ids: int, n_train: int, distractors: int, cams: int
) -> tuple[tuple[int, ...], list[_Person], dict[str, list[list[int]]], dict]:
    """What the image and the tracklet generators both draw first: ``(key, people, groups, state)``.

    ``key`` is the domain's stream seed, ``state`` what drawing needs besides the job (seed, level, domain,
    cameras; the caller adds ``looks``).
    """
    level = _LEVELS[difficulty]
    key = stream_seed(seed, site)
    people, groups = _make_people(key, ids, n_train, distractors, level.group_size, site)
    cameras = [draw.make_camera(_rng(key, _TAG_CAMERA, cam), level, site) for cam in range(cams)]
    return key, people, groups, {"seed": key, "level": level, "domain": site, "cameras": cameras}


def _summary_head(out: Path, params: dict) -> dict:
    """The first keys of a generator's summary: root and the arguments every generator has."""
    return {
        "root": str(out),
        **{name: params[name] for name in ("difficulty", "domain", "seed", "cams", "ids")},
    }


def _write_dataset(
    out: Path,
    overwrite: bool,
    jobs: list[_Job],
    people: Sequence[_Person],
    state: dict,
    meta: dict,
    *,
    workers: int,
    progress: bool,
) -> None:
    """Draw every image and write attributes.csv, meta.json and keypoints.json in a temp folder beside ``out``,
    then move it into place (the temp folder is removed if anything fails).

    Args:
        state: what drawing an image needs besides its job (see :func:`_render_job`), less ``root``.
        meta: the content of meta.json (see :func:`_meta`).
    """
    with _staged_output(out, overwrite) as temp:
        for folder in ("bounding_box_train", "bounding_box_test", "query"):
            (temp / folder).mkdir()
        points = _run_jobs(jobs, {**state, "root": str(temp)}, workers, progress)
        write_keypoints(temp / KEYPOINTS_NAME, dict(sorted(points.items())), source="synthetic ground truth")
        _write_attributes(temp / "attributes.csv", people)
        (temp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _meta(params: dict, counts: dict[str, dict[str, int]], groups: dict[str, list[list[int]]]) -> dict:
    """The content of meta.json: format, ``generate``'s arguments, counts, attribute names, hard-negative groups."""
    return {
        "generator": "reidkit.data.synth",
        "format_version": FORMAT_VERSION,
        "layout": "market1501",
        "image_size": list(IMAGE_SIZE),
        "jpeg_quality": JPEG_QUALITY,
        "params": params,
        "counts": counts,
        "attributes": {name: list(values) for name, values in ATTRIBUTES.items()},
        "groups": groups,
    }


def _integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_people_arguments(ids, cams, seed, difficulty) -> None:
    """The checks every synthetic generator of these identities shares (ids, cameras, seed, difficulty)."""
    if not _integer(ids) or not 2 <= ids <= MAX_IDS:
        raise ConfigError(
            f"ids: expected an integer in [2, {MAX_IDS}] (train and test need one identity each), got {ids!r}"
        )
    if not _integer(cams) or not 2 <= cams <= MAX_CAMERAS:
        raise ConfigError(
            f"cams: expected an integer in [2, {MAX_CAMERAS}] (every identity is seen by >= 2 "
            f"cameras; file names hold one camera digit), got {cams!r}"
        )
    if not _integer(seed) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"difficulty: expected one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")


def _check_arguments(ids, cams, seed, difficulty, distractors, images_per_camera, train_fraction, workers):
    integer = _integer
    check_people_arguments(ids, cams, seed, difficulty)
    if not integer(distractors) or distractors < 0:
        raise ConfigError(f"distractors: expected a non-negative integer, got {distractors!r}")
    if integer(images_per_camera):
        low_high = (int(images_per_camera), int(images_per_camera))
    elif (
        isinstance(images_per_camera, (tuple, list))
        and len(images_per_camera) == 2
        and all(integer(v) for v in images_per_camera)
    ):
        low_high = (int(images_per_camera[0]), int(images_per_camera[1]))
    else:
        raise ConfigError(
            f"images_per_camera: expected an integer or a (low, high) pair, got {images_per_camera!r}"
        )
    if not 2 <= low_high[0] <= low_high[1] or low_high[1] > 1000:
        raise ConfigError(
            f"images_per_camera: expected 2 <= low <= high <= 1000 (a query and a gallery image "
            f"per camera), got {images_per_camera!r}"
        )
    if not isinstance(train_fraction, (int, float)) or not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction: expected a number in (0, 1), got {train_fraction!r}")
    if not integer(workers) or workers < 1:
        raise ConfigError(f"workers: expected a positive integer, got {workers!r}")
    return low_high


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another output path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"{out}: folder exists and is not empty; pass overwrite=True (--overwrite) to replace it"
        )


def _move_into_place(temp: Path, out: Path, overwrite: bool) -> None:
    _check_output(out, overwrite)  # something may have appeared while drawing
    if not out.exists():
        os.replace(temp, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.replace(temp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(temp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staged_output(out: Path, overwrite: bool) -> Iterator[Path]:
    """A new temp folder beside ``out`` to write a data set into, moved into place when the block ends.

    If the block (or the move) fails, the temp folder is removed and ``out`` is left as it was.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield temp
        _move_into_place(temp, out, overwrite)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _run_jobs(jobs: list[_Job], state: dict, workers: int, progress: bool) -> dict[str, np.ndarray]:
    """Draw ``jobs`` in ``workers`` processes; returns image path (relative to the root) -> keypoints."""
    points: dict[str, np.ndarray] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="img", desc="synth")
    try:
        if workers == 1 or len(jobs) < 64:
            _init_worker(state)
            try:
                for job in jobs:
                    key, value = _render_job(job)
                    points[key] = value
                    if bar is not None:
                        bar.update(1)
            finally:
                _WORKER_STATE.clear()
            return points
        import multiprocessing

        chunk = max(8, min(64, len(jobs) // (workers * 8)))
        with multiprocessing.get_context().Pool(workers, initializer=_init_worker, initargs=(state,)) as pool:
            for key, value in pool.imap_unordered(_render_job, jobs, chunksize=chunk):
                points[key] = value
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return points


def _counts(jobs: Sequence[_Job], people: Sequence[_Person]) -> dict[str, dict[str, int]]:
    pid_of = {person.key: person.pid for person in people}
    counts = {}
    for split, folder in (
        ("train", "bounding_box_train"),
        ("query", "query"),
        ("gallery", "bounding_box_test"),
    ):
        chosen = [job for job in jobs if job.folder == folder]
        counts[split] = {"ids": len({pid_of[job.key] for job in chosen}), "images": len(chosen)}
    counts["distractor_images"] = {
        "ids": sum(p.split == "distractor" for p in people),
        "images": sum(1 for job in jobs if job.key >= _DISTRACTOR_KEY),
    }
    return counts


def _write_attributes(path: Path, people: Sequence[_Person]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["pid", *ATTRIBUTES])
        for person in people:
            if person.split != "distractor":
                writer.writerow([person.pid, *(person.codes[name] for name in ATTRIBUTES)])


def read_attributes(root: str | Path) -> dict[int, dict[str, int]]:
    """Read ``root/attributes.csv`` into {pid: {attribute: code}}."""
    path = Path(root) / "attributes.csv"
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    return {int(row["pid"]): {key: int(value) for key, value in row.items() if key != "pid"} for row in rows}


def contact_sheet(
    out_png: str | Path, root: str | Path, *, identities: int = 8, per_identity: int = 10, seed: int = 0
) -> Path:
    """Save a PNG grid: one row per test identity (query + gallery images across cameras), labelled.

    Args:
        out_png: PNG file to write (atomically).
        root: a folder written by :func:`generate` (or any Market-1501-layout folder).
        identities: rows; identities are taken in hard-negative group order when ``meta.json`` is present,
            so neighbouring rows show people that share clothing colours.
        per_identity: images per row, spread over the identity's cameras.
        seed: which identities and images are picked.
    """
    from reidkit._io import atomic_write

    root = Path(root)
    by_pid: dict[int, list[Path]] = {}
    for folder in ("query", "bounding_box_test"):
        for path in sorted((root / folder).glob("*.jpg")):
            pid = int(path.name[:4])
            if pid > 0:
                by_pid.setdefault(pid, []).append(path)
    if not by_pid:
        raise ReidkitError(f"{root}: no query/gallery images found (expected a Market-1501 layout)")
    rng = np.random.default_rng(seed)
    order: list[int] = []
    meta_path = root / "meta.json"
    if meta_path.exists():
        groups = json.loads(meta_path.read_text(encoding="utf-8")).get("groups", {}).get("test", [])
        for g in rng.permutation(len(groups)):
            order.extend(pid for pid in groups[g] if pid in by_pid)
    if not order:
        order = sorted(by_pid)
    chosen = order[:identities]
    cell_w, cell_h, label_w = draw.WIDTH + 4, draw.HEIGHT + 14, 40
    sheet = Image.new("RGB", (label_w + cell_w * per_identity, cell_h * len(chosen)), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    for row, pid in enumerate(chosen):
        paths = by_pid[pid]
        by_cam: dict[str, list[Path]] = {}
        for path in paths:
            by_cam.setdefault(path.name.split("_")[1][:2], []).append(path)
        picked: list[Path] = []
        while len(picked) < min(per_identity, len(paths)):  # round-robin over cameras
            for cam in sorted(by_cam):
                if by_cam[cam] and len(picked) < per_identity:
                    picked.append(by_cam[cam].pop(0))
        pen.text((2, row * cell_h + cell_h // 2 - 6), f"{pid:04d}", fill=(0, 0, 0))
        for col, path in enumerate(picked):
            with Image.open(path) as image:
                sheet.paste(image.convert("RGB"), (label_w + col * cell_w + 2, row * cell_h + 2))
            pen.text(
                (label_w + col * cell_w + 4, row * cell_h + draw.HEIGHT + 2),
                path.name.split("_")[1][:2],
                fill=(0, 0, 0),
            )
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write(out_png, lambda stream: stream.write(buffer.getvalue()))
    return Path(out_png)
