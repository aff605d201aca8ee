"""embed_tracklets: the clip path of temporal models and the frame path of image embedders, against naive loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reidkit.checkpoint import Preprocess
from reidkit.data import transforms
from reidkit.data.frames import sample_frames
from reidkit.data.records import Tracklet
from reidkit.embed import BatchEmbedder, TorchEmbedder, embed_paths, embed_tracklets
from reidkit.embed.aggregate import quality_weighted_mean
from reidkit.errors import ConfigError, DatasetError, EmbeddingError
from reidkit.models.backbones import TrunkSpec
from reidkit.models.temporal import build_temporal_model

HEIGHT, WIDTH = 32, 16
LENGTHS = (10, 3, 1, 7)


class MeanColour(BatchEmbedder):
    """An image embedder: the mean colour of the top and bottom halves (any image, no network)."""

    runtime = "test"

    def __init__(self, batch_size: int = 4) -> None:
        self.preprocess, self.batch_size = Preprocess(8, 4), batch_size
        self.name, self.fingerprint, self.dim = "mean colour", "m", 6
        self.calls: list[int] = []

    def _forward(self, batch):
        self.calls.append(len(batch))
        return np.concatenate([batch[:, :, :4].mean(axis=(2, 3)), batch[:, :, 4:].mean(axis=(2, 3))], axis=1)


def _write_tracklets(folder, lengths, seed: int = 0) -> list[Tracklet]:
    rng = np.random.default_rng(seed)
    tracklets = []
    for number, length in enumerate(lengths):
        paths = []
        for frame in range(length):
            path = folder / f"t{number}_f{frame:03d}.png"
            Image.fromarray(rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)).save(path)
            paths.append(str(path))
        tracklets.append(Tracklet(tuple(paths), pid=number + 1, camid=number % 2))
    return tracklets


@pytest.fixture
def tracklets(tmp_path):
    return _write_tracklets(tmp_path, LENGTHS)


def _temporal_embedder(head: str = "avg", *, flip: bool = True, batch_size: int = 64) -> TorchEmbedder:
    torch.manual_seed(0)
    model = build_temporal_model(
        "baseline",
        temporal=head,
        num_classes=4,
        trunk=TrunkSpec(backbone="resnet18", last_stride=2),
        hidden=8,
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial scorer weights (they start at zero) and BNNeck statistics
        for parameter in model.head.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
        model.frame_model.bnneck.running_mean.copy_(0.1 * torch.randn(model.feature_dim, generator=generator))
    return TorchEmbedder(model.eval(), Preprocess(HEIGHT, WIDTH, flip=flip), batch_size=batch_size)


def _frames(embedder: TorchEmbedder, tracklet: Tracklet) -> torch.Tensor:
    return torch.from_numpy(np.stack([embedder.preprocess.image(Image.open(p)) for p in tracklet.paths]))


@torch.no_grad()
def _naive_tracklet(embedder: TorchEmbedder, tracklet: Tracklet, seq_len: int, frames: str) -> np.ndarray:
    """Decode every frame, embed each clip alone (+ mirror), weight by its distinct frames, normalise."""
    images = _frames(embedder, tracklet)
    total, weight = 0.0, 0
    for clip in sample_frames(len(tracklet.paths), seq_len, frames):
        clip_tensor = images[clip].unsqueeze(0)
        feature = embedder.model.embed(clip_tensor)[0].double()
        if embedder.preprocess.flip:
            feature = feature + embedder.model.embed(clip_tensor.flip(-1))[0].double()
        total = total + len(set(clip)) * feature
        weight += len(set(clip))
    mean = (total / weight).numpy()
    return mean / np.linalg.norm(mean)


@pytest.mark.parametrize(
    ("head", "frames", "seq_len", "flip"),
    [("avg", "all", 4, True), ("rnn", "all", 3, False), ("attention", "evenly", 4, True)],
)
def test_temporal_model_equals_a_clip_by_clip_loop(tracklets, head, frames, seq_len, flip):
    embedder = _temporal_embedder(head, flip=flip)
    features = embed_tracklets(embedder, tracklets, seq_len=seq_len, frames=frames, batch_size=8)
    assert features.shape == (len(tracklets), embedder.dim) and features.dtype == np.float32
    expected = np.stack([_naive_tracklet(embedder, t, seq_len, frames) for t in tracklets])
    np.testing.assert_allclose(features, expected, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-6)


@torch.no_grad()
def test_chunks_are_weighted_by_their_real_frames(tracklets):
    # 10 frames in chunks of 4: [0-3], [4-7], [8 8 9 9]; with the avg head the frame-weighted mean of the
    # chunks (4, 4, 2) is the average over all 10 frames, i.e. one clip of the whole tracklet
    embedder = _temporal_embedder("avg", flip=False)
    tracklet = tracklets[0]
    features = embed_tracklets(embedder, [tracklet], seq_len=4, frames="all", batch_size=4)[0]
    whole = embedder.model.embed(_frames(embedder, tracklet).unsqueeze(0))[0].numpy()
    np.testing.assert_allclose(features, whole / np.linalg.norm(whole), atol=2e-5)
    chunks = [
        embedder.model.embed(_frames(embedder, tracklet)[c].unsqueeze(0))[0].numpy()
        for c in sample_frames(10, 4, "all")
    ]
    equal_weights = np.mean(chunks, axis=0)
    assert not np.allclose(features, equal_weights / np.linalg.norm(equal_weights), atol=1e-3)


@pytest.mark.parametrize(("seq_len", "batch_size", "most"), [(4, 8, 8), (4, 10, 8), (6, 4, 6)])
def test_frames_are_decoded_a_step_at_a_time(tmp_path, monkeypatch, seq_len, batch_size, most):
    tracklets = _write_tracklets(tmp_path, (41, 5, 2))
    embedder = _temporal_embedder("avg")
    decoded, per_step, clip_frames = [0], [], []
    real_read, real_embed = transforms.read_image, embedder.embed_clips

    def counting_read(path):
        decoded[0] += 1
        return real_read(path)

    def counting_embed(clips):
        per_step.append(decoded[0])
        clip_frames.append(clips.shape[0] * clips.shape[1])
        decoded[0] = 0
        return real_embed(clips)

    monkeypatch.setattr(transforms, "read_image", counting_read)
    monkeypatch.setattr(embedder, "embed_clips", counting_embed)
    features = embed_tracklets(embedder, tracklets, seq_len=seq_len, frames="all", batch_size=batch_size)
    assert max(per_step) <= most and max(clip_frames) <= most
    assert sum(per_step) == 41 + 5 + 2  # every frame decoded exactly once (padding repeats, not re-reads)
    assert len(per_step) == -(-sum(-(-n // seq_len) for n in (41, 5, 2)) // max(1, batch_size // seq_len))
    expected = np.stack([_naive_tracklet(embedder, t, seq_len, "all") for t in tracklets])
    np.testing.assert_allclose(features, expected, atol=2e-5)


def test_loader_processes_give_the_same_features(tracklets):
    embedder = _temporal_embedder("avg")
    alone = embed_tracklets(embedder, tracklets, seq_len=4, batch_size=8)
    np.testing.assert_allclose(
        embed_tracklets(embedder, tracklets, seq_len=4, batch_size=8, workers=1), alone
    )


def test_image_embedder_takes_the_mean_of_frame_embeddings(tracklets):
    embedder = MeanColour(batch_size=4)
    features = embed_tracklets(embedder, tracklets, frames="all", batch_size=3)
    assert max(embedder.calls) <= 3 and sum(embedder.calls) == sum(LENGTHS)
    for tracklet, row in zip(tracklets, features, strict=True):
        frames = embed_paths(embedder, tracklet.paths)
        mean = frames.mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-6)
        np.testing.assert_allclose(row, quality_weighted_mean(frames), atol=1e-6)


def test_image_embedder_evenly_uses_the_distinct_spread_frames(tracklets):
    embedder = MeanColour()
    features = embed_tracklets(embedder, tracklets, seq_len=3, frames="evenly", batch_size=5)
    # 10 frames -> 0, 3, 6; 3 -> 0, 1, 2; 1 -> 0; 7 -> 0, 2, 4
    picks = [[0, 3, 6], [0, 1, 2], [0], [0, 2, 4]]
    for tracklet, indices, row in zip(tracklets, picks, features, strict=True):
        expected = quality_weighted_mean(embed_paths(embedder, [tracklet.paths[i] for i in indices]))
        np.testing.assert_allclose(row, expected, atol=1e-6)
    short = embed_tracklets(embedder, [tracklets[1]], seq_len=8, frames="evenly")  # 3 frames, seq_len 8
    np.testing.assert_allclose(
        short[0], quality_weighted_mean(embed_paths(embedder, tracklets[1].paths)), atol=1e-6
    )


def test_bad_arguments_and_empty_tracklets(tracklets):
    embedder = MeanColour()
    assert embed_tracklets(embedder, []).shape == (0, 6)
    with pytest.raises(DatasetError, match=r"tracklet 1 \(pid 7, camera 2\) has no frames"):
        embed_tracklets(embedder, [tracklets[0], Tracklet((), 7, 2)])
    with pytest.raises(ConfigError, match=r"frames='random' .* training augmentation.*\['all', 'evenly'\]"):
        embed_tracklets(embedder, tracklets, frames="random")
    with pytest.raises(ConfigError, match=r"unknown frame sampling mode 'middle'"):
        embed_tracklets(embedder, tracklets, frames="middle")
    for keyword in ({"seq_len": 0}, {"seq_len": 2.5}, {"batch_size": 0}, {"seq_len": True}):
        with pytest.raises(ConfigError, match=f"{next(iter(keyword))} must be an integer >= 1"):
            embed_tracklets(embedder, tracklets, **keyword)


class NanClips(nn.Module):
    embedding_dim = 3

    def embed(self, clips):
        return torch.full((clips.shape[0], 3), float("nan"))


def test_embed_clips_refuses_non_finite_output_and_bad_shapes():
    embedder = TorchEmbedder(NanClips(), Preprocess(4, 2))
    with pytest.raises(EmbeddingError, match=r"non-finite values .* for 2 of 2 clips"):
        embedder.embed_clips(np.zeros((2, 3, 3, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"expected clips \[B, T, 3, H, W\]"):
        embedder.embed_clips(np.zeros((2, 3, 4, 2), np.float32))
