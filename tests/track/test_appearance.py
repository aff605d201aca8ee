"""Appearance of a track: box quality by hand, crop sampling, batched embedding and the tracklet feature."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reidkit.embed.aggregate import quality_weighted_mean
from reidkit.track.appearance import (
    FALLBACK_WEIGHT,
    AppearanceSettings,
    Crop,
    CropSampler,
    box_quality,
    embed_tracks,
    summarise,
)

SETTINGS = AppearanceSettings(min_height=48, edge_margin=4, max_overlap=0.3)
FRAME = (320, 240)


def _quality(*boxes, settings=SETTINGS):
    return box_quality(np.array(boxes, dtype=np.float64), FRAME, settings)


def test_box_quality_size_and_edges_by_hand():
    quality = _quality(
        (10, 10, 40, 96),  # h = 2 min_height: size 1
        (100, 10, 30, 48),  # h = min_height: size 0.5
        (200, 10, 20, 47.9),  # shorter than min_height: 0
        (2, 150, 30, 60),  # 2 px from the left edge (< margin 4): cut
        (286, 10, 30, 60),  # right side at 316 = 320 - 4: still inside, size 60 / 96
        (287, 100, 30, 60),  # right side at 317: cut
        (150, 180, 30, 57),  # bottom at 237 > 236: cut
        (150, 100, 30, 72),  # size 0.75
    )
    np.testing.assert_allclose(quality, [1.0, 0.5, 0.0, 0.0, 0.625, 0.0, 0.0, 0.75])
    assert _quality((4, 4, 30, 200)).tolist() == [1.0]  # capped at 1, touching the margin is inside
    assert box_quality(np.zeros((0, 4)), FRAME, SETTINGS).shape == (0,)


def test_box_quality_overlap_by_hand():
    # 10 px of 40 shared, full height: each covered by 720 / 2880 = 0.25 -> 0.75 * (1 - 0.25)
    np.testing.assert_allclose(_quality((150, 120, 40, 72), (180, 120, 40, 72)), [0.5625, 0.5625])
    # 15 px of 30 shared: covered by 0.5 > max_overlap -> both 0
    np.testing.assert_allclose(_quality((240, 150, 30, 60), (255, 150, 30, 60)), [0.0, 0.0])
    # a small box inside a big one: the small is covered fully, the big by 1000 / 6000 of its area
    np.testing.assert_allclose(_quality((20, 130, 60, 100), (30, 140, 20, 50)), [1 - 1 / 6, 0.0])
    # the largest overlap counts, not the sum: two neighbours covering 0.2 each
    q = _quality((100, 50, 50, 96), (144, 50, 50, 96), (56, 50, 50, 96))
    np.testing.assert_allclose(q[0], 1 - 6 / 50)
    # the threshold is inclusive: exactly max_overlap passes
    edge = AppearanceSettings(min_height=48, edge_margin=4, max_overlap=0.25)
    np.testing.assert_allclose(_quality((150, 120, 40, 72), (180, 120, 40, 72), settings=edge), [0.5625] * 2)


def _image(value: int = 100) -> np.ndarray:
    return np.full((240, 320, 3), value, np.uint8)


def _sampler(**kw) -> CropSampler:
    settings = AppearanceSettings(**{"samples_per_track": 3, "min_spacing_frames": 0, **kw})
    return CropSampler(settings, input_size=(64, 32))


def test_sampler_keeps_the_best_few():
    sampler = _sampler()
    qualities = [0.1, 0.9, 0.3, 0.8, 0.2, 0.7, 0.05]
    for frame, q in enumerate(qualities, start=1):
        sampler.offer(7, frame, _image(frame), (10, 10, 20, 40), q)
        assert sampler.held <= 3
    crops = sampler.pop(7)
    assert [c.frame for c in crops] == [2, 4, 6]  # the three best, in frame order
    assert [c.quality for c in crops] == [0.9, 0.8, 0.7]
    assert [int(c.pixels[0, 0, 0]) for c in crops] == [2, 4, 6]  # each crop holds its own frame's pixels
    assert sampler.pop(7) == [] and sampler.held == 0


def test_sampler_spacing_and_replacement():
    sampler = _sampler(samples_per_track=10, min_spacing_frames=5)
    for frame, q in [(1, 0.5), (3, 0.6), (4, 0.4), (8, 0.5), (9, 0.55), (12, 0.1), (13, 0.3), (20, 0.2)]:
        sampler.offer(1, frame, _image(), (10, 10, 20, 40), q)
    crops = sampler.pop(1)
    # 3 replaces 1 (better, too close); 4 loses to 3; 9 replaces 8; 12 and 13 are too close to 9 and worse
    assert [(c.frame, c.quality) for c in crops] == [(3, 0.6), (9, 0.55), (20, 0.2)]


def test_sampler_spacing_holds_for_any_offer_order():
    rng = np.random.default_rng(0)
    for _ in range(30):
        sampler = _sampler(samples_per_track=4, min_spacing_frames=5)
        frames = rng.permutation(40) + 1
        for frame in frames:
            sampler.offer(1, int(frame), _image(), (10, 10, 20, 40), float(rng.uniform(0.1, 1)))
        kept = [c.frame for c in sampler.pop(1)]
        assert all(abs(a - b) >= 5 for a, b in itertools.combinations(kept, 2)), kept
    # a crop close to two kept ones must beat both of them
    sampler = _sampler(samples_per_track=4, min_spacing_frames=5)
    for frame, q in [(1, 0.5), (6, 0.6), (4, 0.55)]:
        sampler.offer(1, frame, _image(), (10, 10, 20, 40), q)
    assert [c.frame for c in sampler.pop(1)] == [1, 6]
    for frame, q in [(1, 0.5), (6, 0.6), (4, 0.7)]:
        sampler.offer(1, frame, _image(), (10, 10, 20, 40), q)
    assert [c.frame for c in sampler.pop(1)] == [4]


def test_sampler_copies_pixels_and_converts_to_rgb():
    sampler = _sampler()
    image = _image()
    image[10:50, 10:30] = (255, 0, 0)  # BGR blue
    sampler.offer(1, 1, image, (10, 10, 20, 40), 0.5)
    image[:] = 0
    (crop,) = sampler.pop(1)
    assert crop.pixels.shape == (40, 20, 3)
    assert (crop.pixels == (0, 0, 255)).all()  # RGB blue, unchanged by the frame being overwritten


def test_sampler_widens_narrow_boxes_with_frame_pixels():
    image = _image(50)
    image[20:100, 100:120] = (0, 0, 255)  # a 20 x 80 red figure (BGR) on dark grey
    wide = CropSampler(AppearanceSettings(), input_size=(256, 128))  # aspect 0.5: 80 high -> 40 wide
    wide.offer(1, 1, image, (100, 20, 20, 80), 0.5)
    (crop,) = wide.pop(1)
    assert crop.pixels.shape == (80, 40, 3)
    assert (crop.pixels[:, :10] == 50).all() and (crop.pixels[:, 30:] == 50).all()  # the frame around it
    assert (crop.pixels[:, 10:30] == (255, 0, 0)).all()  # the figure, centred, RGB red
    narrow = CropSampler(AppearanceSettings(widen=False), input_size=(256, 128))
    narrow.offer(1, 1, image, (100, 20, 20, 80), 0.5)
    assert narrow.pop(1)[0].pixels.shape == (80, 20, 3)
    # at the frame edge the widened box is clipped to the frame
    edge = CropSampler(AppearanceSettings(), input_size=(256, 128))
    edge.offer(1, 1, image, (2, 20, 20, 80), 0.5)
    assert edge.pop(1)[0].pixels.shape == (80, 32, 3)  # columns -8..32 clipped to 0..32


def test_sampler_downscales_tall_crops():
    sampler = CropSampler(AppearanceSettings(), input_size=(64, 32))  # at most 96 rows
    sampler.offer(1, 1, _image(), (10, 10, 120, 200), 0.5)  # wider than the aspect: not widened
    assert sampler.pop(1)[0].pixels.shape == (96, 58, 3)  # 120 * 96 / 200 = 57.6 columns


def test_sampler_fallback_crop_when_nothing_passes():
    sampler = _sampler()
    sampler.offer(1, 1, _image(1), (10, 10, 20, 40), 0.0)
    sampler.offer(1, 2, _image(2), (10, 10, 30, 60), 0.0)  # larger: becomes the fallback
    sampler.offer(1, 3, _image(3), (10, 10, 20, 40), 0.0)
    assert sampler.held == 1
    (crop,) = sampler.pop(1)
    assert (crop.frame, crop.quality, int(crop.pixels[0, 0, 0])) == (2, FALLBACK_WEIGHT, 2)
    # one passing box replaces the fallback, and later failing boxes make no new fallback
    sampler.offer(2, 1, _image(), (10, 10, 30, 60), 0.0)
    sampler.offer(2, 2, _image(), (10, 10, 20, 40), 0.2)
    sampler.offer(2, 3, _image(), (10, 10, 50, 100), 0.0)
    assert sampler.held == 1
    assert [(c.frame, c.quality) for c in sampler.pop(2)] == [(2, 0.2)]


class _CountingEmbedder:
    """Embeds a crop as the unit vector ``(v, 1) / |(v, 1)|`` of its first pixel value ``v``; counts calls."""

    name = "counting"
    fingerprint = "counting-1"
    dim = 2
    input_size = (64, 32)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed_images(self, images):
        self.calls.append(len(images))
        rows = np.array([[np.asarray(image)[0, 0, 0], 1.0] for image in images], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _crop(frame: int, value: int, quality: float = 0.5) -> Crop:
    return Crop(frame, quality, np.full((8, 4, 3), value, np.uint8))


def _expected(value: int) -> np.ndarray:
    return np.array([value, 1.0], np.float32) / np.hypot(value, 1.0)


def test_embed_tracks_batches_across_tracks_and_keeps_order():
    embedder = _CountingEmbedder()
    by_track = {
        5: [_crop(1, 10), _crop(4, 11), _crop(9, 12)],
        2: [],
        8: [_crop(2, 20), _crop(3, 21), _crop(5, 22), _crop(7, 23)],
    }
    out = embed_tracks(by_track, embedder, batch=4)
    assert embedder.calls == [4, 3]  # 7 crops of two tracks in two calls, the first mixing both tracks
    assert sorted(out) == [5, 8]
    for track, values in ((5, [10, 11, 12]), (8, [20, 21, 22, 23])):
        crops, features = out[track]
        assert [c.pixels[0, 0, 0] for c in crops] == values
        assert features.dtype == np.float32 and features.shape == (len(values), 2)
        np.testing.assert_allclose(features, [_expected(v) for v in values], rtol=1e-6)
    assert embed_tracks({1: []}, embedder) == {} and embedder.calls == [4, 3]


def test_summarise_weights_by_quality_and_picks_the_best_thumbnail():
    crops = [_crop(1, 1, 0.2), _crop(2, 2, 0.9), _crop(3, 3, 0.4)]
    rng = np.random.default_rng(1)
    features = rng.normal(size=(3, 6)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    feature, total, thumbnail = summarise(crops, features)
    np.testing.assert_allclose(feature, quality_weighted_mean(features, np.array([0.2, 0.9, 0.4])), rtol=1e-6)
    assert not np.allclose(feature, quality_weighted_mean(features), atol=1e-3)  # the weights matter
    assert np.linalg.norm(feature) == pytest.approx(1.0, abs=1e-6)
    assert total == pytest.approx(1.5)
    assert thumbnail is crops[1].pixels


def test_sampler_spreads_over_a_long_track_of_even_quality():
    sampler = _sampler(samples_per_track=8, min_spacing_frames=2)
    for frame in range(1, 401):
        sampler.offer(1, frame, _image(), (10, 10, 20, 60), 0.5)
    frames = [c.frame for c in sampler.pop(1)]
    assert len(frames) == 8
    assert frames[0] <= 60 and frames[-1] >= 340  # not all from the start of the track
    assert min(np.diff(frames)) >= 400 / 8 / 2  # no two bunched together
