"""Synthetic tracklets: DukeMTMC-VideoReID layout, frames.csv, the query / gallery rule, occlusion, determinism."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.cli import main
from reidkit.data import _synth_draw as draw
from reidkit.data.synth import _LEVELS, generate
from reidkit.data.synth_tracklets import (
    FRAMES_COLUMNS,
    OutputExistsError,
    generate_tracklets,
    read_frames,
    tracklet_sheet,
)
from reidkit.errors import ConfigError, ReidkitError

NAME = re.compile(r"^(\d{4})_C(\d)_F(\d{4})_X(\d{5,})\.jpg$")
SMALL = {"ids": 6, "cams": 3, "seed": 0, "frames": (6, 9), "tracklets_per_camera": (1, 2), "occlusion": 0.5}


@pytest.fixture(scope="module")
def tracklets(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth_tracklets") / "set"
    return root, generate_tracklets(root, **SMALL, workers=1)


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _by_tracklet(root: Path) -> dict[str, list[dict]]:
    """``split/pid/tracklet`` -> its frames.csv rows, in file order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in read_frames(root):
        groups[row["path"].rsplit("/", 1)[0]].append(row)
    return dict(groups)


def test_layout_names_and_images(tracklets):
    root, summary = tracklets
    assert sorted(p.name for p in root.iterdir()) == ["frames.csv", "gallery", "meta.json", "query", "train"]
    files = sorted(p for p in root.rglob("*.jpg"))
    assert len(files) == summary["frames"] > 0
    for path in files:
        split, pid, number = path.relative_to(root).parts[:3]
        assert split in ("train", "query", "gallery") and len(path.relative_to(root).parts) == 4
        assert re.fullmatch(r"\d{4}", pid) and re.fullmatch(r"\d{4}", number), path
        match = NAME.match(path.name)
        assert match, f"bad file name {path.name}"
        assert match.group(1) == pid and 1 <= int(match.group(2)) <= SMALL["cams"]
        with Image.open(path) as image:
            assert image.size == (draw.WIDTH, draw.HEIGHT) and image.mode == "RGB"
    meta = json.loads((root / "meta.json").read_text())
    assert meta["layout"] == "dukemtmc-videoreid" and meta["format_version"] == 1
    assert meta["params"]["frames"] == [6, 9] and meta["params"]["occlusion"] == 0.5
    assert len(meta["tracklets"]) == summary["tracklets"]


def test_frames_are_consecutive_in_one_camera(tracklets):
    root, _ = tracklets
    for folder in {p.parent for p in root.rglob("*.jpg")}:
        names = [NAME.match(p.name) for p in sorted(folder.iterdir())]
        assert len({m.group(2) for m in names}) == 1, f"{folder}: more than one camera"
        frames = [int(m.group(3)) for m in names]
        assert frames == list(range(1, len(frames) + 1)), folder
        video = [int(m.group(4)) for m in names]
        assert video == list(range(video[0], video[0] + len(video))), folder
        assert SMALL["frames"][0] <= len(frames) <= SMALL["frames"][1]


def test_frames_csv_is_consistent_with_the_files_and_the_summary(tracklets):
    root, summary = tracklets
    header = (root / "frames.csv").read_text().splitlines()[0]
    assert tuple(header.split(",")) == FRAMES_COLUMNS
    rows = read_frames(root)
    assert [r["path"] for r in rows] == sorted(str(p.relative_to(root)) for p in root.rglob("*.jpg"))
    for row in rows:
        split, pid, number, name = row["path"].split("/")
        match = NAME.match(name)
        assert (row["pid"], row["camera"], row["tracklet"], row["frame"]) == (
            int(pid),
            int(match.group(2)),
            int(number),
            int(match.group(3)),
        )
        assert row["occluded"] in (0, 1) and 0.0 <= row["visible_fraction"] <= 1.0
    groups = _by_tracklet(root)
    occluded = {name for name, frames in groups.items() if any(r["occluded"] for r in frames)}
    assert (
        len(occluded)
        == round(SMALL["occlusion"] * len(groups))
        == sum(summary["occluded_tracklets"].values())
    )
    for name in occluded:  # one run of consecutive frames
        flags = [r["occluded"] for r in groups[name]]
        first, last = flags.index(1), len(flags) - 1 - flags[::-1].index(1)
        assert all(flags[first : last + 1]), name
    assert summary["occluded_frames"] == sum(r["occluded"] for r in rows) > 0
    meta = json.loads((root / "meta.json").read_text())
    assert meta["counts"]["occluded_frames"] == summary["occluded_frames"]
    events = {t["folder"]: t["event"] for t in meta["tracklets"]}
    assert {name for name, event in events.items() if event} == occluded
    for split in ("train", "query", "gallery"):
        chosen = [r for r in rows if r["path"].startswith(split + "/")]
        assert (
            summary[split]
            == meta["counts"][split]
            == {
                "ids": len({r["pid"] for r in chosen}),
                "tracklets": len({r["path"].rsplit("/", 1)[0] for r in chosen}),
                "frames": len(chosen),
            }
        )


