"""Synthetic multi-camera video: MOTChallenge layout, global ids, events in the ground truth, pixels, atomicity."""

from __future__ import annotations

import configparser
import hashlib
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.cli import main
from reidkit.data import synth_video
from reidkit.data._synth_scene import DETECT_MIN_VISIBILITY
from reidkit.data.synth_video import OutputExistsError, generate_video
from reidkit.errors import ConfigError
from reidkit.track.detect import MotDetections
from reidkit.track.video import ImageFolderSource, VideoFileSource, open_source

SMALL = {"cams": 2, "ids": 6, "seconds": 20.0, "fps": 10.0, "size": (320, 180), "seed": 0}
LENGTH = 200


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """The small default set of these tests, with videos."""
    out = tmp_path_factory.mktemp("synth_video") / "out"
    assert generate_video(out, **SMALL, video=True) == out
    return out


def _gt(root: Path, camera: str) -> np.ndarray:
    """``[N, 9]`` rows of ``root/camera/gt/gt.txt``."""
    rows = np.loadtxt(root / camera / "gt" / "gt.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 9
    return rows


def _segments(frames: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive frame numbers: [(first, last), ...]."""
    frames = np.sort(frames.astype(int))
    breaks = np.flatnonzero(np.diff(frames) > 1)
    starts = [frames[0], *frames[breaks + 1]]
    ends = [*frames[breaks], frames[-1]]
    return list(zip(starts, ends, strict=True))


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_layout_seqinfo_and_meta(scene):
    assert sorted(p.name for p in scene.iterdir()) == ["c1", "c1.avi", "c2", "c2.avi", "meta.json"]
    for camera in ("c1", "c2"):
        parser = configparser.ConfigParser()
        parser.optionxform = str
        parser.read(scene / camera / "seqinfo.ini")
        info = dict(parser["Sequence"])
        assert info == {
            "name": camera,
            "imDir": "img1",
            "frameRate": "10",
            "seqLength": str(LENGTH),
            "imWidth": "320",
            "imHeight": "180",
            "imExt": ".jpg",
        }
        names = sorted(p.name for p in (scene / camera / "img1").iterdir())
        assert names == [f"{i:06d}.jpg" for i in range(1, LENGTH + 1)]
    meta = json.loads((scene / "meta.json").read_text())
    assert meta["params"] == {**SMALL, "size": [320, 180]}
    assert [(c["name"], c["start_time"], c["fps"], c["frames"]) for c in meta["cameras"]] == [
        ("c1", 0.0, 10.0, LENGTH),
        ("c2", 0.0, 10.0, LENGTH),
    ]
    transit = meta["transit_seconds"]["c1"]["c2"]
    assert transit == meta["transit_seconds"]["c2"]["c1"] and 3.0 <= transit <= 14.0


def test_sources_read_back(scene):
    for camera in ("c1", "c2"):
        source = open_source(scene / camera)
        assert isinstance(source, ImageFolderSource)
        assert (source.camera, source.fps, source.size, len(source)) == (camera, 10.0, (320, 180), LENGTH)
        indices = [frame.index for frame in source]
        assert indices == list(range(1, LENGTH + 1))
        video = open_source(scene / f"{camera}.avi")
        assert isinstance(video, VideoFileSource)
        assert (video.camera, video.fps, video.size) == (camera, 10.0, (320, 180))
        frames = list(video)
        assert len(frames) == LENGTH
        # the video holds the same pictures as img1/ (both JPEG-compressed, so close, not equal)
        image = np.asarray(
            Image.open(scene / camera / "img1" / "000050.jpg").convert("RGB"), dtype=np.float32
        )
        assert np.abs(frames[49].image[..., ::-1].astype(np.float32) - image).mean() < 4.0


def test_gt_rows_and_global_ids(scene):
    cameras_of = defaultdict(set)
    for camera in ("c1", "c2"):
        rows = _gt(scene, camera)
        frames, ids = rows[:, 0], rows[:, 1]
        x, y, w, h = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
        assert frames.min() >= 1 and frames.max() <= LENGTH and (frames == frames.astype(int)).all()
        assert set(ids.astype(int)) <= set(range(1, SMALL["ids"] + 1))
        assert (rows[:, 6] == 1).all() and (rows[:, 7] == 1).all()
        assert ((rows[:, 8] >= 0) & (rows[:, 8] <= 1)).all()
        assert ((w > 0) & (h > 0)).all()
        assert ((x < 320) & (x + w > 0) & (y < 180) & (y + h > 0)).all(), "every box overlaps the frame"
        assert len({(int(f), int(i)) for f, i in zip(frames, ids, strict=True)}) == len(rows), (
            "one row per id"
        )
        assert (np.diff(frames) >= 0).all(), "rows in frame order"
        cut = (x < 0) | (x + w > 320)
        assert cut.any() and (rows[cut, 8] < 1).all(), "boxes extend past the edge, visibility counts the cut"
        for pid in set(ids.astype(int)):
            cameras_of[pid].add(camera)
    assert set(cameras_of) == set(range(1, SMALL["ids"] + 1)), "every id is visible in some camera"
    assert any(len(cameras) > 1 for cameras in cameras_of.values()), "some id is seen by both cameras"


def test_reentry_and_cross_camera_reappearance(scene):
    visits = []  # (pid, camera, first, last)
    for camera in ("c1", "c2"):
        rows = _gt(scene, camera)
        for pid in set(rows[:, 1].astype(int)):
            for first, last in _segments(rows[rows[:, 1] == pid, 0]):
                visits.append((pid, camera, first, last))
    reentries = [
        (a, b)
        for a in visits
        for b in visits
        if a[0] == b[0] and a[1] == b[1] and b[2] > a[3] + 1 and b[2] - a[3] <= 60  # back within 6 s
    ]
    assert reentries, "someone leaves a camera and comes back into it"
    transits = [
        (a, b)
        for a in visits
        for b in visits
        if a[0] == b[0] and a[1] != b[1] and 10 <= b[2] - a[3] <= 200  # reappears 1..20 s later
    ]
    assert transits, "someone reappears in the other camera after a transit"
    meta = json.loads((scene / "meta.json").read_text())
    from_meta = sorted(
        (int(pid), v["camera"], v["first_frame"], v["last_frame"])
        for pid, vs in meta["visits"].items()
        for v in vs
    )
    assert from_meta == sorted(visits)


def test_occlusion_hides_the_farther_person(scene):
    found = 0
    for camera in ("c1", "c2"):
        by_frame = defaultdict(list)
        for row in _gt(scene, camera):
            by_frame[int(row[0])].append(row)
        for rows in by_frame.values():
            for a in rows:
                for b in rows:
                    overlap = (
                        a[2] < b[2] + b[4]
                        and b[2] < a[2] + a[4]
                        and a[3] < b[3] + b[5]
                        and b[3] < a[3] + a[5]
                    )
                    inside = a[2] >= 0 and a[2] + a[4] <= 320
                    near_b = b[3] + b[5] > a[3] + a[5]  # b's feet lower in the frame: b is nearer
                    if overlap and inside and near_b and a[8] < 0.95:
                        found += 1
    assert found >= 3, "people walk in front of each other and hide part of them"


def test_perspective_lower_is_bigger(scene):
    rows = _gt(scene, "c1")
    whole = rows[(rows[:, 8] == 1.0) & (rows[:, 2] >= 0) & (rows[:, 2] + rows[:, 4] <= 320)]
    assert len(whole) > 20
    feet, height = whole[:, 3] + whole[:, 5], whole[:, 5]
    assert np.corrcoef(feet, height)[0, 1] > 0.9


def test_boxes_match_pixels(scene):
    camera = "c1"
    images = np.stack(
        [np.asarray(Image.open(p), dtype=np.float32) for p in sorted((scene / camera / "img1").iterdir())]
    )
    background = np.median(images, axis=0)  # people move on: the median is the empty scene
    rows = _gt(scene, camera)
    checked = 0
    for row in rows:
        frame, x, y, w, h, visibility = int(row[0]), *(int(v) for v in row[2:6]), row[8]
        if visibility < 1.0 or x < 2 or y < 2 or x + w > 318 or y + h > 178 or h < 30:
            continue
        diff = np.abs(images[frame - 1] - background).mean(axis=2)
        inside = diff[y : y + h, x : x + w]
        assert inside.mean() > 12, f"frame {frame}: the box of id {int(row[1])} shows the background"
        assert inside[:, : max(1, w // 6)].max() > 30 and inside[:, -max(1, w // 6) :].max() > 30, "tight box"
        others = rows[(rows[:, 0] == frame) & (rows[:, 1] != row[1])]
        mask = np.zeros_like(diff, dtype=bool)
        mask[max(0, y - 6) : y + h + 6, max(0, x - 6) : x + w + 6] = True
        mask[y - 1 : y + h + 1, x - 1 : x + w + 1] = False  # a ring just outside the box
        for other in others:
            ox, oy, ow, oh = (int(v) for v in other[2:6])
            mask[max(0, oy - 2) : oy + oh + 2, max(0, ox - 2) : ox + ow + 2] = False
        if mask.sum() > 50:
            assert diff[mask].mean() < 4, (
                f"frame {frame}: the person of id {int(row[1])} spills out of the box"
            )
        checked += 1
        if checked >= 15:
            break
    assert checked >= 5


def test_detections_follow_the_ground_truth(scene):
    for camera in ("c1", "c2"):
        detections = MotDetections(scene / camera / "det" / "det.txt")
        gt = _gt(scene, camera)
        assert set(detections.frames) <= set(range(1, LENGTH + 1))
        found = missed_visible = visible = 0
        for row in gt:
            boxes = detections.boxes(int(row[0]))
            for det in boxes:
                x, y, w, h = det.box
                assert 0 <= x and 0 <= y and x + w <= 320 + 1e-6 and y + h <= 180 + 1e-6, "clipped to frame"
                assert 0.0 <= det.score <= 1.0
            gx0, gy0 = max(0.0, row[2]), max(0.0, row[3])
            gx1, gy1 = min(320.0, row[2] + row[4]), min(180.0, row[3] + row[5])
            best = 0.0
            for det in boxes:
                x, y, w, h = det.box
                iw = max(0.0, min(gx1, x + w) - max(gx0, x))
                ih = max(0.0, min(gy1, y + h) - max(gy0, y))
                inter = iw * ih
                best = max(best, inter / ((gx1 - gx0) * (gy1 - gy0) + w * h - inter))
            if row[8] >= 0.6:
                visible += 1
                found += best > 0.6
                missed_visible += best <= 0.3
        assert visible > 50
        assert found / visible > 0.85, "well visible people are detected, boxes close to the truth"
        assert missed_visible < visible, "and the detector is not perfect"
        invisible = gt[gt[:, 8] < DETECT_MIN_VISIBILITY]
        total = sum(len(detections.boxes(f)) for f in detections.frames)
        assert total < len(gt) - len(invisible) + 0.2 * LENGTH


def test_deterministic_per_seed(scene, tmp_path):
    again = generate_video(tmp_path / "again", **SMALL, video=True)
    assert _tree_digest(again) == _tree_digest(scene)
    other = generate_video(tmp_path / "other", **{**SMALL, "seed": 1})
    assert (other / "c1" / "gt" / "gt.txt").read_bytes() != (scene / "c1" / "gt" / "gt.txt").read_bytes()
    assert (other / "c1" / "img1" / "000001.jpg").read_bytes() != (
        scene / "c1" / "img1" / "000001.jpg"
    ).read_bytes()


def test_identities_are_distinct():
    looks = synth_video._make_looks(0, 12)
    pairs = {(look.top, look.bottom) for look in looks.values()}
    assert len(pairs) == 12
    assert synth_video._make_looks(0, 12) == looks


TINY = {"cams": 1, "ids": 2, "seconds": 1.0, "size": (96, 64)}


def test_failure_while_writing_leaves_no_output_and_no_temp_folder(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synth_video, "_write_sequence", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_video(tmp_path / "out", **TINY)
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_empty_output_and_overwrites_on_request(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        generate_video(out, **TINY)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    generate_video(out, **TINY, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["c1", "meta.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no temp folder left beside the output"
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_video(empty, **TINY)  # an empty folder is fine without overwrite
    assert (empty / "c1" / "seqinfo.ini").is_file()


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    real = synth_video.compose

    def failing(scene, figures):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return real(scene, figures)

    monkeypatch.setattr(synth_video, "compose", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_video(tmp_path / "out", **TINY)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("cams", 0),
        ("ids", 0),
        ("ids", 2.5),
        ("seconds", 0.0),
        ("seconds", math.nan),
        ("fps", -1.0),
        ("size", (32, 20)),
        ("size", "640x360"),
        ("seed", -1),
    ],
)
def test_bad_arguments_are_named(tmp_path, argument, value):
    with pytest.raises(ConfigError, match=f"^{argument}: expected"):
        generate_video(tmp_path / "out", **{**TINY, argument: value})
    assert not (tmp_path / "out").exists()


def test_cli_writes_the_layout(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth-video", str(out), "--cams", "2", "--ids", "2", "--seconds", "2", "--size", "128x72"]
    assert main([*args, "--fps", "5", "--seed", "3", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cameras"] == ["c1", "c2"] and summary["frames_per_camera"] == 10
    for camera in ("c1", "c2"):
        source = ImageFolderSource(out / camera)
        assert (len(source), source.size, source.fps) == (10, (128, 72), 5.0)
        assert (out / camera / "gt" / "gt.txt").is_file() and (out / camera / "det" / "det.txt").is_file()
    assert main([*args, "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--fps", "5", "--quiet", "--overwrite", "--video"]) == 0
    video = open_source(out / "c2.avi")
    assert (video.camera, video.fps, len(list(video))) == ("c2", 5.0, 10)
    with pytest.raises(SystemExit):
        main(["synth-video", str(tmp_path / "bad"), "--size", "wide"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
