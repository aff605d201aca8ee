"""Synthetic pedestrian generator: layout, protocol invariants, determinism, atomicity, drawing semantics."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.data import _synth_draw as draw
from reidkit.data import synth
from reidkit.data.synth import (
    ATTRIBUTES,
    DIFFICULTIES,
    OutputExistsError,
    contact_sheet,
    generate,
    read_attributes,
)
from reidkit.errors import ReidkitError

NAME = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_(\d{2})\.jpg$")
FOLDERS = ("bounding_box_train", "bounding_box_test", "query")


def _files(root: Path) -> dict[str, list[tuple[int, int, str]]]:
    """folder -> [(pid, cam from 1, name)] for every file (fails on anything that is not a Market name)."""
    found = {}
    for folder in FOLDERS:
        entries = []
        for path in sorted((root / folder).iterdir()):
            match = NAME.match(path.name)
            assert match, f"bad file name {path.name}"
            entries.append((int(match.group(1)), int(match.group(2)), path.name))
        found[folder] = entries
    return found


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "set"
    summary = generate(
        root, ids=10, cams=4, seed=3, difficulty="hard", distractors=3, images_per_camera=(2, 3)
    )
    return root, summary


def test_layout_names_and_images(dataset):
    root, summary = dataset
    assert sorted(p.name for p in root.iterdir()) == [
        "attributes.csv",
        "bounding_box_test",
        "bounding_box_train",
        "keypoints.json",
        "meta.json",
        "query",
    ]
    files = _files(root)
    for folder, entries in files.items():
        assert entries, folder
        assert all(1 <= cam <= 4 for _, cam, _ in entries)
    total = sum(len(entries) for entries in files.values())
    assert total == summary["images"]
    assert summary["train"]["images"] == len(files["bounding_box_train"])
    assert summary["query"]["images"] == len(files["query"])
    assert summary["gallery"]["images"] == len(files["bounding_box_test"])
    for folder in FOLDERS:
        for path in sorted((root / folder).iterdir())[:5]:
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.mode == "RGB" and image.size == (64, 128)


def test_train_and_test_identities_are_disjoint_and_cover_all_ids(dataset):
    root, _ = dataset
    files = _files(root)
    train = {pid for pid, _, _ in files["bounding_box_train"]}
    test = {pid for pid, _, _ in files["bounding_box_test"] + files["query"] if pid != 0}
    assert not train & test
    assert train | test == set(range(1, 11))
    assert len(train) == 5 and 0 not in train


def test_one_query_per_identity_per_camera_with_a_cross_camera_match(dataset):
    root, _ = dataset
    files = _files(root)
    query_count: dict[tuple[int, int], int] = defaultdict(int)
    for pid, cam, _ in files["query"]:
        query_count[pid, cam] += 1
    gallery_cams: dict[int, set[int]] = defaultdict(set)
    for pid, cam, _ in files["bounding_box_test"]:
        gallery_cams[pid].add(cam)
    assert set(query_count.values()) == {1}
    test_pids = {pid for pid, _ in query_count}
    for pid in test_pids:
        query_cams = {cam for p, cam in query_count if p == pid}
        assert len(query_cams) >= 2
        assert gallery_cams[pid] == query_cams  # every camera of the person has a query and gallery images
        for cam in query_cams:
            assert gallery_cams[pid] - {cam}, f"query {pid} c{cam} has no cross-camera gallery match"


def test_distractors_are_pid_zero_in_the_gallery_only(dataset):
    root, summary = dataset
    files = _files(root)
    distractor_images = [name for pid, _, name in files["bounding_box_test"] if pid == 0]
    assert len(distractor_images) == summary["distractor_images"]["images"] > 0
    assert summary["distractor_images"]["ids"] == 3
    assert all(pid != 0 for pid, _, _ in files["query"] + files["bounding_box_train"])
    assert len(set(distractor_images)) == len(distractor_images)


def test_attributes_csv_matches_ids_and_meta(dataset):
    root, _ = dataset
    with open(root / "attributes.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["pid", *ATTRIBUTES]
    attributes = read_attributes(root)
    assert sorted(attributes) == list(range(1, 11))
    meta = json.loads((root / "meta.json").read_text())
    assert meta["format_version"] == synth.FORMAT_VERSION
    assert meta["params"]["ids"] == 10 and meta["params"]["difficulty"] == "hard"
    for codes in attributes.values():
        for name, code in codes.items():
            assert 0 <= code < len(meta["attributes"][name]), name


def test_hard_negative_groups_share_colours_and_differ_in_details(dataset):
    root, _ = dataset
    meta = json.loads((root / "meta.json").read_text())
    attributes = read_attributes(root)
    grouped = [group for split in ("train", "test") for group in meta["groups"][split]]
    assert sorted(pid for group in grouped for pid in group) == list(range(1, 11))
    assert max(len(group) for group in grouped) == 5  # hard: groups of up to 6, 5 ids per split here
    for group in grouped:
        for key in ("top_colour", "bottom_colour", "pattern_colour", "bag_colour", "hat_colour"):
            assert len({attributes[pid][key] for pid in group}) == 1, key
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                differences = sum(attributes[first][d] != attributes[second][d] for d in synth._DETAILS)
                assert differences >= 3, (first, second)


def test_group_size_grows_with_difficulty(tmp_path):
    sizes = {}
    for difficulty in DIFFICULTIES:
        people, groups = synth._make_people(0, 40, 20, 0, synth._LEVELS[difficulty].group_size)
        sizes[difficulty] = max(len(group) for group in groups["test"])
        top_colours = [{p.codes["top_colour"] for p in people if p.pid in group} for group in groups["test"]]
        assert all(len(colours) == 1 for colours in top_colours)
    assert sizes == {"easy": 1, "medium": 3, "hard": 6}


def test_images_of_one_identity_vary_across_cameras_and_moments(dataset):
    root, _ = dataset
    by_pid: dict[int, list[np.ndarray]] = defaultdict(list)
    cam_means: dict[int, list[np.ndarray]] = defaultdict(list)
    for folder in FOLDERS:
        for path in sorted((root / folder).iterdir()):
            pid, cam = int(path.name[:4]), int(path.name[6])
            pixels = np.asarray(Image.open(path), dtype=np.float32)
            by_pid[pid].append(pixels)
            cam_means[cam].append(pixels.mean(axis=(0, 1)))
    images = by_pid[min(p for p in by_pid if p > 0)]
    assert len(images) >= 4
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert np.abs(images[i] - images[j]).mean() > 5.0  # never (near) copies of each other
    means = np.stack([np.mean(cam_means[cam], axis=0) for cam in sorted(cam_means)])
    assert np.ptp(means, axis=0).max() > 3.0  # cameras differ in colour / brightness


def _person_pixels(look: draw.Look, view: int) -> np.ndarray:
    canvas = Image.new("RGB", (draw.CANVAS_W * draw.SUPERSAMPLE, draw.CANVAS_H * draw.SUPERSAMPLE), (0, 0, 0))
    pen = draw._Pen(canvas)
    draw.draw_person(
        pen,
        look,
        cx=draw.CANVAS_W / 2,
        top=draw.MARGIN_Y,
        height=draw.HEIGHT * 0.9,
        view=view,
        facing=1.0,
        phase=0.3,
    )
    return np.asarray(canvas)


def _count(pixels: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(pixels == np.asarray(rgb, dtype=np.uint8), axis=-1).sum())


def _look(**changes) -> draw.Look:
    base = dict(
        build=1,
        height=1,
        hair_style=0,
        top_pattern=0,
        sleeves=1,
        logo=0,
        bottom_type=0,
        bag=0,
        hat=0,
        skin=(200, 150, 120),
        hair=(30, 20, 10),
        top=(40, 80, 180),
        pattern=(230, 230, 230),
        logo_rgb=(250, 10, 10),
        bottom=(20, 20, 20),
        shoes=(250, 250, 250),
        bag_rgb=(10, 250, 10),
        hat_rgb=(250, 250, 10),
    )
    base.update(changes)
    return draw.Look(**base)


def test_logo_shows_only_from_the_front():
    look = _look(logo=2)
    front, back, side = (_count(_person_pixels(look, view), look.logo_rgb) for view in (0, 1, 2))
    assert front > 100 and back == 0 and side == 0
    assert _count(_person_pixels(_look(logo=0), 0), look.logo_rgb) == 0


def test_backpack_shows_mostly_from_the_back_and_patterns_change_the_top():
    look = _look(bag=1)
    front, back, side = (_count(_person_pixels(look, view), look.bag_rgb) for view in (0, 1, 2))
    assert back > 3 * front > 0 and side > 0
    assert _count(_person_pixels(_look(), 1), look.bag_rgb) == 0
    for pattern in (1, 2):
        assert _count(_person_pixels(_look(top_pattern=pattern), 0), (230, 230, 230)) > 200
    assert _count(_person_pixels(_look(top_pattern=0), 0), (230, 230, 230)) == 0


def test_same_arguments_give_the_same_bytes_whatever_the_workers(tmp_path):
    arguments = dict(ids=12, cams=3, difficulty="hard", images_per_camera=3, distractors=2)
    first = generate(tmp_path / "a", seed=5, workers=1, **arguments)
    generate(tmp_path / "b", seed=5, workers=2, **arguments)
    generate(tmp_path / "c", seed=6, workers=1, **arguments)
    assert first["images"] >= 64  # large enough to go through the process pool
    a, b, c = (_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() != c.keys() or any(a[key] != c[key] for key in a)
    assert (tmp_path / "a" / "meta.json").read_bytes() == (tmp_path / "b" / "meta.json").read_bytes()


def test_distractors_do_not_change_the_other_images(tmp_path):
    generate(tmp_path / "plain", ids=6, cams=3, seed=2, images_per_camera=2)
    generate(tmp_path / "more", ids=6, cams=3, seed=2, images_per_camera=2, distractors=4)
    plain, more = _bytes(tmp_path / "plain"), _bytes(tmp_path / "more")
    images = [key for key in plain if key.endswith(".jpg")]
    assert images and all(plain[key] == more[key] for key in images)
    assert len([key for key in more if key.endswith(".jpg")]) > len(images)


def test_output_loads_with_the_market1501_parser(dataset):
    from reidkit.data.datasets import load_dataset

    root, summary = dataset
    split = load_dataset("market1501", root)
    assert len(split.train) == summary["train"]["images"]
    assert len(split.query) == summary["query"]["images"]
    assert len(split.gallery) == summary["gallery"]["images"]
    assert split.num_train_pids == 5
    assert {s.camid for s in split.query} <= set(range(4))


def test_existing_output_is_refused_then_replaced_with_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="overwrite"):
        generate(out, ids=4, cams=2, images_per_camera=2)
    assert isinstance(OutputExistsError("x"), ReidkitError)
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left behind
    generate(out, ids=4, cams=2, images_per_camera=2, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "meta.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    generate(empty, ids=4, cams=2, images_per_camera=2)  # an empty folder is fine
    assert (empty / "query").is_dir()


def test_failure_while_drawing_leaves_the_existing_output_untouched(tmp_path, monkeypatch):
    out = tmp_path / "out"
    generate(out, ids=4, cams=2, images_per_camera=2, seed=1)
    before = _bytes(out)
    calls = {"n": 0}
    real_render = draw.render

    def failing_render(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("disk on fire")
        return real_render(*args, **kwargs)

    monkeypatch.setattr(draw, "render", failing_render)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate(out, ids=4, cams=2, images_per_camera=2, seed=2, overwrite=True)
    assert _bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the temp folder is removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"ids": 1}, "ids"),
        ({"ids": 10_000}, "ids"),
        ({"cams": 1}, "cams"),
        ({"cams": 10}, "cams"),
        ({"difficulty": "extreme"}, "difficulty"),
        ({"seed": -1}, "seed"),
        ({"distractors": -2}, "distractors"),
        ({"images_per_camera": 1}, "images_per_camera"),
        ({"images_per_camera": (4, 3)}, "images_per_camera"),
        ({"images_per_camera": "many"}, "images_per_camera"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_raise_a_clear_value_error(tmp_path, arguments, field):
    with pytest.raises(ValueError, match=f"^{field}: expected"):
        generate(tmp_path / "out", **arguments)
    assert not any(tmp_path.iterdir())


def test_contact_sheet_tiles_identities(dataset, tmp_path):
    root, _ = dataset
    path = contact_sheet(tmp_path / "sheet.png", root, identities=3, per_identity=4)
    with Image.open(path) as image:
        assert image.size == (40 + 4 * 68, 3 * 142)
    with pytest.raises(ReidkitError, match="no query/gallery images"):
        contact_sheet(tmp_path / "none.png", tmp_path)
