"""Feature files: embeddings with their image paths, pids and camids in an ``.npz`` (``reidkit extract``).

Embedding itself lives in :mod:`reidkit.embed` (:func:`reidkit.embed.embed_paths`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reidkit._io import atomic_write
from reidkit.data.records import Sample
from reidkit.errors import DatasetError


def save_features(
    path: str | Path, features: np.ndarray, samples: Sequence[Sample], **extra: np.ndarray
) -> None:
    """Write features with their paths, pids and camids to an ``.npz`` file, atomically."""
    if len(features) != len(samples):
        raise ValueError(f"{len(features)} features for {len(samples)} samples")
    arrays = {
        "features": np.asarray(features, dtype=np.float32),
        "paths": np.array([s.path for s in samples]),
        "pids": np.array([s.pid for s in samples], dtype=np.int64),
        "camids": np.array([s.camid for s in samples], dtype=np.int64),
        **extra,
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, lambda stream: stream.write(buffer.getvalue()))


def load_features(path: str | Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` written by :func:`save_features`."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"feature file {path} does not exist")
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    missing = {"features", "paths", "pids", "camids"} - set(arrays)
    if missing:
        raise DatasetError(f"feature file {path} lacks {sorted(missing)}")
    return arrays
