"""Frame sampling of a tracklet: which frames of a video track form the clips a temporal model sees.

A clip is ``seq_len`` frame indices of one tracklet, always in temporal order (sorted ascending, repeats allowed).

- ``"evenly"``: one clip, frames spread evenly over the whole tracklet: index ``i`` is ``(i * N) // seq_len``
  (the first frame of the ``i``-th of ``seq_len`` equal segments). A tracklet shorter than ``seq_len`` repeats
  its frames in order (``N=3, seq_len=6 -> 0 0 1 1 2 2``), so every frame counts equally often (+-1).
- ``"random"``: one clip, one random frame from each of the ``seq_len`` equal segments (restricted random
  sampling, Li et al., "Diversity Regularized Spatiotemporal Attention for Video-based Person
  Re-identification", CVPR 2018): sorted random indices that still span the whole tracklet. Segments of a
  tracklet shorter than ``seq_len`` hold one frame each, so the clip is then the ``"evenly"`` one. The
  choice depends only on the generator: pass ``rng=clip_rng(seed, epoch, index)`` for exact resume.
- ``"all"``: consecutive chunks of ``seq_len`` frames covering every frame exactly once, for test-time
  embedding of long tracklets with bounded memory; the last, short chunk of ``r`` frames is padded to
  ``seq_len`` by spreading those ``r`` frames evenly (as ``"evenly"`` does), so none of them is over-weighted
  by more than one repeat.

Identity-balanced batches of tracklets need no sampler of their own: :class:`reidkit.data.sampler.PKSampler`
takes one identity label per item, whatever the items are, so ``PKSampler([t.pid for t in tracklets], p=P,
k=K, seed=s)`` yields batches of P identities x K tracklets, complete per epoch, a function of ``(seed,
epoch)`` only, resumable with ``set_epoch(epoch, start_batch)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reidkit.data.records import Tracklet

#: the frame sampling modes of :func:`sample_frames`.
FRAME_MODES = ("evenly", "random", "all")

__all__ = ["FRAME_MODES", "check_clip_indices", "clip_rng", "sample_frames", "tracklet_clips"]


def _spread(count: int, seq_len: int) -> np.ndarray:
    """``seq_len`` sorted indices into ``range(count)``, evenly spread (each index used ``seq_len/count`` +-1 times)."""
    return (np.arange(seq_len) * count) // seq_len


def clip_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for the ``"random"`` clip of dataset item ``index`` in ``epoch``: a function of the three only.

    The same convention as the P x K sampler's ``(seed, epoch)``, so a resumed run redraws the same clips.
    """
    return np.random.default_rng([seed, epoch, index])


def sample_frames(
    num_frames: int,
    seq_len: int,
    mode: str,
    *,
    rng: np.random.Generator | int | None = None,
) -> list[list[int]]:
    """Frame indices of the clips of a tracklet of ``num_frames`` frames (see the module docstring).

    Args:
        num_frames: frames in the tracklet (>= 1).
        seq_len: frames per clip (>= 1).
        mode: ``"evenly"``, ``"random"`` or ``"all"``.
        rng: the generator (or an integer seed) of the ``"random"`` mode, where it is required; ignored otherwise.

    Returns:
        Clips, each a list of ``seq_len`` sorted indices in ``range(num_frames)``: one clip for ``"evenly"`` and
        ``"random"``, ``ceil(num_frames / seq_len)`` for ``"all"``.

    Raises:
        ValueError: ``num_frames`` or ``seq_len`` below 1, an unknown ``mode``, or ``"random"`` without ``rng``.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be an integer >= 1 (frames in the tracklet), got {num_frames!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"seq_len must be an integer >= 1 (frames per clip), got {seq_len!r}")
    num_frames, seq_len = int(num_frames), int(seq_len)
    if mode == "evenly":
        return [_spread(num_frames, seq_len).tolist()]
    if mode == "random":
        if rng is None:
            raise ValueError(
                "frame sampling mode 'random' needs rng (a numpy Generator or an integer seed), "
                "e.g. rng=clip_rng(seed, epoch, index)"
            )
        generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        starts = _spread(num_frames, seq_len)
        ends = np.maximum(starts + 1, (np.arange(1, seq_len + 1) * num_frames) // seq_len)
        return [generator.integers(starts, ends).tolist()]
    if mode == "all":
        clips = []
        for start in range(0, num_frames, seq_len):
            count = min(seq_len, num_frames - start)
            clips.append((start + _spread(count, seq_len)).tolist())
        return clips
    raise ValueError(f"unknown frame sampling mode {mode!r}; choose from {list(FRAME_MODES)}")


def tracklet_clips(
    tracklet: Tracklet,
    seq_len: int,
    mode: str,
    *,
    rng: np.random.Generator | int | None = None,
) -> list[tuple[str, ...]]:
    """The frame paths of the clips of ``tracklet``: :func:`sample_frames` applied to ``tracklet.paths``.

    Args:
        tracklet: the track (its ``paths`` are the frames in temporal order).
        seq_len: frames per clip.
        mode: ``"evenly"``, ``"random"`` or ``"all"``.
        rng: the generator (or seed) of the ``"random"`` mode.

    Returns:
        One tuple of ``seq_len`` paths per clip.

    Raises:
        ValueError: a tracklet without frames (the message names its pid and camera), or bad sampling arguments.
    """
    if not tracklet.paths:
        raise ValueError(f"tracklet of pid {tracklet.pid}, camera {tracklet.camid} has no frames")
    return [
        tuple(tracklet.paths[i] for i in clip)
        for clip in sample_frames(len(tracklet.paths), seq_len, mode, rng=rng)
    ]


def check_clip_indices(clips: Sequence[Sequence[int]], num_frames: int) -> None:
    """Raise ValueError unless ``clips`` is a non-empty list of equally long, non-empty in-range index lists."""
    if not clips:
        raise ValueError("expected at least one clip of frame indices, got none")
    lengths = {len(clip) for clip in clips}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            f"every clip must have the same number (>= 1) of frames, got lengths {sorted(lengths)}"
        )
    for clip in clips:
        for index in clip:
            if not 0 <= int(index) < num_frames:
                raise ValueError(f"frame index {index} is out of range for {num_frames} frames")