def test_query_gallery_split_rule(tracklets):
    root, summary = tracklets
    cams: dict[str, dict[int, dict[int, list[int]]]] = {
        s: defaultdict(dict) for s in ("train", "query", "gallery")
    }
    numbers = defaultdict(list)
    for name, frames in _by_tracklet(root).items():
        split, pid, number = name.split("/")
        cams[split][int(pid)].setdefault(frames[0]["camera"], []).append(int(number))
        numbers[int(pid)].append(int(number))
    train, query, gallery = (set(cams[s]) for s in ("train", "query", "gallery"))
    assert train and not train & (query | gallery) and query == gallery
    assert len(train) == SMALL["ids"] // 2 and len(train | query) == SMALL["ids"]
    for pid in query:
        assert all(len(found) == 1 for found in cams["query"][pid].values()), "one query per camera"
        seen = set(cams["query"][pid]) | set(cams["gallery"][pid])
        assert len(seen) >= 2
        # one camera (the gallery camera) keeps all its tracklets in the gallery; every other one has a query
        assert len(seen - set(cams["query"][pid])) == 1
        for cam in cams["query"][pid]:
            assert set(cams["gallery"][pid]) - {cam}, "every query has a match in another camera"
    for pid in train:
        assert len(cams["train"][pid]) >= 2
    for pid, found in numbers.items():
        assert sorted(found) == list(range(1, len(found) + 1)), pid


def test_occluded_frames_are_hidden_and_differ_from_the_tracklet(tracklets):
    root, _ = tracklets
    clean_visible, occluded_visible, clean_diff, occluded_diff = [], [], [], []
    for frames in _by_tracklet(root).values():
        if not any(r["occluded"] for r in frames):
            clean_visible += [r["visible_fraction"] for r in frames]
            continue
        pixels = np.stack([np.asarray(Image.open(root / r["path"]), dtype=np.float32) for r in frames])
        diff = np.abs(pixels - np.median(pixels, axis=0)).mean(axis=(1, 2, 3))
        for row, d in zip(frames, diff, strict=True):
            (occluded_diff if row["occluded"] else clean_diff).append(float(d))
            (occluded_visible if row["occluded"] else clean_visible).append(row["visible_fraction"])
    assert occluded_diff and clean_diff
    assert np.mean(occluded_diff) > 1.5 * np.mean(clean_diff)
    assert min(clean_visible) > 0.9 and np.mean(occluded_visible) < np.mean(clean_visible) - 0.15
    assert np.median(occluded_visible) < 0.9


def test_same_seed_same_bytes_whatever_the_workers_other_seed_differs(tracklets, tmp_path):
    root, summary = tracklets
    generate_tracklets(tmp_path / "again", **SMALL, workers=2)
    assert _bytes(tmp_path / "again") == _bytes(root)
    other = generate_tracklets(tmp_path / "other", **{**SMALL, "seed": 1}, workers=2)
    other_bytes = _bytes(tmp_path / "other")
    assert other_bytes != _bytes(root)
    assert other["frames"] == len([name for name in other_bytes if name.endswith(".jpg")])


def test_same_identities_and_groups_as_the_image_generator(tracklets, tmp_path):
    root, _ = tracklets
    generate(tmp_path / "images", ids=SMALL["ids"], cams=2, seed=SMALL["seed"], images_per_camera=2)
    images = json.loads((tmp_path / "images" / "meta.json").read_text())
    meta = json.loads((root / "meta.json").read_text())
    assert meta["groups"] == images["groups"]


