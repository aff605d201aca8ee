"""Evaluate an embedder on a dataset split: embed query and gallery, score them, apply the split's protocol.

A *scorer* is a function ``scorer(embedder, query_paths, gallery_paths, *, workers, progress) -> Scores``; the
factories here build the four kinds ``reidkit eval`` offers:

* :func:`global_scorer`: embedding distance, with optional alpha query expansion and k-reciprocal re-ranking;
* :func:`aligned_scorer`: AlignedReID's shortest-path aligned local distance (``"local"``), or global + weighted
  local (``"combined"``), for models with per-row local features;
* :func:`visibility_scorer`: pose-guided parts (``"visibility"``): the global distance and the distances of the
  body parts both images show, averaged (:func:`reidkit.models.pose_regions.visibility_distance`);
* :func:`pairwise_scorer`: a trained verification pair head scores every query-gallery pair
  (distance = 1 - same-identity probability).

:func:`evaluate_split` runs one and scores the distances with :func:`reidkit.metrics.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from reidkit.data.records import Split
from reidkit.distance import pairwise_distance
from reidkit.embed import Embedder, TorchEmbedder, embed_paths
from reidkit.errors import ConfigError
from reidkit.metrics import Metrics, evaluate, same_image_ignore


@dataclass(frozen=True)
class Scores:
    """What a scorer returns: the features it scored and the ``[Q, G]`` distances."""

    query_features: np.ndarray
    gallery_features: np.ndarray
    distmat: np.ndarray


@dataclass(frozen=True)
class EvalResult:
    metrics: Metrics
    query_features: np.ndarray
    gallery_features: np.ndarray
    distmat: np.ndarray


class Scorer(Protocol):
    def __call__(
        self,
        embedder: Embedder,
        query_paths: Sequence[str],
        gallery_paths: Sequence[str],
        *,
        workers: int = 0,
        progress: bool = False,
    ) -> Scores: ...


@dataclass(frozen=True)
class GlobalDistance:
    """Query x gallery embedding distances, after optional alpha query expansion and k-reciprocal re-ranking.

    Attributes:
        metric: ``"euclidean"`` or ``"cosine"``.
        rerank: None, ``"exact"`` or ``"fast"`` (see :mod:`reidkit.rerank`), with ``k1``, ``k2``,
            ``lambda_value``.
        query_expansion: alpha-QE over this many neighbours (0: off).
    """

    metric: str = "euclidean"
    rerank: str | None = None
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    query_expansion: int = 0

    def __post_init__(self) -> None:
        if self.rerank not in (None, "exact", "fast"):
            raise ConfigError(f"unknown re-ranking mode {self.rerank!r}; choose from exact, fast")

    def __call__(self, query_features: np.ndarray, gallery_features: np.ndarray) -> np.ndarray:
        """``[Q, D]``, ``[G, D]`` -> ``[Q, G]`` distances."""
        qf = torch.from_numpy(np.asarray(query_features, dtype=np.float32))
        gf = torch.from_numpy(np.asarray(gallery_features, dtype=np.float32))
        if self.query_expansion > 0:
            from reidkit.rerank import query_expansion as expand

            qf, gf = (torch.as_tensor(x) for x in expand(qf, gf, top_k=self.query_expansion))
        if self.rerank is None:
            return pairwise_distance(qf, gf, self.metric).numpy()
        from reidkit import rerank as rr

        parameters = {"k1": self.k1, "k2": self.k2, "lambda_value": self.lambda_value}
        if self.rerank == "exact":
            q_g, q_q, g_g = (
                pairwise_distance(a, b, self.metric).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf))
            )
            return np.asarray(rr.k_reciprocal(q_g, q_q, g_g, **parameters))
        return np.asarray(rr.k_reciprocal_fast(qf, gf, metric=self.metric, **parameters))


def global_scorer(distance: GlobalDistance | None = None) -> Scorer:
    """Embedding distance (any embedder), optionally expanded and re-ranked (see :class:`GlobalDistance`)."""
    distance = distance or GlobalDistance()

    def score(embedder, query_paths, gallery_paths, *, workers=0, progress=False) -> Scores:
        qf = embed_paths(embedder, query_paths, workers=workers, progress=progress)
        gf = embed_paths(embedder, gallery_paths, workers=workers, progress=progress)
        return Scores(qf, gf, distance(qf, gf))

    return score


def _torch_embedder(embedder: Embedder, what: str) -> TorchEmbedder:
    if not isinstance(embedder, TorchEmbedder):
        raise ConfigError(
            f"{what} needs a reidkit checkpoint (PyTorch) embedder, not {type(embedder).__name__}"
        )
    return embedder


def aligned_scorer(*, mode: str = "local", local_weight: float = 1.0, metric: str = "euclidean") -> Scorer:
    """AlignedReID's aligned local distance (``mode="local"``) or global + ``local_weight`` x local
    (``"combined"``), for models with ``embed_local`` (see :func:`reidkit.losses.aligned.aligned_distance`).

    Reference: Zhang et al., "AlignedReID: Surpassing Human-Level Performance in Person Re-Identification", 2017.
    """
    if mode not in ("local", "combined"):
        raise ConfigError(f"aligned distance mode must be 'local' or 'combined', got {mode!r}")

    def score(embedder, query_paths, gallery_paths, *, workers=0, progress=False) -> Scores:
        from reidkit.losses.aligned import aligned_distance

        torch_embedder = _torch_embedder(embedder, f"the {mode} distance")
        qf = embed_paths(embedder, query_paths, workers=workers, progress=progress)
        gf = embed_paths(embedder, gallery_paths, workers=workers, progress=progress)
        q_local = torch_embedder.local_features(query_paths, workers=workers, progress=progress)
        g_local = torch_embedder.local_features(gallery_paths, workers=workers, progress=progress)
        distmat = aligned_distance(
            torch.from_numpy(qf),
            torch.from_numpy(gf),
            torch.from_numpy(q_local),
            torch.from_numpy(g_local),
            mode=mode,
            local_weight=local_weight,
            metric=metric,
        ).numpy()
        return Scores(qf, gf, distmat)

    return score


def part_features(
    embedder: TorchEmbedder, paths: Sequence[str], keypoints, *, workers: int = 0, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image files and their keypoint file -> ``model.embed_parts`` features of a pose-guided model.

    Each image's keypoints (none: all invisible) are resized with it to the network input; with
    ``preprocess.flip`` the features of the mirrored image (keypoints mirrored, left and right swapped) are
    added. The visibility is that of the image as stored.

    Returns:
        ``(global [N, C], parts [N, R, D], visible [N, R] bool)``, not normalised.
    """
    from reidkit.data.keypoints import flip_points, points_of, resize_points
    from reidkit.embed.base import iter_image_chunks

    model, preprocess = embedder.model, embedder.preprocess
    if not hasattr(model, "embed_parts"):
        raise ConfigError(f"model {type(model).__name__} has no pose-guided parts; use the global distance")
    size = (preprocess.height, preprocess.width)
    points = iter(points_of(keypoints, paths))
    outputs: list[tuple[np.ndarray, ...]] = []
    for images in iter_image_chunks(
        paths, batch_size=embedder.batch_size, workers=workers, progress=progress
    ):
        batch = preprocess(images)
        kp = np.stack([resize_points(next(points), (i.height, i.width), size) for i in images])
        views = [(batch, kp)] + ([(batch[..., ::-1], flip_points(kp, size[1]))] if preprocess.flip else [])
        summed = None
        for view, view_points in views:
            with torch.no_grad():
                out = model.embed_parts(
                    torch.from_numpy(np.ascontiguousarray(view)).to(embedder.device),
                    torch.from_numpy(view_points).to(embedder.device),
                )
            out = [t.cpu().numpy() if t.dtype == torch.bool else t.float().cpu().numpy() for t in out]
            summed = out if summed is None else [summed[0] + out[0], summed[1] + out[1], summed[2]]
        outputs.append(tuple(summed))
    if not outputs:
        raise ConfigError("no image paths given to embed")
    return tuple(np.concatenate([o[index] for o in outputs]) for index in range(3))  # type: ignore[return-value]


