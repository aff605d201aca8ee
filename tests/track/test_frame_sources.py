"""Frame sources: a generated MJPG video and a generated MOTChallenge image folder, and every bad-input case."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from reidkit.errors import DatasetError
from reidkit.track import Frame, FrameSource, ImageFolderSource, VideoFileSource, open_source

cv2 = pytest.importorskip("cv2")

WIDTH, HEIGHT = 64, 48


def _image(index: int) -> np.ndarray:
    """A frame whose mean brightness encodes its 1-based index (survives JPEG compression)."""
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, :] = (20 * index) % 250
    image[:, :, 2] = 200  # a fixed red channel: BGR order is checked
    return image


def _write_video(path: Path, frames: int, fps: float = 12.5) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for index in range(1, frames + 1):
        writer.write(_image(index))
    writer.release()
    return path


def _write_sequence(
    root: Path, length: int = 5, fps: int = 25, name: str | None = "MOT-01", **seqinfo
) -> Path:
    folder = root / (name or "unnamed")
    (folder / "img1").mkdir(parents=True)
    for index in range(1, length + 1):
        assert cv2.imwrite(str(folder / "img1" / f"{index:06d}.png"), _image(index))
    fields = {
        "name": name,
        "imDir": "img1",
        "frameRate": fps,
        "seqLength": length,
        "imWidth": WIDTH,
        "imHeight": HEIGHT,
        "imExt": ".png",
    }
    fields.update(seqinfo)
    lines = ["[Sequence]"] + [f"{key}={value}" for key, value in fields.items() if value is not None]
    (folder / "seqinfo.ini").write_text("\n".join(lines) + "\n")
    return folder


def test_video_file_streams_1_based_frames(tmp_path):
    path = _write_video(tmp_path / "cam_a.avi", frames=6, fps=12.5)
    source = VideoFileSource(path)
    assert isinstance(source, FrameSource)
    assert (source.camera, source.fps, source.size, len(source)) == ("cam_a", 12.5, (WIDTH, HEIGHT), 6)
    iterator = iter(source)
    assert isinstance(iterator, types.GeneratorType)  # streamed, not a list of decoded frames
    frames = list(iterator)
    assert [frame.index for frame in frames] == [1, 2, 3, 4, 5, 6]
    assert [frame.time_s for frame in frames] == pytest.approx([i / 12.5 for i in range(6)])
    for frame in frames:
        assert isinstance(frame, Frame)
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8
        assert abs(float(frame.image[:, :, 0].mean()) - (20 * frame.index) % 250) < 8
        assert frame.image[:, :, 2].mean() > 180
    assert [frame.index for frame in source] == [1, 2, 3, 4, 5, 6]  # iterating again starts again
    with pytest.raises(AttributeError):
        frames[0].index = 5


def test_video_file_camera_and_fps_overrides(tmp_path):
    path = _write_video(tmp_path / "x.avi", frames=3, fps=10)
    source = open_source(path, camera="gate", fps=4)
    assert isinstance(source, VideoFileSource)
    assert (source.camera, source.fps) == ("gate", 4.0)
    assert [frame.time_s for frame in source] == pytest.approx([0.0, 0.25, 0.5])


def test_video_file_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="missing.avi.*does not exist"):
        VideoFileSource(tmp_path / "missing.avi")
    with pytest.raises(DatasetError, match="missing.avi.*does not exist"):
        open_source(tmp_path / "missing.avi")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(DatasetError, match="garbage.avi.*(cannot be opened|no decodable frame)"):
        VideoFileSource(garbage)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.avi.*(cannot be opened|no decodable frame)"):
        VideoFileSource(empty)
    no_frames = _write_video(tmp_path / "noframes.avi", frames=0)
    with pytest.raises(DatasetError, match="noframes.avi.*(cannot be opened|no decodable frame)"):
        VideoFileSource(no_frames)
    good = _write_video(tmp_path / "good.avi", frames=2)
    with pytest.raises(DatasetError, match="good.avi.*frame rate"):
        VideoFileSource(good, fps=0)


def test_truncated_video_is_an_error_or_fewer_frames(tmp_path):
    """A video cut in the middle never yields a wrong frame: it fails clearly or stops early."""
    path = _write_video(tmp_path / "cut.avi", frames=8)
    data = path.read_bytes()
    cut = tmp_path / "cut_half.avi"
    cut.write_bytes(data[: len(data) // 2])
    try:
        source = VideoFileSource(cut)
    except DatasetError as error:
        assert "cut_half.avi" in str(error)
        return
    frames = list(source)
    assert 1 <= len(frames) <= 8
    assert [frame.index for frame in frames] == list(range(1, len(frames) + 1))


def test_image_folder_reads_seqinfo_and_streams(tmp_path):
    folder = _write_sequence(tmp_path, length=5, fps=25)
    source = open_source(folder)
    assert isinstance(source, ImageFolderSource)
    assert (source.camera, source.fps, source.size, len(source)) == ("MOT-01", 25.0, (WIDTH, HEIGHT), 5)
    iterator = iter(source)
    assert isinstance(iterator, types.GeneratorType)
    frames = list(iterator)
    assert [frame.index for frame in frames] == [1, 2, 3, 4, 5]
    assert [frame.time_s for frame in frames] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])
    for frame in frames:  # png is lossless: exact pixels, BGR order
        np.testing.assert_array_equal(frame.image, _image(frame.index))
    assert ImageFolderSource(folder, camera="c2", fps=5).camera == "c2"
    assert ImageFolderSource(folder, camera="c2", fps=5).fps == 5.0


def test_image_folder_default_imdir_and_extension_without_dot(tmp_path):
    folder = _write_sequence(tmp_path, length=2, imDir=None, imExt="png")
    source = ImageFolderSource(folder)
    assert [frame.index for frame in source] == [1, 2]


@pytest.mark.parametrize(
    ("seqinfo", "message"),
    [
        ({"frameRate": None}, r"seqinfo.ini.*lacks the field\(s\) frameRate"),
        ({"name": None, "imExt": None}, r"seqinfo.ini.*lacks the field\(s\) name, imExt"),
        ({"frameRate": "fast"}, "seqinfo.ini.*field frameRate.*positive"),
        ({"frameRate": -3}, "seqinfo.ini.*field frameRate.*positive"),
        ({"seqLength": "five"}, "seqinfo.ini.*field seqLength.*positive integer.*'five'"),
        ({"imWidth": 0}, "seqinfo.ini.*field imWidth.*positive integer"),
        ({"seqLength": 7}, r"img1.*lacks 2 of the 7 frames.*seqLength=7.*first '000006.png'"),
        ({"seqLength": 3}, r"img1.*holds 2 .png file\(s\) beyond seqLength=3.*first '000004.png'"),
        ({"imExt": ".jpg"}, r"img1.*lacks 5 of the 5 frames.*imExt=.jpg"),
        ({"imWidth": 65}, "000001.png.*is 64x48 but.*seqinfo.ini.*imWidth=65, imHeight=48"),
        ({"imDir": "images"}, "images.*named by.*seqinfo.ini.*imDir.*does not exist"),
    ],
)
def test_bad_seqinfo_names_file_and_field(tmp_path, seqinfo, message):
    folder = _write_sequence(tmp_path, length=5, **seqinfo)
    with pytest.raises(DatasetError, match=message):
        ImageFolderSource(folder)


def test_bad_sequence_folders(tmp_path):
    with pytest.raises(DatasetError, match="nowhere.*does not exist"):
        ImageFolderSource(tmp_path / "nowhere")
    (tmp_path / "bare").mkdir()
    with pytest.raises(DatasetError, match="bare.*seqinfo.ini.*does not exist"):
        open_source(tmp_path / "bare")
    no_section = _write_sequence(tmp_path, name="nosec")
    (no_section / "seqinfo.ini").write_text("name=nosec\n")
    with pytest.raises(DatasetError, match="seqinfo.ini.*not a valid ini file"):
        ImageFolderSource(no_section)
    other_section = _write_sequence(tmp_path, name="other")
    (other_section / "seqinfo.ini").write_text("[Other]\nname=x\n")
    with pytest.raises(DatasetError, match=r"seqinfo.ini.*no \[Sequence\] section"):
        ImageFolderSource(other_section)


def test_image_checked_as_it_is_read(tmp_path):
    """A later frame that is corrupt or of another size fails when it is reached, naming the image."""
    folder = _write_sequence(tmp_path, length=4)
    source = ImageFolderSource(folder)
    (folder / "img1" / "000003.png").write_bytes(b"not a png")
    frames = iter(source)
    assert [next(frames).index, next(frames).index] == [1, 2]
    with pytest.raises(DatasetError, match="000003.png.*cannot be read"):
        next(frames)
    assert cv2.imwrite(str(folder / "img1" / "000003.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DatasetError, match="000003.png.*is 10x10 but.*imWidth=64, imHeight=48"):
        list(source)


def test_frame_source_len_unknown_is_a_type_error():
    class Endless(FrameSource):
        camera, fps, size = "live", 5.0, (1, 1)

    with pytest.raises(TypeError, match="'live'.*not known"):
        len(Endless())
    assert Endless().num_frames is None
