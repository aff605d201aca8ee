"""The one batching / flip / L2 loop and the PyTorch embedder, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.checkpoint import Preprocess
from reidkit.embed import BatchEmbedder, Embedder, TorchEmbedder, embed_paths
from reidkit.embed.base import forward_in_fixed_batches
from reidkit.errors import DatasetError, EmbeddingError
from reidkit.models import build_model


class Linear(BatchEmbedder):
    runtime = "test"

    def __init__(self, weight: np.ndarray, *, flip: bool, batch_size: int = 2, offset: float = 0.0) -> None:
        self.weight, self.offset = weight, offset
        self.preprocess = Preprocess(4, 2, flip=flip)
        self.batch_size, self.name, self.fingerprint = batch_size, "linear", "f"
        self.dim = weight.shape[1]
        self.calls = []

    def _forward(self, batch):
        self.calls.append(len(batch))
        return batch.reshape(len(batch), -1) @ self.weight + self.offset


def pictures(count, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (9, 5, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.mark.parametrize("flip", [False, True])
def test_loop_batches_flips_and_normalises(flip):
    weight = np.random.default_rng(1).normal(size=(24, 5)).astype(np.float32)
    embedder = Linear(weight, flip=flip, batch_size=2)
    images = pictures(5)
    got = embedder.embed_images(images)
    inputs = Preprocess(4, 2)(images)
    expected = inputs.reshape(5, -1) @ weight
    if flip:
        expected = expected + inputs[..., ::-1].reshape(5, -1) @ weight
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert embedder.calls == ([2, 2, 2, 2, 1, 1] if flip else [2, 2, 1])  # chunk, then its mirror
    assert embedder.embed_images([]).shape == (0, 5)
    assert isinstance(embedder, Embedder) and embedder.input_size == (4, 2)


def test_non_finite_output_is_refused():
    embedder = Linear(np.full((24, 3), np.nan, np.float32), flip=False)
    with pytest.raises(EmbeddingError, match="non-finite values .* for 2 of 2 images"):
        embedder.embed_images(pictures(2))


def test_fixed_batch_network_is_padded():
    seen = []

    def run(batch):
        seen.append(batch.shape[0])
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)

    batch = np.random.default_rng(0).normal(size=(5, 3, 2, 2)).astype(np.float32)
    out = forward_in_fixed_batches(run, batch, 2)
    np.testing.assert_allclose(out, batch.reshape(5, -1).sum(axis=1, keepdims=True), rtol=1e-6)
    assert seen == [2, 2, 2]


@pytest.mark.parametrize("workers", [0, 2])
def test_embed_paths_equals_embedding_the_decoded_images(tmp_path, workers):
    weight = np.random.default_rng(2).normal(size=(24, 4)).astype(np.float32)
    embedder = Linear(weight, flip=True, batch_size=3)
    images = pictures(7, seed=3)
    paths = []
    for position, image in enumerate(images):
        paths.append(str(tmp_path / f"{position}.png"))
        image.save(paths[-1])
    got = embed_paths(embedder, paths, batch_size=3, workers=workers)
    np.testing.assert_allclose(got, embedder.embed_images(images), rtol=1e-6)
    with pytest.raises(DatasetError, match=r"missing\.png does not exist"):
        embed_paths(embedder, [*paths[:2], str(tmp_path / "missing.png")], workers=0)


@pytest.fixture(scope="module")
def torch_embedder():
    torch.manual_seed(0)
    model = build_model("aligned", num_classes=3, backbone="resnet18").eval()
    return TorchEmbedder(model, Preprocess(64, 32, flip=True), batch_size=2)


def test_torch_embedder_matches_the_model(torch_embedder):
    images = pictures(3, seed=4)
    batch = torch.from_numpy(Preprocess(64, 32)(images))
    model = torch_embedder.model
    with torch.no_grad():
        expected = model.embed(batch) + model.embed(torch.flip(batch, dims=[3]))
    expected = torch.nn.functional.normalize(expected, dim=1).numpy()
    np.testing.assert_allclose(torch_embedder.embed_images(images), expected, atol=1e-5)
    assert torch_embedder.dim == expected.shape[1]


def test_local_and_output_features_average_the_mirror(torch_embedder, tmp_path):
    images = pictures(3, seed=5)
    paths = []
    for position, image in enumerate(images):
        paths.append(str(tmp_path / f"{position}.png"))
        image.save(paths[-1])
    batch = torch.from_numpy(Preprocess(64, 32)(images))
    model = torch_embedder.model
    with torch.no_grad():
        local = (model.embed_local(batch) + model.embed_local(torch.flip(batch, dims=[3]))) / 2
        def first(value):
            return value[0] if isinstance(value, list) else value

        glob = (first(model(batch).select("global")) + first(model(torch.flip(batch, dims=[3])).select("global"))) / 2
    np.testing.assert_allclose(torch_embedder.local_features(paths), local.numpy(), atol=1e-5)
    np.testing.assert_allclose(torch_embedder.output_features(paths, on="global"), glob.numpy(), atol=1e-5)


def test_fingerprint_follows_weights_and_preprocessing():
    torch.manual_seed(0)
    model = build_model("baseline", num_classes=3, backbone="resnet18")
    a = TorchEmbedder(model, Preprocess(64, 32, flip=True)).fingerprint
    assert a == TorchEmbedder(model, Preprocess(64, 32, flip=True)).fingerprint
    assert a != TorchEmbedder(model, Preprocess(64, 32, flip=False)).fingerprint
    assert a != TorchEmbedder(model, Preprocess(64, 48, flip=True)).fingerprint
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    assert a != TorchEmbedder(model, Preprocess(64, 32, flip=True)).fingerprint
