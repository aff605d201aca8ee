"""Synthetic tracklets: reidkit's procedural pedestrians walking through cameras, in the DukeMTMC-VideoReID layout.

Identities, looks, hard-negative groups and camera styles are those of :func:`reidkit.data.synth.generate` for
the same ``seed``, ``ids``, ``difficulty`` and ``domain`` (train identities: half of them, as there). Each identity is seen
by a random subset of >= 2 cameras and leaves ``tracklets_per_camera`` tracklets in each. A tracklet is one
walk of one identity in one camera over consecutive frames: the view (front / back / side), the facing, the
background, the camera style, the person's size and the crop's resolution and blur stay fixed, the walking
phase advances frame to frame (one stride cycle every 8..16 frames), the detector box jitters a little from
frame to frame (a smooth random walk), and each frame has its own sensor noise.

A fraction ``occlusion`` of the tracklets (chosen exactly, at random) has one *event*, a run of consecutive
frames in which part of the body is hidden:

- ``passer_by``: another pedestrian, nearer the camera, walks across in front of the target (anywhere in the
  tracklet, 30..60 % of its frames);
- ``edge``: the person enters (first frames) or leaves (last frames) the camera's field of view, so the box is
  cut by the left, right or bottom edge of the frame and holds only part of the body, stretched to 128 x 64
  (25..50 % of the frames; the edge crosses up to 40..60 % of the figure, less and less towards the fully
  visible frames).

Output (``generate_tracklets``)::

    OUT/train/0002/0001/0002_C1_F0001_X01234.jpg   train identities: all their tracklets
    OUT/query/<pid4>/<tracklet4>/...                 query tracklets of test identities (see below)
    OUT/gallery/<pid4>/<tracklet4>/...               every other tracklet of test identities
    OUT/frames.csv                                   path,pid,camera,tracklet,frame,occluded,visible_fraction
    OUT/meta.json                                    parameters, counts, format version, tracklets, groups

File names: ``<pid4>_C<camera from 1>_F<frame in the tracklet, from 1, 4 digits>_X<frame number in the
camera's video, 5+ digits>.jpg``; tracklet folders are numbered from 1 per identity, over all its cameras.

Query / gallery split: for each test identity, one camera among those it appears in (at random) is its
*gallery camera*; in every other camera the identity's first tracklet is a query (in ``query/``), and all
its remaining tracklets, including every tracklet of the gallery camera, are in ``gallery/``. So every query
has a match in another camera, query and gallery do not share a tracklet, and a test identity has
(cameras - 1) queries.

``frames.csv`` has one row per frame (sorted by path): ``occluded`` is 1 for the frames of the tracklet's
event, ``visible_fraction`` the measured fraction of the target's body pixels that are neither hidden by the
passer-by nor outside the crop box (slightly below 1 for some clean frames, whose box cuts a hand or a foot).

Every tracklet is drawn from its own ``numpy.random.Generator`` seeded by (seed, identity, camera, tracklet),
so the bytes do not depend on ``workers``. The folder is built beside ``OUT`` and renamed into place when
complete.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reidkit.data import _synth_draw as draw
from reidkit.data import _synth_walk as walk
from reidkit.data._synth_domains import DEFAULT_DOMAIN, Domain, get_domain
from reidkit.data.synth import (
    OutputExistsError,
    _cast,
    _check_output,
    _group_colours,
    _look,
    _member_codes,
    _Person,
    _rng,
    _staged_output,
    _summary_head,
    check_people_arguments,
)
from reidkit.errors import ConfigError, ReidkitError

__all__ = ["EVENTS", "OutputExistsError", "generate_tracklets", "read_frames", "tracklet_sheet"]

FORMAT_VERSION = 1
JPEG_QUALITY = 90
MAX_FRAMES = 1000
MAX_TRACKLETS_PER_CAMERA = 100
SPLITS = ("train", "query", "gallery")
EVENTS = ("passer_by", "edge")
PASSER_BY_SHARE = 0.6  # of the occluded tracklets; the others are cut by a frame edge
FRAMES_COLUMNS = ("path", "pid", "camera", "tracklet", "frame", "occluded", "visible_fraction")
SPLIT_RULE = (
    "test identities: one camera per identity is its gallery camera; in each other camera its first "
    "tracklet is a query, all its other tracklets are in the gallery"
)

# stream tags, apart from those of reidkit.data.synth and reidkit.data.synth_video
_TAG_LAYOUT, _TAG_EVENTS, _TAG_TRACKLET, _TAG_PASSER = range(201, 205)


@dataclass(frozen=True)
class _Tracklet:
    split: str  # train / query / gallery
    pid: int
    cam: int  # 0-based
    number: int  # folder number, from 1 per identity
    length: int
    start: int  # frame number in the camera's video of the first frame (the X of the names)
    event: str = ""  # "", or one of EVENTS

    @property
    def folder(self) -> str:
        return f"{self.split}/{self.pid:04d}/{self.number:04d}"

    def name(self, t: int) -> str:
        """File name of frame ``t`` (0-based)."""
        return f"{self.pid:04d}_C{self.cam + 1}_F{t + 1:04d}_X{self.start + t:05d}.jpg"


# ------------------------------------------------------------------------------------------- plan
def _plan(
    seed: int | tuple[int, ...],
    people: Sequence[_Person],
    cams: int,
    frames: tuple[int, int],
    per_camera: tuple[int, int],
    occlusion: float,
) -> list[_Tracklet]:
    """Which tracklets exist: cameras per identity, tracklets per camera, lengths, split, events."""
    tracklets: list[_Tracklet] = []
    for person in people:
        rng = _rng(seed, _TAG_LAYOUT, person.pid)
        seen = sorted(int(c) for c in rng.choice(cams, int(rng.integers(2, cams + 1)), replace=False))
        gallery_cam = seen[int(rng.integers(0, len(seen)))]
        number = 0
        for cam in seen:
            start = int(rng.integers(0, 20_000))
            for index in range(int(rng.integers(per_camera[0], per_camera[1] + 1))):
                number += 1
                length = int(rng.integers(frames[0], frames[1] + 1))
                if person.split == "train":
                    split = "train"
                else:
                    split = "query" if cam != gallery_cam and index == 0 else "gallery"
                tracklets.append(_Tracklet(split, person.pid, cam, number, length, start))
                start += length + int(rng.integers(20, 400))
    rng = _rng(seed, _TAG_EVENTS)
    chosen = rng.permutation(len(tracklets))[: round(occlusion * len(tracklets))]
    for i in sorted(int(i) for i in chosen):
        event = EVENTS[0] if rng.random() < PASSER_BY_SHARE else EVENTS[1]
        tracklets[i] = dataclasses.replace(tracklets[i], event=event)
    return tracklets


def _passer_look(
    seed: int | tuple[int, ...], tracklet: _Tracklet, domain: Domain = DEFAULT_DOMAIN
) -> draw.Look:
    """The look of the pedestrian who walks in front of ``tracklet``'s target (dressed as ``domain`` dresses)."""
    rng = _rng(seed, _TAG_PASSER, tracklet.pid, tracklet.cam, tracklet.number)
    colours = _group_colours(rng, domain)
    return _look(_member_codes(rng, colours, []), colours["jitter"], rng, domain)