def visibility_scorer(keypoints) -> Scorer:
    """Pose-guided part distance for models with ``embed_parts`` (``model.name: pose_parts``).

    ``d(q, g) = (d_global + sum_{r shared} d_r) / (1 + #shared)``: ``d_global`` and ``d_r`` are cosine distances
    ``1 - cos`` of the global features and of part ``r``'s features, and the shared parts are those visible in
    both images (:func:`reidkit.models.pose_regions.visibility_distance`); a pair that shares no part is
    compared by ``d_global`` alone. ``keypoints`` is the :class:`reidkit.data.keypoints.KeypointFile` of the
    images scored. The returned features are ``[global, part_1, ..., part_R]``, each block L2-normalised.

    Reference: Zhao et al., "Spindle Net", CVPR 2017; Wei et al., "GLAD", 2017.
    """

    def score(embedder, query_paths, gallery_paths, *, workers=0, progress=False) -> Scores:
        from reidkit.models.pose_regions import visibility_distance

        torch_embedder = _torch_embedder(embedder, "the visibility distance")
        q, g = (
            [
                torch.from_numpy(a)
                for a in part_features(torch_embedder, paths, keypoints, workers=workers, progress=progress)
            ]
            for paths in (query_paths, gallery_paths)
        )
        q_global, g_global = (torch.nn.functional.normalize(x[0], dim=1) for x in (q, g))
        distmat = visibility_distance(1.0 - q_global @ g_global.T, q[1], q[2], g[1], g[2])

        def blocks(global_feature, parts):
            parts = torch.nn.functional.normalize(parts, dim=2).flatten(1)
            return torch.cat([global_feature, parts], dim=1).numpy()

        return Scores(blocks(q_global, q[1]), blocks(g_global, g[1]), distmat.numpy())

    return score


