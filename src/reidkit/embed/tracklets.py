"""Tracklets -> one L2-normalised embedding each, with any embedder (video ReID evaluation and extraction).

Two paths, chosen by the embedder:

* A :class:`~reidkit.embed.torch_embedder.TorchEmbedder` of a :class:`~reidkit.models.temporal.TemporalModel`
  embeds *clips*: :func:`reidkit.data.frames.sample_frames` cuts each tracklet into clips of ``seq_len`` frames
  (``"all"``: consecutive chunks covering every frame, the last one padded by repeating its frames;
  ``"evenly"``: one clip of evenly spread frames), each clip goes through ``model.embed`` (plus its mirror with
  ``preprocess.flip``, :meth:`TorchEmbedder.embed_clips`), and the tracklet feature is the mean of its clip
  features weighted by the number of distinct frames in each clip (the padded last chunk counts for its real
  frames only), then L2-normalised. The clip features are averaged before normalisation, so with the ``avg``
  head in eval mode (an affine BNNeck) the tracklet feature is that of one clip of all its frames whenever the
  padded last chunk repeats its frames equally often (its length divides ``seq_len``).
* Any other embedder (an image checkpoint, ONNX, OpenVINO) embeds *frames*: every frame (``"all"``) or the
  distinct frames of the ``"evenly"`` clip (``seq_len`` of them, fewer for a shorter tracklet), and the
  tracklet feature is :func:`reidkit.embed.aggregate.quality_weighted_mean` of its frame embeddings (equal
  weights: average pooling).

Memory is bounded whatever the tracklets' lengths: frames are decoded (by ``workers`` loader processes) and
embedded in steps of about ``batch_size`` frames (``batch_size // seq_len`` clips, at least one), and a tracklet
is never decoded whole. ``"random"`` clips are a training augmentation and are refused here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from reidkit.data.frames import FRAME_MODES, sample_frames
from reidkit.data.records import Tracklet
from reidkit.embed.aggregate import quality_weighted_mean
from reidkit.embed.base import Embedder, iter_image_chunks, normalise_rows
from reidkit.errors import ConfigError, DatasetError

#: the frame choices of :func:`embed_tracklets` (the test-time modes of :data:`reidkit.data.frames.FRAME_MODES`).
TEST_FRAME_MODES = ("all", "evenly")

__all__ = ["TEST_FRAME_MODES", "check_tracklet_arguments", "embed_tracklets", "is_temporal_embedder"]


def check_tracklet_arguments(seq_len: int, frames: str, batch_size: int = 1) -> None:
    """Raise ConfigError for a ``seq_len`` / ``batch_size`` below 1 or a ``frames`` mode other than all / evenly."""
    for name, value in (("seq_len", seq_len), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if frames == "random":
        raise ConfigError(
            "frames='random' draws a random clip per tracklet, a training augmentation; evaluation and "
            f"extraction need a fixed choice: use one of {list(TEST_FRAME_MODES)}"
        )
    if frames not in TEST_FRAME_MODES:
        raise ConfigError(
            f"unknown frame sampling mode {frames!r}; choose from {list(TEST_FRAME_MODES)} "
            f"(of {list(FRAME_MODES)}, 'random' is for training)"
        )


def is_temporal_embedder(embedder: Embedder) -> bool:
    """True for a :class:`TorchEmbedder` whose model is a :class:`~reidkit.models.temporal.TemporalModel`."""
    from reidkit.embed.torch_embedder import TorchEmbedder
    from reidkit.models.temporal import TemporalModel

    return isinstance(embedder, TorchEmbedder) and isinstance(embedder.model, TemporalModel)


def embed_tracklets(
    embedder: Embedder,
    tracklets: Sequence[Tracklet],
    *,
    seq_len: int = 8,
    frames: str = "all",
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Embed tracklets, one row each (see the module docstring for the two paths).

    Args:
        embedder: any embedder; a temporal checkpoint embeds clips, anything else frames.
        tracklets: the tracks, frames in temporal order.
        seq_len: frames per clip (temporal models) / frames of the ``"evenly"`` choice (image embedders).
        frames: ``"all"`` (every frame) or ``"evenly"`` (``seq_len`` evenly spread frames).
        batch_size: about this many frames are decoded and embedded per step (at least one clip).
        workers: loader processes decoding frames.
        progress: show a progress bar.

    Returns:
        ``[N, D]`` float32, L2-normalised rows in the order of ``tracklets``.

    Raises:
        ConfigError: a bad ``seq_len``, ``batch_size`` or ``frames`` (``"random"`` included).
        DatasetError: a tracklet without frames (named by position, pid and camera), an unreadable frame.
        EmbeddingError: the model returned NaN or infinity, or an embedding of length 0.
    """
    check_tracklet_arguments(seq_len, frames, batch_size)
    tracklets = list(tracklets)
    for position, tracklet in enumerate(tracklets):
        if not tracklet.paths:
            raise DatasetError(
                f"tracklet {position} (pid {tracklet.pid}, camera {tracklet.camid}) has no frames; "
                "every tracklet needs at least one frame to be embedded"
            )
    if not tracklets:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    if is_temporal_embedder(embedder):
        rows = _embed_by_clips(embedder, tracklets, int(seq_len), frames, int(batch_size), workers, progress)
        return normalise_rows(rows, embedder.name, embedder.runtime)
    return _embed_by_frames(embedder, tracklets, int(seq_len), frames, int(batch_size), workers, progress)