# ------------------------------------------------------------------------------------------- rendering
_WORKER_STATE: dict = {}


def _init_worker(state: dict) -> None:
    _WORKER_STATE.clear()
    _WORKER_STATE.update(state)


def _render_tracklet(tracklet: _Tracklet) -> list[tuple]:
    """Draw and write every frame of ``tracklet``; returns its rows of frames.csv."""
    state = _WORKER_STATE
    seed = state["seed"]
    frames = walk.draw_tracklet(
        state["looks"][tracklet.pid],
        state["cameras"][tracklet.cam],
        state["level"],
        _rng(seed, _TAG_TRACKLET, tracklet.pid, tracklet.cam, tracklet.number),
        length=tracklet.length,
        event=tracklet.event,
        passer=_passer_look(seed, tracklet, state["domain"]) if tracklet.event == "passer_by" else None,
    )
    folder = os.path.join(state["root"], tracklet.folder)
    os.makedirs(folder)
    rows = []
    for t, (image, visible, occluded) in enumerate(frames):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        name = tracklet.name(t)
        with open(os.path.join(folder, name), "wb") as stream:
            stream.write(buffer.getvalue())
        path = f"{tracklet.folder}/{name}"
        rows.append(
            (path, tracklet.pid, tracklet.cam + 1, tracklet.number, t + 1, occluded, f"{visible:.3f}")
        )
    return rows


