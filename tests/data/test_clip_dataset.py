"""ClipDataset: clips of seq_len frames, one augmentation per clip, determinism by item seed, Batch of clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.data.batch import Batch
from reidkit.data.clip_dataset import ClipDataset, frame_samples
from reidkit.data.frames import sample_frames
from reidkit.data.records import Tracklet, VideoSplit
from reidkit.data.sampler import PKSampler, SeededBatches
from reidkit.data.transforms import TrainTransform, read_image


def _tracklet(root, name: str, pid: int, frames: int, camid: int = 0) -> Tracklet:
    folder = root / name
    folder.mkdir(parents=True)
    paths = []
    for index in range(frames):
        # each frame has its own flat colour: the frame index is readable back from the pixels
        value = 10 + 20 * index
        path = folder / f"f{index:03d}.png"
        Image.fromarray(np.full((32, 16, 3), value, np.uint8)).save(path)
        paths.append(str(path))
    return Tracklet(tuple(paths), pid, camid)


def _frame_index(frame: torch.Tensor) -> int:
    """The frame index a transformed frame came from (no normalisation: values are pixel / 255)."""
    value = float(frame.max()) * 255  # erasing and padding only lower or replace pixels; the max survives
    return round((value - 10) / 20)


@pytest.fixture
def tracklets(tmp_path):
    return [_tracklet(tmp_path, f"t{i}", pid=i // 2, frames=n) for i, n in enumerate([3, 9, 12, 5])]


def _plain(*, flip=0.0, pad=0, erasing=0.0):
    return TrainTransform(32, 16, flip=flip, pad=pad, random_erasing=erasing, mean=(0, 0, 0), std=(1, 1, 1))


@pytest.mark.parametrize("mode", ["random", "evenly"])
def test_clip_frames_are_the_sampled_indices_in_order(tracklets, mode):
    dataset = ClipDataset(tracklets, _plain(), seq_len=4, mode=mode)
    for index, tracklet in enumerate(tracklets):
        item = dataset[(index, 1234 + index)]
        assert item.image.shape == (4, 3, 32, 16) and item.pid == tracklet.pid
        read = [_frame_index(frame) for frame in item.image]
        assert read == dataset.frame_indices((index, 1234 + index)) == sorted(read)
        if mode == "evenly":
            assert read == sample_frames(len(tracklet.paths), 4, "evenly")[0]


def test_every_frame_of_a_clip_gets_the_same_augmentation(tmp_path):
    tracklet = _tracklet(tmp_path, "same", pid=0, frames=6)
    # identical frames: one augmentation per clip means identical transformed frames
    for path in tracklet.paths[1:]:
        Image.open(tracklet.paths[0]).save(path)
    dataset = ClipDataset([tracklet], _plain(flip=0.5, pad=4, erasing=1.0), seq_len=5, mode="random")
    differing = 0
    for seed in range(8):
        clip = dataset[(0, seed)].image
        for frame in clip[1:]:
            torch.testing.assert_close(frame, clip[0], rtol=0, atol=0)
        # and the transform really is random between clips
        differing += not torch.equal(clip[0], dataset[(0, seed + 100)].image[0])
    assert differing >= 6


def test_the_clip_is_a_function_of_the_item_seed(tracklets):
    dataset = ClipDataset(tracklets, _plain(flip=0.5, pad=4, erasing=0.5), seq_len=6, mode="random")
    first, again, other = dataset[(2, 77)], dataset[(2, 77)], dataset[(2, 78)]
    torch.testing.assert_close(first.image, again.image, rtol=0, atol=0)
    choices = {tuple(dataset.frame_indices((2, seed))) for seed in range(20)}
    assert len(choices) > 5  # random frames differ between seeds
    assert not torch.equal(first.image, other.image)
    # a plain index is deterministic too
    torch.testing.assert_close(dataset[1].image, dataset[1].image, rtol=0, atol=0)


def test_batches_of_clips_through_the_seeded_pk_sampler(tracklets):
    dataset = ClipDataset(tracklets, _plain(), seq_len=4)
    sampler = PKSampler([t.pid for t in tracklets], p=2, k=2, seed=3)
    batches = [ClipDataset.collate([dataset[key] for key in keys]) for keys in SeededBatches(sampler)]
    assert batches and all(isinstance(b, Batch) for b in batches)
    assert batches[0].images.shape == (4, 4, 3, 32, 16)
    assert batches[0].num_frames == 16 and len(batches[0]) == 4
    assert sorted(batches[0].pids.tolist()) == [0, 0, 1, 1]


def test_bad_arguments_are_refused(tracklets):
    with pytest.raises(ValueError, match="'random' or 'evenly'"):
        ClipDataset(tracklets, _plain(), seq_len=4, mode="all")
    with pytest.raises(ValueError, match="seq_len"):
        ClipDataset(tracklets, _plain(), seq_len=0)
    with pytest.raises(ValueError, match="pid 7, camera 2 has no frames"):
        ClipDataset([Tracklet((), 7, 2)], _plain(), seq_len=4)
    with pytest.raises(ValueError, match="clips"):
        Batch(torch.zeros(2, 3, 3, 8, 8, 1), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


def test_frame_samples_are_every_train_frame(tracklets):
    split = VideoSplit(tuple(tracklets), (), ())
    samples = frame_samples(split)
    assert [s.path for s in samples] == [p for t in tracklets for p in t.paths]
    assert [s.pid for s in samples] == [t.pid for t in tracklets for _ in t.paths]
    assert read_image(samples[0].path).size == (16, 32)
