"""Crops of a tracking run for adaptation: spread over each tracklet, the right pixels, groups and cannot-links."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.adapt.run_crops import MANIFEST_NAME, cannot_link_pairs, extract_run_crops
from reidkit.errors import DatasetError
from reidkit.track.records import Tracklet
from reidkit.track.runfiles import CameraInfo, RunInfo, write_run

SIZE = (96, 64)  # width, height of the frames
FRAMES = 12
#: camera, local id, first frame, last frame, colour (RGB), box x: each tracklet is a flat rectangle
TRACKS = [
    ("cam1", 1, 1, 10, (200, 30, 30), 4),
    ("cam1", 2, 6, 12, (30, 200, 30), 40),  # shares frames 6..10 with track 1: two people
    ("cam1", 3, 11, 12, (30, 30, 200), 70),  # after track 1 ends, beside track 2
    ("cam2", 1, 1, 12, (200, 200, 30), 10),
]
BOX_W, BOX_H = 16, 40


def _sequence(folder: Path, camera: str) -> Path:
    images = folder / "img1"
    images.mkdir(parents=True)
    for frame in range(1, FRAMES + 1):
        canvas = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        for name, _, first, last, colour, x in TRACKS:
            if name == camera and first <= frame <= last:
                canvas[10 : 10 + BOX_H, x : x + BOX_W] = colour
        Image.fromarray(canvas).save(images / f"{frame:06d}.png")
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={camera}\nimDir=img1\nframeRate=10\nseqLength={FRAMES}\n"
        f"imWidth={SIZE[0]}\nimHeight={SIZE[1]}\nimExt=.png\n"
    )
    return folder


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    cameras = [
        CameraInfo(name, str(_sequence(tmp_path / name, name)), 10.0, 0.0, SIZE, FRAMES) for name in ("cam1", "cam2")
    ]
    tracklets = []
    for camera, local, first, last, _, x in TRACKS:
        frames = np.arange(first, last + 1)
        boxes = np.tile([x, 10, BOX_W, BOX_H], (len(frames), 1)).astype(np.float64)
        tracklets.append(Tracklet(camera, local, frames, boxes, np.ones(len(frames)), 10.0))
    write_run(run, RunInfo(cameras, {"name": None, "fingerprint": None, "dim": None}), tracklets)
    return run


def test_crops_groups_and_cannot_links(tmp_path):
    crops = extract_run_crops(_run(tmp_path), tmp_path / "crops", per_tracklet=4, aspect=0.4)
    assert crops.tracklets == (("cam1", 1), ("cam1", 2), ("cam1", 3), ("cam2", 1))
    per_group = np.bincount(crops.groups)
    assert per_group.tolist() == [4, 4, 2, 4]  # track 3 has only two frames
    assert crops.cannot_link == ((0, 1), (1, 2))  # 1 and 3 never share a frame: they may be one person
    for sample, group in zip(crops.samples, crops.groups, strict=True):
        colour = TRACKS[group][4]
        pixels = np.asarray(Image.open(sample.path).convert("RGB"), dtype=np.int32)
        assert pixels.shape[0] == BOX_H and pixels.shape[1] == BOX_H * 0.4  # widened to the aspect
        centre = pixels[BOX_H // 2, pixels.shape[1] // 2]
        assert np.abs(centre - np.array(colour)).max() <= 6, (sample.path, centre, colour)
        assert sample.pid == -1 and sample.camid == (1 if TRACKS[group][0] == "cam2" else 0)
    # frames spread over the span: first and last frames of track 1 are among its crops
    names = sorted(Path(s.path).name for s, g in zip(crops.samples, crops.groups, strict=True) if g == 0)
    assert names[0] == "00001_000001.jpg" and names[-1] == "00001_000010.jpg"


def test_a_second_call_reads_the_manifest_and_new_settings_redo_the_crops(tmp_path, monkeypatch):
    run = _run(tmp_path)
    first = extract_run_crops(run, tmp_path / "crops", per_tracklet=3)
    manifest = json.loads((tmp_path / "crops" / MANIFEST_NAME).read_text())
    assert len(manifest["crops"]) == len(first.samples)

    def no_video(*args, **kwargs):
        raise AssertionError("the video was decoded again")

    monkeypatch.setattr("reidkit.track.video.open_source", no_video)
    again = extract_run_crops(run, tmp_path / "crops", per_tracklet=3)
    assert again.samples == first.samples and again.groups.tolist() == first.groups.tolist()
    assert again.cannot_link == first.cannot_link
    monkeypatch.undo()
    more = extract_run_crops(run, tmp_path / "crops", per_tracklet=5)
    assert len(more.samples) > len(first.samples)


def test_cannot_link_pairs_need_a_shared_frame():
    class T:
        def __init__(self, camera, frames):
            self.camera, self.frames = camera, np.array(frames)

    tracks = [T("a", [1, 3, 5]), T("a", [2, 4, 6]), T("a", [5, 9]), T("b", [1, 3, 5])]
    # spans overlap but frames interleave: 0 and 1 never share a frame; 0 and 2 share frame 5
    assert cannot_link_pairs(tracks) == [(0, 2)]


def test_bad_runs_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="--tracks"):
        extract_run_crops(tmp_path / "nothing", tmp_path / "crops")
    run = _run(tmp_path)
    with pytest.raises(DatasetError, match="min_height|no tracklet"):
        extract_run_crops(run, tmp_path / "crops", min_height=100)
    assert not (tmp_path / "crops").exists()  # nothing half-written
    for image in (tmp_path / "cam2" / "img1").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match="camera 'cam2': cannot read its source"):
        extract_run_crops(run, tmp_path / "crops")
    assert not (tmp_path / "crops").exists()