def _run_jobs(tracklets: list[_Tracklet], state: dict, workers: int, progress: bool) -> list[tuple]:
    """Render every tracklet (in ``workers`` processes); the rows of frames.csv, sorted by path."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(t.length for t in tracklets), unit="frame", desc="synth tracklets")
    rows: list[tuple] = []
    try:
        if workers == 1 or len(tracklets) < 2:
            _init_worker(state)
            try:
                for tracklet in tracklets:
                    rows.extend(_render_tracklet(tracklet))
                    if bar is not None:
                        bar.update(tracklet.length)
            finally:
                _WORKER_STATE.clear()
        else:
            context = multiprocessing.get_context()
            with context.Pool(workers, initializer=_init_worker, initargs=(state,)) as pool:
                for part in pool.imap_unordered(_render_tracklet, tracklets, chunksize=2):
                    rows.extend(part)
                    if bar is not None:
                        bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    return sorted(rows)


# ------------------------------------------------------------------------------------------- public API
def generate_tracklets(
    out: str | Path,
    *,
    ids: int = 100,
    cams: int | None = None,
    seed: int = 0,
    difficulty: str = "medium",
    domain: str = "default",
    frames: int | tuple[int, int] = (8, 24),
    tracklets_per_camera: int | tuple[int, int] = (1, 2),
    occlusion: float = 0.3,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a DukeMTMC-VideoReID-layout set of synthetic tracklets to ``out`` and return a summary.

    Args:
        out: output folder; built in a temp folder beside it and renamed into place when complete.
        ids: number of identities (pids 1..ids), half for training (as :func:`reidkit.data.synth.generate`).
        cams: number of cameras (2..9); each identity appears in a random subset of >= 2 of them. None: the
            domain's number (6 for ``"default"``).
        seed: non-negative seed; the same arguments give the same bytes whatever ``workers`` is.
        difficulty: one of ``easy``, ``medium``, ``hard``: camera nuisances, hard-negative group size and
            the detector box's offset and scale (the occluders of ``generate``'s ``hard`` are not used here).
        domain: the site, one of :data:`reidkit.data.synth.DOMAIN_NAMES` (as in :func:`reidkit.data.synth.generate`).
        frames: frames per tracklet: a number or an inclusive (low, high) range, 2 <= low <= high <= 1000.
        tracklets_per_camera: tracklets of an identity per camera it appears in: a number or an inclusive
            (low, high) range, 1 <= low <= high <= 100.
        occlusion: fraction of the tracklets (rounded to a count) with a run of occluded or cut frames.
        workers: processes drawing tracklets.
        overwrite: replace an existing non-empty ``out`` (only once the new one is complete).
        progress: show a progress bar.

    Returns:
        ``{"root", "difficulty", "domain", "seed", "cams", "ids", "tracklets", "frames", "occluded_tracklets",
        "occluded_frames", "train", "query", "gallery", "seconds", "frames_per_second"}``; ``train`` /
        ``query`` / ``gallery`` are ``{"ids", "tracklets", "frames"}``.

    Raises:
        ConfigError: a bad argument (names the argument and what was expected).
        OutputExistsError: ``out`` exists, is not empty and ``overwrite`` is False.
    """
    site = get_domain(domain)
    cams = site.cams if cams is None else cams
    lengths, per_camera = _check_arguments(
        ids, cams, seed, difficulty, frames, tracklets_per_camera, occlusion, workers
    )
    out = Path(out)
    _check_output(out, overwrite)
    started = time.perf_counter()
    n_train = min(ids - 1, max(1, round(ids * 0.5)))
    key, people, groups, state = _cast(seed, site, difficulty, ids, n_train, 0, cams)
    tracklets = _plan(key, people, cams, lengths, per_camera, float(occlusion))
    state["looks"] = {person.pid: person.look for person in people}
    counts = _counts(tracklets)
    params = {
        "ids": ids,
        "cams": cams,
        "seed": seed,
        "difficulty": difficulty,
        "domain": domain,
        "frames": list(lengths),
        "tracklets_per_camera": list(per_camera),
        "occlusion": float(occlusion),
    }
    _write(out, overwrite, tracklets, state, _meta(params, counts, groups, tracklets), workers, progress)
    seconds = time.perf_counter() - started
    n_frames = sum(t.length for t in tracklets)
    return {
        **_summary_head(out, params),
        "tracklets": len(tracklets),
        "frames": n_frames,
        **counts,
        "seconds": round(seconds, 3),
        "frames_per_second": round(n_frames / max(seconds, 1e-9), 1),
    }


