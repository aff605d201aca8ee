"""Evaluate an embedder on a dataset split: embed query and gallery, score, optionally re-rank.

The glue between extraction (:mod:`reidkit.extract`), scoring (:mod:`reidkit.metrics`) and re-ranking
(:mod:`reidkit.rerank`) used by ``reidkit eval``, periodic evaluation during training, the demo and the
benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reidkit.data.records import Split
from reidkit.errors import ConfigError
from reidkit.extract import extract_features
from reidkit.distance import pairwise_distance
from reidkit.metrics import Metrics, evaluate, same_image_ignore
from reidkit.viz import RankedList


@dataclass
class EvalResult:
    metrics: Metrics
    query_features: np.ndarray
    gallery_features: np.ndarray
    distmat: np.ndarray


def score(
    query_features: np.ndarray,
    gallery_features: np.ndarray,
    *,
    metric: str = "euclidean",
    rerank: str | None = None,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    query_expansion: int = 0,
) -> np.ndarray:
    """Query x gallery distances, after optional alpha-query-expansion and k-reciprocal re-ranking."""
    qf = torch.from_numpy(np.asarray(query_features, dtype=np.float32))
    gf = torch.from_numpy(np.asarray(gallery_features, dtype=np.float32))
    if query_expansion > 0:
        from reidkit.rerank import query_expansion as expand

        qf, gf = (torch.as_tensor(x) for x in expand(qf, gf, top_k=query_expansion))
    if rerank is None:
        return pairwise_distance(qf, gf, metric).numpy()
    from reidkit import rerank as rr

    if rerank == "exact":
        q_g = pairwise_distance(qf, gf, metric).numpy()
        q_q = pairwise_distance(qf, qf, metric).numpy()
        g_g = pairwise_distance(gf, gf, metric).numpy()
        return np.asarray(rr.k_reciprocal(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lambda_value))
    if rerank == "fast":
        return np.asarray(
            rr.k_reciprocal_fast(qf, gf, k1=k1, k2=k2, lambda_value=lambda_value, metric=metric)
        )
    raise ValueError(f"unknown re-ranking mode {rerank!r}; choose from exact, fast")


def load_pair_head(checkpoint: str | Path, model: nn.Module, *, device: str | torch.device = "cpu"):
    """The verification pair head a checkpoint was trained with, and the model output it scores.

    Returns:
        ``(head, on)``: the trained :class:`reidkit.losses.verification.PairHead` (eval mode) and the ``on``
        field of its ``verification`` loss term (normally ``"global"``).

    Raises:
        ConfigError: the checkpoint's loss has no ``verification`` term (so no pair head).
    """
    from reidkit.engine import load_criterion

    criterion = load_criterion(checkpoint, model, map_location=device)
    head = criterion.pair_head()
    if head is None:
        names = [term.name for term in criterion.terms]
        raise ConfigError(
            f"checkpoint {checkpoint} has no verification pair head (its loss terms are {names}); "
            "pairwise scoring needs a model trained with a 'verification' term, e.g. configs/ide_verif.yaml"
        )
    on = next(term.on for term in criterion.terms if term.name == "verification")
    return head.to(device).eval(), on


def evaluate_split(
    embedder,
    split: Split,
    *,
    metric: str = "euclidean",
    rerank: str | None = None,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    query_expansion: int = 0,
    distance: str = "global",
    local_weight: float = 1.0,
    max_rank: int = 50,
    workers: int = 0,
    progress: bool = False,
    pair_head: nn.Module | None = None,
    pair_on: str = "global",
    pair_batch_size: int = 4096,
) -> EvalResult:
    """Embed ``split.query`` and ``split.gallery`` with ``embedder`` and evaluate under the split's protocol.

    Args:
        distance: ``"global"`` (embedding distance), or for models with local features (AlignedReID)
            ``"local"`` (shortest-path aligned distance) or ``"combined"`` (global + local_weight * local).
            Re-ranking and query expansion apply to the global distance only. ``"pairwise"``: the
            verification pair head ``pair_head`` scores every query-gallery pair on the model output
            ``pair_on`` (see :meth:`reidkit.extract.TorchEmbedder.output_features_paths`); distance =
            1 - same-identity probability, and the returned features are those ``pair_on`` features.
        pair_head: the trained pair head (see :func:`load_pair_head`), for ``distance="pairwise"``.
        pair_batch_size: query-gallery pairs per head call.
    """
    query_paths = [s.path for s in split.query]
    gallery_paths = [s.path for s in split.gallery]
    if distance == "pairwise":
        if pair_head is None:
            raise ConfigError("distance 'pairwise' needs the verification pair head (pair_head)")
        if rerank or query_expansion:
            raise ConfigError("re-ranking and query expansion work on the global distance, not 'pairwise'")
        if not hasattr(embedder, "output_features_paths"):
            raise ConfigError("pairwise scoring needs a PyTorch checkpoint embedder (not ONNX/OpenVINO)")
        from reidkit.losses.verification import pair_scores

        qf = embedder.output_features_paths(query_paths, on=pair_on, workers=workers, progress=progress)
        gf = embedder.output_features_paths(gallery_paths, on=pair_on, workers=workers, progress=progress)
        parameter = next(pair_head.parameters())
        scores = pair_scores(
            pair_head,
            torch.from_numpy(qf).to(parameter.device),
            torch.from_numpy(gf).to(parameter.device),
            batch_size=pair_batch_size,
        )
        distmat = (1.0 - scores).cpu().numpy()
    else:
        qf = extract_features(embedder, query_paths, workers=workers, progress=progress)
        gf = extract_features(embedder, gallery_paths, workers=workers, progress=progress)
    if distance == "pairwise":
        pass  # scored above
    elif distance == "global":
        distmat = score(
            qf,
            gf,
            metric=metric,
            rerank=rerank,
            k1=k1,
            k2=k2,
            lambda_value=lambda_value,
            query_expansion=query_expansion,
        )
    else:
        if rerank or query_expansion:
            raise ConfigError(f"re-ranking and query expansion work on the global distance, not {distance!r}")
        from reidkit.losses.aligned import aligned_distance

        q_local = torch.from_numpy(
            embedder.embed_local_paths(query_paths, workers=workers, progress=progress)
        )
        g_local = torch.from_numpy(
            embedder.embed_local_paths(gallery_paths, workers=workers, progress=progress)
        )
        distmat = aligned_distance(
            torch.from_numpy(qf),
            torch.from_numpy(gf),
            q_local,
            g_local,
            mode=distance,
            local_weight=local_weight,
            metric=metric,
        ).numpy()
    q_pids = np.array([s.pid for s in split.query])
    g_pids = np.array([s.pid for s in split.gallery])
    if split.has_camids:
        q_camids = np.array([s.camid for s in split.query])
        g_camids = np.array([s.camid for s in split.gallery])
        ignore = None
    else:  # no camera ids: only the identical image is excluded
        q_camids = g_camids = None
        ignore = same_image_ignore(query_paths, gallery_paths)
    metrics = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, ignore=ignore)
    return EvalResult(metrics, qf, gf, distmat)


def ranked_lists(split: Split, distmat: np.ndarray, *, queries: int = 6, top_k: int = 10) -> list[RankedList]:
    """Ranked gallery lists of a few evenly spread queries (for :func:`reidkit.viz.ranked_grid`).

    The gallery items the metric ignores (same id and camera as the query; the query image itself) are left out.
    """
    chosen = np.linspace(0, len(split.query) - 1, num=min(queries, len(split.query))).round().astype(int)
    rows = []
    for i in chosen:
        query = split.query[i]
        order = np.argsort(distmat[i], kind="stable")
        kept = [
            j
            for j in order
            if not (
                split.has_camids
                and split.gallery[j].pid == query.pid
                and split.gallery[j].camid == query.camid
            )
            and split.gallery[j].path != query.path
        ][:top_k]
        rows.append(
            RankedList(
                query.path,
                [split.gallery[j].path for j in kept],
                [split.gallery[j].pid == query.pid for j in kept],
                [float(distmat[i, j]) for j in kept],
            )
        )
    return rows
