"""Annotated video: boxes and ids land on the right frames; the file appears only when complete."""

from __future__ import annotations

import numpy as np
import pytest

from reidkit.track.render import colour_of, draw_frame, render_camera
from reidkit.track.video import FrameSource

cv2 = pytest.importorskip("cv2")


class _Grey(FrameSource):
    def __init__(self, frames: int, fail_at: int | None = None) -> None:
        self.camera, self.fps, self.size = "cam", 10.0, (160, 120)
        self._length, self.fail_at = frames, fail_at

    def __iter__(self):
        for index in range(1, self._length + 1):
            if index == self.fail_at:
                raise RuntimeError("decoder failed")
            yield self._frame(index, np.full((120, 160, 3), 90, np.uint8))


def test_draw_frame_draws_the_box_in_the_identity_colour():
    image = np.zeros((120, 160, 3), np.uint8)
    out = draw_frame(image, np.array([[1, 7, 40, 30, 50, 60, 1.0]]), thickness=2)
    assert image.sum() == 0  # the input is not modified
    assert tuple(out[60, 40]) == colour_of(7)  # left edge of the box
    assert tuple(out[60, 65]) == (0, 0, 0)  # inside the box stays untouched
    assert colour_of(1) != colour_of(2)


def test_render_writes_every_frame_with_boxes_only_where_the_rows_say(tmp_path):
    rows = np.array([[f, 3, 20, 20, 40, 60, 1.0] for f in (2, 3)])
    out = render_camera(_Grey(5), rows, tmp_path / "cam.webm")
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image.astype(int))
    assert len(frames) == 5
    box_edge = [abs(f[50, 20] - 90).sum() for f in frames]  # left edge pixel of the box
    assert box_edge[1] > 60 and box_edge[2] > 60
    assert box_edge[0] < 30 and box_edge[3] < 30 and box_edge[4] < 30


def test_an_interrupted_render_leaves_no_file(tmp_path):
    target = tmp_path / "cam.webm"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="decoder failed"):
        render_camera(_Grey(5, fail_at=3), np.zeros((0, 7)), target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam.webm"]


def test_render_needs_webm(tmp_path):
    from reidkit.errors import ReidkitError

    with pytest.raises(ReidkitError, match="must end in .webm"):
        render_camera(_Grey(1), np.zeros((0, 7)), tmp_path / "cam.mp4")
