"""Crops of a tracking run for adaptation: spread over each tracklet, the right pixels, groups and cannot-links."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from run_data import BOX_H, TRACKS, write_tracking_run

from reidkit.adapt.run_crops import MANIFEST_NAME, cannot_link_pairs, extract_run_crops
from reidkit.errors import DatasetError


def test_crops_groups_and_cannot_links(tmp_path):
    crops = extract_run_crops(write_tracking_run(tmp_path), tmp_path / "crops", per_tracklet=4, aspect=0.4)
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
    run = write_tracking_run(tmp_path)
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
    run = write_tracking_run(tmp_path)
    with pytest.raises(DatasetError, match="min_height|no tracklet"):
        extract_run_crops(run, tmp_path / "crops", min_height=100)
    assert not (tmp_path / "crops").exists()  # nothing half-written
    for image in (tmp_path / "cam2" / "img1").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match="camera 'cam2': cannot read its source"):
        extract_run_crops(run, tmp_path / "crops")
    assert not (tmp_path / "crops").exists()