def test_refuses_a_non_empty_output_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    small = {**SMALL, "ids": 2, "cams": 2, "frames": 3}
    with pytest.raises(OutputExistsError, match="not empty"):
        generate_tracklets(out, **small)
    assert (out / "keep.txt").read_text() == "mine"
    generate_tracklets(out, **small, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "frames.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no temp folder left behind"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="not a folder"):
        generate_tracklets(tmp_path / "file", **small)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"ids": 1}, "ids: expected an integer in \\[2"),
        ({"cams": 10}, "cams: expected an integer in \\[2, 9\\]"),
        ({"seed": -1}, "seed: expected a non-negative integer"),
        ({"difficulty": "extreme"}, "difficulty: expected one of easy, medium, hard"),
        ({"frames": (1, 4)}, "frames: expected 2 <= low <= high <= 1000"),
        ({"frames": (6, 4)}, "frames: expected 2 <= low <= high"),
        ({"frames": "8-24"}, "frames: expected an integer or a \\(low, high\\) pair"),
        ({"tracklets_per_camera": 0}, "tracklets_per_camera: expected 1 <= low"),
        ({"occlusion": 1.5}, "occlusion: expected a fraction of the tracklets in \\[0, 1\\]"),
        ({"occlusion": True}, "occlusion: expected a fraction"),
        ({"workers": 0}, "workers: expected a positive integer"),
    ],
)
def test_bad_arguments_are_refused_with_the_argument_named(tmp_path, arguments, message):
    with pytest.raises(ConfigError, match=message):
        generate_tracklets(tmp_path / "out", **{**SMALL, **arguments})
    assert not (tmp_path / "out").exists()


def test_apply_camera_with_fixed_values_matches_the_drawn_ones():
    level = _LEVELS["hard"]
    camera = draw.make_camera(np.random.default_rng(3), level)
    crop = Image.fromarray(np.random.default_rng(4).integers(0, 256, (draw.HEIGHT, draw.WIDTH, 3), np.uint8))
    drawn = draw.apply_camera(crop, camera, level, np.random.default_rng(5))
    rng = np.random.default_rng(5)  # the same draws, in the same order, passed in
    factor, radius = rng.uniform(*camera.downscale), rng.uniform(*camera.blur)
    light = camera.brightness * float(np.exp(level.image_light * rng.normal()))
    fixed = draw.apply_camera(crop, camera, level, rng, factor=factor, radius=radius, light=light)
    assert np.array_equal(np.asarray(drawn), np.asarray(fixed))


def test_read_frames_and_sheet(tracklets, tmp_path):
    root, _ = tracklets
    png = tracklet_sheet(tmp_path / "sheet.png", root, tracklets=3, frames=5)
    with Image.open(png) as sheet:
        assert sheet.height == 3 * (draw.HEIGHT + 26)
    with pytest.raises(ReidkitError, match="frames.csv: not found"):
        read_frames(tmp_path)


def test_cli_synth_tracklets(tmp_path, capsys):
    out, png = tmp_path / "video", tmp_path / "sheet.png"
    argv = ["synth", str(out), "--tracklets", "--ids", "4", "--cams", "2", "--frames", "4-5"]
    argv += ["--tracklets-per-camera", "1", "--occlusion", "0.5", "--workers", "1", "--quiet", "--json"]
    assert main([*argv, "--sheet", str(png)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[: printed.rindex("}") + 1])
    assert summary["ids"] == 4 and summary["frames"] == len(read_frames(out)) and png.is_file()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["params"]["frames"] == [4, 5] and meta["params"]["tracklets_per_camera"] == [1, 1]
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "images"), "--occlusion", "0.2", "--quiet"]) == 2
    assert "--occlusion is an option of tracklets" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "d"), "--tracklets", "--distractors", "2", "--quiet"]) == 2
    assert "--distractors: not available with --tracklets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", str(tmp_path / "e"), "--tracklets", "--frames", "9-3"])
    assert "expected LOW <= HIGH" in capsys.readouterr().err
