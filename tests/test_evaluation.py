"""evaluate_split with each scorer, against the same steps done by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.checkpoint import Preprocess
from reidkit.data.records import Sample, make_split
from reidkit.distance import pairwise_distance
from reidkit.embed import BatchEmbedder, TorchEmbedder, embed_paths
from reidkit.errors import ConfigError
from reidkit.evaluation import GlobalDistance, aligned_scorer, evaluate_split, global_scorer
from reidkit.losses.aligned import aligned_distance
from reidkit.metrics import evaluate, same_image_ignore
from reidkit.models import build_model
from reidkit.rerank import k_reciprocal, query_expansion


class MeanColour(BatchEmbedder):
    """Embeds an image as its mean colour per image half: a stand-in that any split can be scored with."""

    runtime = "test"

    def __init__(self) -> None:
        self.preprocess, self.batch_size = Preprocess(8, 4), 4
        self.name, self.fingerprint, self.dim = "mean colour", "m", 6

    def _forward(self, batch):
        return np.concatenate([batch[:, :, :4].mean(axis=(2, 3)), batch[:, :, 4:].mean(axis=(2, 3))], axis=1)


@pytest.fixture
def split(tmp_path):
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(5, 2, 3))
    train, query, gallery = [], [], []
    for pid in range(5):
        for camid in range(3):
            for shot in range(2):
                noise = rng.normal(0, 60, size=(1, 1, 3))  # a per-image colour cast
                array = np.concatenate([np.tile(colours[pid, 0], (8, 8, 1)), np.tile(colours[pid, 1], (8, 8, 1))])
                path = tmp_path / f"{pid}_{camid}_{shot}.png"
                Image.fromarray(np.clip(array + noise, 0, 255).astype(np.uint8)).save(path)
                (query if camid == 0 and shot == 0 else gallery).append(Sample(str(path), pid, camid))
    return make_split(train, query, gallery, name="toy")


def _labels(split):
    return (
        np.array([s.pid for s in split.query]),
        np.array([s.pid for s in split.gallery]),
        np.array([s.camid for s in split.query]),
        np.array([s.camid for s in split.gallery]),
    )


def test_global_scorer_equals_the_steps_by_hand(split):
    embedder = MeanColour()
    result = evaluate_split(embedder, split)
    qf = embed_paths(embedder, [s.path for s in split.query])
    gf = embed_paths(embedder, [s.path for s in split.gallery])
    distmat = pairwise_distance(torch.from_numpy(qf), torch.from_numpy(gf)).numpy()
    np.testing.assert_array_equal(result.distmat, distmat)
    expected = evaluate(distmat, *_labels(split))
    assert result.metrics.as_dict() == expected.as_dict()
    assert 0.2 < expected.mAP < 1.0  # neither chance nor perfect: the test can tell scorers apart


def test_reranked_and_expanded_distances(split):
    embedder = MeanColour()
    distance = GlobalDistance(rerank="exact", k1=4, k2=2, query_expansion=2)
    result = evaluate_split(embedder, split, global_scorer(distance))
    qf = torch.from_numpy(embed_paths(embedder, [s.path for s in split.query]))
    gf = torch.from_numpy(embed_paths(embedder, [s.path for s in split.gallery]))
    qf, gf = (torch.as_tensor(x) for x in query_expansion(qf, gf, top_k=2))
    matrices = [pairwise_distance(a, b).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    np.testing.assert_allclose(result.distmat, k_reciprocal(*matrices, k1=4, k2=2), rtol=1e-6)
    fast = evaluate_split(embedder, split, global_scorer(GlobalDistance(rerank="fast", k1=4, k2=2, query_expansion=2)))
    np.testing.assert_allclose(fast.distmat, result.distmat, atol=1e-5)
    with pytest.raises(ConfigError, match="unknown re-ranking mode 'slow'"):
        GlobalDistance(rerank="slow")


def test_without_camera_ids_only_the_same_image_is_ignored(split):
    query = [Sample(s.path, s.pid, -1) for s in split.query]
    gallery = [Sample(s.path, s.pid, -1) for s in split.gallery] + query[:1]  # the query image itself too
    no_cams = make_split([], query, gallery, name="toy", has_camids=False)
    assert not no_cams.has_camids
    result = evaluate_split(MeanColour(), no_cams)
    q_paths, g_paths = [s.path for s in no_cams.query], [s.path for s in no_cams.gallery]
    expected = evaluate(
        result.distmat,
        np.array([s.pid for s in no_cams.query]),
        np.array([s.pid for s in no_cams.gallery]),
        None,
        None,
        ignore=same_image_ignore(q_paths, g_paths),
    )
    assert result.metrics.as_dict() == expected.as_dict()
    # the copy of the first query in the gallery is at distance 0 but ignored, not a rank-1 match
    assert result.distmat[0, -1] == pytest.approx(0.0, abs=1e-3)
    # the copy of the first query in the gallery is ignored, not counted as a rank-1 match
    assert result.distmat[0, -1] == pytest.approx(0.0, abs=1e-3)


def test_aligned_scorer_uses_the_local_features(split):
    torch.manual_seed(0)
    model = build_model("aligned", num_classes=3, backbone="resnet18").eval()
    embedder = TorchEmbedder(model, Preprocess(64, 32, flip=False))
    result = evaluate_split(embedder, split, aligned_scorer(mode="combined", local_weight=0.5))
    q_paths, g_paths = [s.path for s in split.query], [s.path for s in split.gallery]
    expected = aligned_distance(
        torch.from_numpy(embed_paths(embedder, q_paths)),
        torch.from_numpy(embed_paths(embedder, g_paths)),
        torch.from_numpy(embedder.local_features(q_paths)),
        torch.from_numpy(embedder.local_features(g_paths)),
        mode="combined",
        local_weight=0.5,
    ).numpy()
    np.testing.assert_allclose(result.distmat, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="needs a reidkit checkpoint .* not MeanColour"):
        evaluate_split(MeanColour(), split, aligned_scorer())
    with pytest.raises(ConfigError, match="'local' or 'combined'"):
        aligned_scorer(mode="global")