# ---------------------------------------------------------------------------------------------------------------
# temporal models: clips


@dataclass(frozen=True)
class _ClipBatch:
    """One step of clips: the distinct frames to decode and how the clips index them.

    Attributes:
        paths: the distinct frame files of the step, each decoded once.
        index: ``[C, T]`` positions in ``paths`` of each clip's frames.
        owners: ``[C]`` the tracklet of each clip (non-decreasing).
        weights: ``[C]`` the distinct frames of each clip.
    """

    paths: tuple[str, ...]
    index: np.ndarray
    owners: np.ndarray
    weights: np.ndarray


def _clip_batches(
    tracklets: Sequence[Tracklet], seq_len: int, frames: str, batch_size: int
) -> list[_ClipBatch]:
    """Every tracklet's clips, in order, grouped ``max(1, batch_size // seq_len)`` clips to a step."""
    per_step = max(1, batch_size // seq_len)
    batches: list[_ClipBatch] = []
    pending: list[tuple[int, list[int]]] = []

    def flush() -> None:
        positions: dict[tuple[int, int], int] = {}
        paths: list[str] = []
        index = np.empty((len(pending), seq_len), dtype=np.int64)
        for row, (owner, clip) in enumerate(pending):
            for column, frame in enumerate(clip):
                key = (owner, frame)
                if key not in positions:
                    positions[key] = len(paths)
                    paths.append(tracklets[owner].paths[frame])
                index[row, column] = positions[key]
        owners = np.array([owner for owner, _ in pending], dtype=np.int64)
        weights = np.array([len(set(clip)) for _, clip in pending], dtype=np.float64)
        batches.append(_ClipBatch(tuple(paths), index, owners, weights))
        pending.clear()

    for owner, tracklet in enumerate(tracklets):
        for clip in sample_frames(len(tracklet.paths), seq_len, frames):
            pending.append((owner, clip))
            if len(pending) == per_step:
                flush()
    if pending:
        flush()
    return batches


class _ClipFrames:
    """Map-style dataset: step ``i`` -> (its distinct frames preprocessed ``[F, 3, H, W]``, ``i``)."""

    def __init__(self, batches: Sequence[_ClipBatch], preprocess) -> None:
        self.batches, self.preprocess = batches, preprocess

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> tuple[np.ndarray, int]:
        from reidkit.data.transforms import read_image

        paths = self.batches[step].paths
        decoded = np.empty((len(paths), 3, self.preprocess.height, self.preprocess.width), dtype=np.float32)
        for position, path in enumerate(paths):
            decoded[position] = self.preprocess.image(read_image(path))
        return decoded, step


def _as_is(item):
    return item


def _decoded_steps(
    batches: Sequence[_ClipBatch], preprocess, workers: int, progress: bool
) -> Iterator[tuple[np.ndarray, int]]:
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    loader = DataLoader(
        _ClipFrames(batches, preprocess), batch_size=None, num_workers=workers, collate_fn=_as_is
    )
    yield from tqdm(loader, desc="tracklets", total=len(batches), disable=not progress)


def _embed_by_clips(embedder, tracklets, seq_len, frames, batch_size, workers, progress) -> np.ndarray:
    """``[N, D]`` frame-weighted means of the clip features (not normalised)."""
    batches = _clip_batches(tracklets, seq_len, frames, batch_size)
    rows: np.ndarray | None = None
    totals = np.zeros(len(tracklets), dtype=np.float64)
    for decoded, step in _decoded_steps(batches, embedder.preprocess, workers, progress):
        batch = batches[step]
        features = np.asarray(embedder.embed_clips(decoded[batch.index]), dtype=np.float64)
        if rows is None:
            rows = np.zeros((len(tracklets), features.shape[1]), dtype=np.float64)
        np.add.at(rows, batch.owners, batch.weights[:, None] * features)
        np.add.at(totals, batch.owners, batch.weights)
    assert rows is not None  # every tracklet has at least one clip
    return (rows / totals[:, None]).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# any other embedder: frames


def _frame_choice(count: int, seq_len: int, frames: str) -> list[int]:
    """The frames an image embedder embeds: all of them, or the distinct frames of the evenly spread clip."""
    if frames == "all":
        return list(range(count))
    return sorted(set(sample_frames(count, seq_len, "evenly")[0]))


def _embed_by_frames(embedder, tracklets, seq_len, frames, batch_size, workers, progress) -> np.ndarray:
    """``[N, D]`` quality-weighted (equal weights) means of the frame embeddings, holding one tracklet at a time."""
    chosen = [_frame_choice(len(t.paths), seq_len, frames) for t in tracklets]
    counts = [len(indices) for indices in chosen]
    paths = [tracklet.paths[i] for tracklet, indices in zip(tracklets, chosen, strict=True) for i in indices]
    rows: list[np.ndarray] = []
    buffer: np.ndarray | None = None
    for images in iter_image_chunks(
        paths, batch_size=batch_size, workers=workers, progress=progress, desc="frames"
    ):
        features = np.asarray(embedder.embed_images(images), dtype=np.float32)
        buffer = features if buffer is None else np.concatenate([buffer, features])
        while len(rows) < len(counts) and len(buffer) >= counts[len(rows)]:
            count = counts[len(rows)]
            rows.append(quality_weighted_mean(buffer[:count]))
            buffer = buffer[count:]
    return np.stack(rows)