def pairwise_scorer(head: nn.Module, *, on: str = "global", batch_size: int = 4096) -> Scorer:
    """A trained verification pair head scores every query-gallery pair on the model output ``on``.

    Distance = 1 - same-identity probability; the returned features are the ``on`` features (flip-averaged).
    See :func:`load_pair_head` for the head a checkpoint was trained with.
    """

    def score(embedder, query_paths, gallery_paths, *, workers=0, progress=False) -> Scores:
        from reidkit.losses.verification import pair_scores

        torch_embedder = _torch_embedder(embedder, "pairwise scoring")
        qf = torch_embedder.output_features(query_paths, on=on, workers=workers, progress=progress)
        gf = torch_embedder.output_features(gallery_paths, on=on, workers=workers, progress=progress)
        device = next(head.parameters()).device
        scores = pair_scores(
            head, torch.from_numpy(qf).to(device), torch.from_numpy(gf).to(device), batch_size=batch_size
        )
        return Scores(qf, gf, (1.0 - scores).cpu().numpy())

    return score


def load_pair_head(embedder: TorchEmbedder, *, device: str | torch.device = "cpu") -> tuple[nn.Module, str]:
    """The verification pair head a checkpoint embedder's model was trained with, and the output it scores.

    Returns:
        ``(head, on)``: the trained :class:`reidkit.losses.verification.PairHead` (eval mode) and the ``on``
        field of its ``verification`` loss term (normally ``"global"``).

    Raises:
        ConfigError: the embedder was not built from a checkpoint, or its loss has no ``verification`` term.
    """
    checkpoint = _torch_embedder(embedder, "pairwise scoring").checkpoint
    if checkpoint is None:
        raise ConfigError(
            "pairwise scoring needs an embedder built from a checkpoint (it holds the pair head)"
        )
    criterion = checkpoint.build_criterion(embedder.model)
    head = criterion.pair_head()
    if head is None:
        names = [term.name for term in criterion.terms]
        raise ConfigError(
            f"{checkpoint.source} has no verification pair head (its loss terms are {names}); "
            "pairwise scoring needs a model trained with a 'verification' term, e.g. configs/ide_verif.yaml"
        )
    on = next(term.on for term in criterion.terms if term.name == "verification")
    return head.to(device).eval(), on


def evaluate_split(
    embedder: Embedder,
    split: Split,
    scorer: Scorer | None = None,
    *,
    max_rank: int = 50,
    workers: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Score ``split.query`` against ``split.gallery`` with ``scorer`` (default :func:`global_scorer`) and
    evaluate under the split's protocol (cross-camera when it has camera ids, else only the identical image
    is excluded).
    """
    scorer = scorer or global_scorer()
    query_paths = [s.path for s in split.query]
    gallery_paths = [s.path for s in split.gallery]
    scores = scorer(embedder, query_paths, gallery_paths, workers=workers, progress=progress)
    q_pids = np.array([s.pid for s in split.query])
    g_pids = np.array([s.pid for s in split.gallery])
    if split.has_camids:
        q_camids = np.array([s.camid for s in split.query])
        g_camids = np.array([s.camid for s in split.gallery])
        ignore = None
    else:
        q_camids = g_camids = None
        ignore = same_image_ignore(query_paths, gallery_paths)
    metrics = evaluate(scores.distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, ignore=ignore)
    return EvalResult(metrics, scores.query_features, scores.gallery_features, scores.distmat)