def _write(
    out: Path,
    overwrite: bool,
    tracklets: list[_Tracklet],
    state: dict,
    meta: dict,
    workers: int,
    progress: bool,
) -> None:
    """Draw every tracklet and write frames.csv and meta.json in a temp folder beside ``out``, then move it
    into place (the temp folder is removed if anything fails)."""
    with _staged_output(out, overwrite) as temp:
        for split in SPLITS:
            (temp / split).mkdir()
        rows = _run_jobs(tracklets, {**state, "root": str(temp)}, workers, progress)
        meta["counts"]["occluded_frames"] = sum(row[5] for row in rows)  # the runs are drawn with the frames
        with open(temp / "frames.csv", "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(FRAMES_COLUMNS)
            writer.writerows(rows)
        (temp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _counts(tracklets: Sequence[_Tracklet]) -> dict:
    counts: dict = {}
    for split in SPLITS:
        chosen = [t for t in tracklets if t.split == split]
        counts[split] = {
            "ids": len({t.pid for t in chosen}),
            "tracklets": len(chosen),
            "frames": sum(t.length for t in chosen),
        }
    occluded = [t for t in tracklets if t.event]
    counts["occluded_tracklets"] = {event: sum(t.event == event for t in occluded) for event in EVENTS}
    counts["occluded_frames"] = 0  # set by _write once the frames are drawn
    return counts


def _meta(params: dict, counts: dict, groups: dict, tracklets: Sequence[_Tracklet]) -> dict:
    """The content of meta.json: format, arguments, counts, split rule, one entry per tracklet, groups."""
    return {
        "generator": "reidkit.data.synth_tracklets",
        "format_version": FORMAT_VERSION,
        "layout": "dukemtmc-videoreid",
        "image_size": [draw.HEIGHT, draw.WIDTH],
        "jpeg_quality": JPEG_QUALITY,
        "params": params,
        "counts": counts,
        "split_rule": SPLIT_RULE,
        "events": list(EVENTS),
        "tracklets": [
            {"folder": t.folder, "pid": t.pid, "camera": t.cam + 1, "frames": t.length, "event": t.event}
            for t in tracklets
        ],
        "groups": groups,
    }


def _check_arguments(ids, cams, seed, difficulty, frames, tracklets_per_camera, occlusion, workers):
    def integer(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    def pair(name: str, value, low: int, high: int) -> tuple[int, int]:
        if integer(value):
            value = (value, value)
        elif not (isinstance(value, (tuple, list)) and len(value) == 2 and all(integer(v) for v in value)):
            raise ConfigError(f"{name}: expected an integer or a (low, high) pair of integers, got {value!r}")
        if not low <= value[0] <= value[1] <= high:
            raise ConfigError(f"{name}: expected {low} <= low <= high <= {high}, got {tuple(value)!r}")
        return int(value[0]), int(value[1])

    check_people_arguments(ids, cams, seed, difficulty)
    lengths = pair("frames", frames, 2, MAX_FRAMES)
    per_camera = pair("tracklets_per_camera", tracklets_per_camera, 1, MAX_TRACKLETS_PER_CAMERA)
    if isinstance(occlusion, bool) or not isinstance(occlusion, (int, float)) or not 0.0 <= occlusion <= 1.0:
        raise ConfigError(f"occlusion: expected a fraction of the tracklets in [0, 1], got {occlusion!r}")
    if not integer(workers) or workers < 1:
        raise ConfigError(f"workers: expected a positive integer, got {workers!r}")
    return lengths, per_camera


def read_frames(root: str | Path) -> list[dict]:
    """Read ``root/frames.csv``: one dict per frame with the columns of :data:`FRAMES_COLUMNS` (``path``
    relative to ``root``, ``pid`` / ``camera`` / ``tracklet`` / ``frame`` / ``occluded`` as int,
    ``visible_fraction`` as float)."""
    path = Path(root) / "frames.csv"
    if not path.is_file():
        raise ReidkitError(f"{path}: not found (expected a folder written by generate_tracklets)")
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        if tuple(reader.fieldnames or ()) != FRAMES_COLUMNS:
            raise ReidkitError(
                f"{path}: expected the columns {','.join(FRAMES_COLUMNS)}, got {reader.fieldnames}"
            )
        rows = list(reader)
    ints = ("pid", "camera", "tracklet", "frame", "occluded")
    return [
        {**row, **{key: int(row[key]) for key in ints}, "visible_fraction": float(row["visible_fraction"])}
        for row in rows
    ]


def tracklet_sheet(
    out_png: str | Path, root: str | Path, *, tracklets: int = 6, frames: int = 16, seed: int = 0
) -> Path:
    """Save a PNG: one row per tracklet (occluded ones first), its frames in order, each labelled with its
    frame number and visible fraction (red when occluded).

    Args:
        out_png: PNG file to write (atomically).
        root: a folder written by :func:`generate_tracklets`.
        tracklets: rows; half of them (or as many as exist) are tracklets with an occlusion event.
        frames: the first ``frames`` frames of each tracklet are shown.
        seed: which tracklets are picked.
    """
    from reidkit._io import atomic_write

    root = Path(root)
    by_tracklet: dict[str, list[dict]] = {}
    for row in read_frames(root):
        by_tracklet.setdefault(row["path"].rsplit("/", 1)[0], []).append(row)
    rng = np.random.default_rng(seed)
    names = sorted(by_tracklet)
    occluded = [n for n in names if any(r["occluded"] for r in by_tracklet[n])]
    clean = [n for n in names if n not in set(occluded)]
    n_occluded = min(len(occluded), max(tracklets - len(clean), (tracklets + 1) // 2))
    chosen = [occluded[i] for i in sorted(rng.permutation(len(occluded))[:n_occluded])]
    chosen += [clean[i] for i in sorted(rng.permutation(len(clean))[: tracklets - len(chosen)])]
    cell_w, cell_h, label_w = draw.WIDTH + 4, draw.HEIGHT + 26, 90
    width = label_w + cell_w * min(frames, max(len(by_tracklet[n]) for n in chosen))
    sheet = Image.new("RGB", (width, cell_h * len(chosen)), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    for y, name in enumerate(chosen):
        pen.text((2, y * cell_h + cell_h // 2 - 6), name, fill=(0, 0, 0))
        for x, row in enumerate(by_tracklet[name][:frames]):
            left, top = label_w + x * cell_w + 2, y * cell_h + 2
            with Image.open(root / row["path"]) as image:
                sheet.paste(image.convert("RGB"), (left, top))
            colour = (200, 0, 0) if row["occluded"] else (0, 0, 0)
            pen.text((left, top + draw.HEIGHT), f"F{row['frame']}", fill=colour)
            pen.text((left, top + draw.HEIGHT + 11), f"{row['visible_fraction']:.2f}", fill=colour)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write(out_png, lambda stream: stream.write(buffer.getvalue()))
    return Path(out_png)
