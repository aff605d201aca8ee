"""Alpha query expansion (Radenovic et al., TPAMI 2018), with optional database-side augmentation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _expand(
    features: Tensor, database: Tensor, top_k: int, alpha: float, chunk_size: int, skip_self: bool
) -> Tensor:
    expanded = torch.empty_like(features)
    take = min(top_k, database.shape[0] - int(skip_self))
    for start in range(0, features.shape[0], chunk_size):
        block = features[start : start + chunk_size]
        similarity = block @ database.t()
        if skip_self:  # the item itself is added below with weight 1, never as its own neighbour
            own = torch.arange(block.shape[0], device=block.device)
            similarity[own, own + start] = float("-inf")
        values, neighbours = torch.topk(similarity, take, dim=1)
        weights = values.clamp_min(0.0).pow(alpha)
        merged = block + (weights[:, :, None] * database[neighbours]).sum(dim=1)
        expanded[start : start + chunk_size] = F.normalize(merged, dim=1)
    return expanded


def query_expansion(
    qf: np.ndarray | Tensor,
    gf: np.ndarray | Tensor,
    top_k: int = 10,
    alpha: float = 3.0,
    *,
    expand_gallery: bool = True,
    chunk_size: int = 1024,
) -> tuple[np.ndarray | Tensor, np.ndarray | Tensor]:
    """Alpha query expansion (alpha-QE), optionally with the same expansion of the gallery.

    Features are L2-normalised. Each query ``q`` is replaced by
    ``normalize(q + sum_{g in top_k(q)} max(cos(q, g), 0)^alpha * g)``, where ``top_k(q)`` are its ``top_k``
    most similar gallery features (cosine similarity). ``alpha = 0`` is average query expansion (Chum et al.,
    ICCV 2007); ``top_k = 0`` only normalises. With ``expand_gallery`` every gallery feature is expanded the same
    way with its ``top_k`` nearest *other* gallery features (database-side augmentation), so that queries and
    gallery stay comparable; neighbours are always found with the original features.

    Reference: Radenovic et al., "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018.

    Args:
        qf: ``[Q, D]`` query features; ``gf``: ``[G, D]`` gallery features (numpy or torch).
        top_k: neighbours merged into each feature.
        alpha: exponent of the similarity weights (>= 0).

    Returns:
        (``[Q, D]`` expanded queries, ``[G, D]`` gallery features: expanded, or only normalised), same type
        as the inputs.
    """
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k: expected a non-negative integer, got {top_k!r}")
    if alpha < 0:
        raise ValueError(f"alpha: expected a number >= 0, got {alpha!r}")
    query = qf if isinstance(qf, Tensor) else torch.from_numpy(np.asarray(qf))
    gallery = gf if isinstance(gf, Tensor) else torch.from_numpy(np.asarray(gf))
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"qf, gf: expected [Q, D] and [G, D] features, got {tuple(query.shape)}, {tuple(gallery.shape)}"
        )
    with torch.no_grad():
        query = F.normalize(query.detach().float(), dim=1)
        gallery = F.normalize(gallery.detach().float(), dim=1)
        new_query, new_gallery = query, gallery
        if top_k > 0 and gallery.shape[0] > 0:
            new_query = _expand(query, gallery, int(top_k), float(alpha), chunk_size, skip_self=False)
            if expand_gallery and gallery.shape[0] > 1:
                new_gallery = _expand(gallery, gallery, int(top_k), float(alpha), chunk_size, skip_self=True)
    if not isinstance(qf, Tensor):
        new_query = new_query.numpy()
    if not isinstance(gf, Tensor):
        new_gallery = new_gallery.numpy()
    return new_query, new_gallery
