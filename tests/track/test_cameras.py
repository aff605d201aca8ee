"""Camera inputs of a tracking run: paths, a folder of videos / sequences, a cameras YAML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from reidkit.errors import ConfigError
from reidkit.track.cameras import cameras_from_folder, cameras_from_paths, cameras_from_yaml


def _sequence(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "img1").mkdir(parents=True)
    (folder / "seqinfo.ini").write_text("[Sequence]\nname=x\n")
    return folder


def test_paths_name_cameras_by_stem_and_pair_detections(tmp_path):
    cameras = cameras_from_paths(
        [tmp_path / "lobby.avi", tmp_path / "street.mp4"], fps=12.5, start="1970-01-01T00:01:00Z",
        detections=[tmp_path / "a.txt", tmp_path / "b.txt"],
    )
    assert [c.name for c in cameras] == ["lobby", "street"]
    assert [c.detections for c in cameras] == [tmp_path / "a.txt", tmp_path / "b.txt"]
    assert all(c.fps == 12.5 and c.start == 60.0 for c in cameras)


def test_duplicate_names_and_unpaired_detections_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="two cameras are named 'cam'"):
        cameras_from_paths([tmp_path / "a" / "cam.avi", tmp_path / "b" / "cam.mp4"])
    with pytest.raises(ConfigError, match="one --detections file per camera"):
        cameras_from_paths([tmp_path / "a.avi"], detections=[])
    with pytest.raises(ConfigError, match="start"):
        cameras_from_paths([tmp_path / "a.avi"], start="yesterday")


def test_folder_lists_videos_and_sequences_and_finds_their_detections(tmp_path):
    seq = _sequence(tmp_path, "MOT-02")
    (seq / "det").mkdir()
    (seq / "det" / "det.txt").write_text("")
    (tmp_path / "cam2.avi").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a video")
    cameras = cameras_from_folder(tmp_path)
    assert [c.name for c in cameras] == ["MOT-02", "cam2"]
    assert cameras[0].detection_file() == seq / "det" / "det.txt"
    assert cameras[1].detection_file() is None
    with pytest.raises(ConfigError, match="holds no video file"):
        cameras_from_folder(seq / "img1")


def test_yaml_cameras_and_transit_windows(tmp_path):
    (tmp_path / "cams.yaml").write_text(
        "cameras:\n"
        "  - {name: lobby, source: v/lobby.avi, fps: 25, start: 10, detections: d/lobby.txt}\n"
        "  - {source: v/street.avi}\n"
        "transit:\n  - [lobby, street, 5, 60]\n"
    )
    cameras, transit = cameras_from_yaml(tmp_path / "cams.yaml")
    assert [(c.name, c.fps, c.start) for c in cameras] == [("lobby", 25.0, 10.0), ("street", None, 0.0)]
    assert cameras[0].source == tmp_path / "v" / "lobby.avi"
    assert cameras[0].detection_file() == tmp_path / "d" / "lobby.txt"
    assert transit == {("lobby", "street"): (5.0, 60.0)}


@pytest.mark.parametrize(
    "text, message",
    [
        ("cameras: 3\n", "must be a mapping with a 'cameras' list"),
        ("cameras:\n  - {name: a}\n", r"cameras\[0\]: must be a mapping with at least 'source'"),
        ("cameras:\n  - {source: a.avi, zoom: 2}\n", r"cameras\[0\]: unknown keys \['zoom'\]"),
        ("cameras:\n  - {source: a.avi, fps: -1}\n", "fps must be a positive number"),
        ("cameras:\n  - {source: a.avi}\ntransit:\n  - [a, b, 1, 2]\n", "transit names camera 'b'"),
        ("cameras:\n  - {source: a.avi}\ntransit:\n  - [a, a, 5, 1]\n", "0 <= min_s <= max_s"),
        ("cameras: [\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "cams.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        cameras_from_yaml(path)
    assert str(path) in str(error.value)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cameras_from_yaml(tmp_path / "none.yaml")
