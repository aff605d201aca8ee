"""Ground-truth keypoints of the synthetic pedestrians: on the drawn figure, in the stored image's pixels,
hidden where an occluder or the crop hides them, and the images unchanged by them."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.data import _synth_draw as draw
from reidkit.data import synth
from reidkit.data._synth_body import person_keypoints
from reidkit.data._synth_pen import _Pen
from reidkit.data.keypoints import KEYPOINTS_NAME, read_keypoints

BODY = slice(5, 17)  # shoulders .. ankles
HEAD = slice(0, 5)


@pytest.fixture(scope="module")
def easy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_keypoints") / "set"
    synth.generate(root, ids=6, cams=3, seed=4, difficulty="easy", distractors=2, images_per_camera=2)
    return root


def test_the_file_covers_every_image_and_round_trips(easy):
    keypoints = read_keypoints(easy / KEYPOINTS_NAME)
    images = {p.relative_to(easy).as_posix() for p in easy.rglob("*.jpg")}
    assert set(keypoints.points) == images and any(
        name.startswith("bounding_box_test/0000_") for name in images
    )
    assert keypoints.source == "synthetic ground truth"
    first = sorted(images)[0]
    assert keypoints.get(easy / first).shape == (17, 3)
    assert sorted(p.name for p in easy.parent.iterdir()) == ["set"]  # written inside the staged folder


def test_aligned_unoccluded_pedestrians_have_head_on_top_and_ankles_at_the_bottom(easy):
    height, width = draw.HEIGHT, draw.WIDTH
    for name, points in read_keypoints(easy / KEYPOINTS_NAME).points.items():
        assert (points[BODY, 2] == 1).all(), name  # easy: no occluders, no partial boxes
        assert (points[BODY, 0] > 0).all() and (points[BODY, 0] < width).all()
        assert (points[HEAD, 1] < 0.25 * height).all(), name
        hips, ankles = points[11:13, 1], points[15:17, 1]
        assert (ankles > 0.8 * height).all() and (ankles < height).all(), name
        assert (
            points[HEAD, 1].max() < points[5:7, 1].min() < hips.min() < points[13:15, 1].min() < ankles.min()
        )


def _figure(view: int, facing: float, phase: float, look) -> tuple[np.ndarray, np.ndarray]:
    """A pedestrian drawn on black: (figure pixels [H, W] bool on the supersampled canvas, keypoints)."""
    canvas = Image.new("RGB", (draw.CANVAS_W * draw.SUPERSAMPLE, draw.CANVAS_H * draw.SUPERSAMPLE))
    where = dict(cx=draw.CANVAS_W / 2, top=draw.MARGIN_Y, height=draw.HEIGHT * 0.9, view=view, facing=facing)
    draw.draw_person(_Pen(canvas), look, phase=phase, **where)
    return np.asarray(canvas).any(axis=2), person_keypoints(look, phase=phase, **where)


@pytest.mark.parametrize("view", [0, 1, 2])
@pytest.mark.parametrize("facing", [-1.0, 1.0])
def test_every_joint_lies_on_the_drawn_figure_and_spans_it(view, facing):
    people, _ = synth._make_people(1, 6, 3, 0, 1)
    s = draw.SUPERSAMPLE
    for person in people:
        for phase in (0.0, 1.3, 4.0):
            figure, points = _figure(view, facing, phase, person.look)
            rows, columns = np.nonzero(figure)
            for x, y, _ in points:
                assert figure[int(y * s), int(x * s)], (view, facing, phase)
            top, bottom = rows.min() / s, (rows.max() + 1) / s
            tall = bottom - top
            assert points[HEAD, 1].max() < top + 0.15 * tall
            assert points[15:17, 1].min() > bottom - 0.1 * tall
            if view == 0:  # the person's left on the image's right
                assert (points[[1, 3, 5, 11], 0] > points[[2, 4, 6, 12], 0]).all()
                assert (points[HEAD, 2] == 1).all()
            elif view == 1:
                assert (points[[3, 5, 11], 0] < points[[4, 6, 12], 0]).all()
                assert list(points[HEAD, 2]) == [0, 0, 0, 1, 1]
            else:  # the nose points where the person walks; the far eye and ear are hidden
                assert (points[0, 0] - points[3, 0]) * facing > 0
                near_left = facing < 0
                assert list(points[HEAD, 2]) == [1, near_left, not near_left, near_left, not near_left]


def test_image_keypoints_follow_the_crop_and_the_cover():
    points = np.array([[10.0, 20.0, 1.0], [40.0, 70.0, 1.0], [5.0, 100.0, 1.0]], dtype=np.float32)
    s = draw.SUPERSAMPLE
    box = (8.0 * s, 18.0 * s, 72.0 * s, 146.0 * s)  # 64 x 128 canvas units from (8, 18): scale 1
    out = draw.image_keypoints(points, box, None)
    np.testing.assert_allclose(out[:, :2], [[2.0, 2.0], [32.0, 52.0], [-3.0, 82.0]], atol=1e-5)
    assert list(out[:, 2]) == [1, 1, 0]  # the third is left of the crop
    cover = Image.new("L", (draw.CANVAS_W * s, draw.CANVAS_H * s))
    cover.paste(255, (int(38 * s), int(68 * s), int(42 * s), int(72 * s)))
    assert list(draw.image_keypoints(points, box, cover)[:, 2]) == [1, 0, 0]
    half = (8.0 * s, 18.0 * s, 40.0 * s, 82.0 * s)  # half the size: coordinates double
    np.testing.assert_allclose(draw.image_keypoints(points, half, None)[:2, :2], [[4.0, 4.0], [64.0, 104.0]])


def _renders(level, count: int):
    """(image, keypoints, image without the occluder) for ``count`` seeds: the occluder is then drawn on a
    throwaway canvas, so it draws the same random numbers and the rest of the image is the same."""
    people, _ = synth._make_people(2, 4, 2, 0, 1)
    look, passer = people[0].look, people[1].look
    real = draw.draw_occluder

    def elsewhere(pen, camera, rng, other):
        real(_Pen(Image.new("RGB", pen.pen.image.size)), camera, rng, other)

    for seed in range(count):
        camera = draw.make_camera(np.random.default_rng(50 + seed), level)
        image, points = draw.render(look, camera, level, np.random.default_rng(seed), lambda: passer)
        draw.draw_occluder = elsewhere
        try:
            plain, same = draw.render(look, camera, level, np.random.default_rng(seed), lambda: passer)
        finally:
            draw.draw_occluder = real
        np.testing.assert_array_equal(points[BODY, :2], same[BODY, :2])
        yield np.asarray(image, dtype=np.int32), points, np.asarray(plain, dtype=np.int32)


def test_joints_under_an_occluder_are_hidden():
    level = dataclasses.replace(synth._LEVELS["hard"], occlusion=1.0, partial=0.0, shift=0.0)
    hidden = seen = seen_unchanged = 0
    for image, points, plain in _renders(level, 24):
        changed = np.abs(image - plain).sum(axis=2) > 0
        for x, y, visibility in points[BODY]:
            if not (0 <= x < draw.WIDTH and 0 <= y < draw.HEIGHT):
                continue
            if visibility == 0:
                hidden += 1
                assert changed[int(y), int(x)]  # the occluder is drawn there
            else:
                seen += 1
                seen_unchanged += not changed[int(y), int(x)]
    assert hidden >= 10
    assert seen_unchanged >= 0.9 * seen  # the rest: next to an occluder's (blurred) edge


def test_joints_cut_off_by_a_partial_box_are_hidden():
    level = dataclasses.replace(synth._LEVELS["hard"], occlusion=0.0, partial=1.0)
    cut = 0
    for _, points, _ in _renders(level, 12):
        outside = (
            (points[:, 0] < 0)
            | (points[:, 0] > draw.WIDTH)
            | (points[:, 1] < 0)
            | (points[:, 1] > draw.HEIGHT)
        )
        assert (points[outside, 2] == 0).all() and (points[BODY][~outside[BODY], 2] == 1).all()
        cut += int(outside.any())
    assert cut >= 6


def test_images_are_the_ones_drawn_before_keypoints_existed():
    # sha256 (first 16 hex digits) of render()'s pixels, taken before the keypoints were added
    level = dataclasses.replace(synth._LEVELS["hard"], occlusion=1.0)
    expected = ["e77fafedbc3d5d1b", "70bb2eea44b4f563", "47715770f390b5b8", "cf753003b3e1f28a"]
    found = []
    for seed in range(len(expected)):
        camera = draw.make_camera(np.random.default_rng(100 + seed), level)
        people, _ = synth._make_people(seed, 4, 2, 0, 1)
        look, passer = people[0].look, people[1].look
        image, _ = draw.render(look, camera, level, np.random.default_rng(seed), lambda passer=passer: passer)
        found.append(hashlib.sha256(np.asarray(image).tobytes()).hexdigest()[:16])
    assert found == expected
