"""What several commands share: dataset options, the embedder flags, image folders, metric tables."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from reidkit.errors import ReidkitError


def dataset_options(pairs: list[str] | None) -> dict:
    """``["key=value", ...]`` (``--option``) -> keyword arguments of ``load_dataset``, values read as YAML."""
    from reidkit.config import yaml_load

    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ReidkitError(f"--option {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        options[key] = yaml_load(value)
    return options


def add_dataset_arguments(parser: argparse.ArgumentParser, *, defaults_from_checkpoint: bool) -> None:
    """``--dataset``, ``--root``, ``--option`` and ``--split`` (where a command takes one split)."""
    suffix = " (default: the one the checkpoint was trained on)" if defaults_from_checkpoint else ""
    parser.add_argument("--dataset", help="dataset name" + suffix)
    parser.add_argument("--root", help="dataset root" + (" (default: the checkpoint's)" if suffix else ""))
    parser.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. variant=labeled"
    )


def dataset_choice(args: argparse.Namespace, checkpoint=None) -> tuple[str, str, dict]:
    """``(name, root, options)`` of ``--dataset/--root/--option``, by default the checkpoint's dataset."""
    data = checkpoint.data if checkpoint is not None else None
    name = args.dataset or (data.name if data else None)
    root = args.root or (data.root if data else None)
    if not name or not root:
        raise ReidkitError(
            "give --dataset and --root" + (" (the checkpoint does not name a dataset)" if checkpoint else "")
        )
    options = dataset_options(args.option)
    if data is not None and not args.dataset and not options:
        options = dict(data.options)
    return name, root, options


def load_split(args: argparse.Namespace, checkpoint=None):
    """The split named by ``--dataset/--root``, or by default the one the checkpoint was trained on."""
    from reidkit.data.datasets import load_dataset

    name, root, options = dataset_choice(args, checkpoint)
    return load_dataset(name, root, **options)


#: the video options of ``eval`` / ``extract`` and their argparse destinations
_VIDEO_FLAGS = (("--seq-len", "seq_len"), ("--frames", "frames"), ("--video-mode", "video_mode"))


def add_video_arguments(parser: argparse.ArgumentParser, *, evaluation: bool) -> None:
    """``--seq-len`` and ``--frames`` (and, for ``eval``, ``--video-mode`` and ``--all-splits``)."""
    group = parser.add_argument_group("video datasets (tracklets)")
    group.add_argument(
        "--seq-len",
        type=positive,
        metavar="N",
        help="frames per clip of a temporal model; frames of --frames evenly (default: the checkpoint's "
        "data.seq_len, else 8)",
    )
    group.add_argument(
        "--frames",
        choices=["all", "evenly"],
        help="all: every frame, in clips of --seq-len (default); evenly: --seq-len evenly spread frames",
    )
    if evaluation:
        group.add_argument(
            "--video-mode",
            choices=["v2v", "i2v", "v2i"],
            help="v2v: tracklets vs tracklets (default); i2v: the first frame of each query tracklet vs "
            "tracklets; v2i: tracklets vs the first frame of each gallery tracklet",
        )
        group.add_argument(
            "--all-splits",
            action="store_true",
            help="average over every train / test split of the dataset (iLIDS-VID, PRID2011)",
        )


def reject_video_flags(args: argparse.Namespace, what: str) -> None:
    """Raise ReidkitError when a video option was given for ``what`` (an image dataset or image folder)."""
    given = [flag for flag, destination in _VIDEO_FLAGS if getattr(args, destination, None) is not None]
    if getattr(args, "all_splits", False):
        given.append("--all-splits")
    if given:
        raise ReidkitError(f"{', '.join(given)}: options of video datasets, but {what} holds images")


def video_settings(args: argparse.Namespace, checkpoint=None) -> tuple[int, str]:
    """``(seq_len, frames)``: ``--seq-len`` (default the checkpoint's ``data.seq_len``, else 8), ``--frames``."""
    data = checkpoint.data if checkpoint is not None else None
    seq_len = args.seq_len or getattr(data, "seq_len", None) or 8
    return int(seq_len), args.frames or "all"


def split_samples(split, name: str):
    return {"train": split.train, "query": split.query, "gallery": split.gallery}[name]


def image_folder(option: str, folder: str) -> list[str]:
    """The image files under ``folder``, recursive and sorted (the suffixes of ``IMAGE_EXTENSIONS``)."""
    from reidkit.data.folder import IMAGE_EXTENSIONS, list_images

    path = Path(folder)
    if not path.is_dir():
        raise ReidkitError(f"{option} {path} is not a folder")
    paths = [str(p) for p in list_images(path, recursive=True)]
    if not paths:
        raise ReidkitError(f"{option} {path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths


def add_embedder_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("embedder (exactly one)")
    group.add_argument("--checkpoint", help="a reidkit checkpoint")
    group.add_argument("--onnx", help="an ONNX model (reidkit export, or third-party with --preprocess)")
    group.add_argument("--openvino", help="an OpenVINO IR .xml (or .onnx) model")
    group.add_argument("--preprocess", help="preprocessing of a third-party model: imagenet, bgr255, rgb255")
    parser.add_argument("--device", default="cpu")
    add_bf16_argument(parser)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["faiss", "milvus"],
        default="faiss",
        help="where the index lives: a FAISS + SQLite folder (default), or a Milvus collection named by the "
        "index argument",
    )
    parser.add_argument(
        "--uri", help="--backend milvus: the Milvus address (http://host:19530) or a Milvus Lite .db file"
    )


def add_bf16_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="checkpoints: run the network under bfloat16 autocast (fast on CPUs with AMX / AVX512-BF16; "
        "features stay float32)",
    )


def embedder_from_args(args: argparse.Namespace):
    """The embedder of ``--checkpoint`` / ``--onnx`` / ``--openvino`` (see :func:`add_embedder_arguments`)."""
    from reidkit.embed import load_embedder

    return load_embedder(
        checkpoint=args.checkpoint,
        onnx=args.onnx,
        openvino=args.openvino,
        preprocess=args.preprocess,
        device=args.device,
        bf16=args.bf16,
    )


def checkpoint_embedder(args: argparse.Namespace, *, batch_size: int = 64):
    """``(checkpoint, TorchEmbedder)`` of ``--checkpoint`` with ``--no-flip`` and ``--device``."""
    from reidkit.embed import load_embedder

    embedder = load_embedder(
        checkpoint=args.checkpoint,
        flip=not args.no_flip,
        device=args.device,
        batch_size=batch_size,
        bf16=args.bf16,
    )
    return embedder.checkpoint, embedder


def positive(value: str) -> int:
    """argparse type: an integer >= 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return number


def non_negative(value: str) -> int:
    """argparse type: an integer >= 0."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return number


def non_negative_float(value: str) -> float:
    """argparse type: a finite number >= 0."""
    number = float(value)
    if not 0.0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return number


def port_number(value: str) -> int:
    """argparse type: a TCP port, an integer in 0..65535 (0: any free port)."""
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 0..65535, got {value}")
    return number


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0."""
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {value}")
    return number


def format_split_metrics(per_split: list[dict], mean: dict, *, title: str = "") -> str:
    """A table of one row per split (``split 0``, ...), then their ``mean`` and standard deviation (``std``)."""
    keys = [k for k in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP") if k in mean]
    spread = {k: math.sqrt(sum((m[k] - mean[k]) ** 2 for m in per_split) / len(per_split)) for k in keys}
    rows = [(f"split {i}", m) for i, m in enumerate(per_split)] + [("mean", mean), ("std", spread)]
    width = max(len(label) for label, _ in rows)
    lines = [" " * width + " " + " ".join(f"{k:>7}" for k in keys)]
    lines += [label.ljust(width) + " " + " ".join(f"{100 * m[k]:7.2f}" for k in keys) for label, m in rows]
    return "\n".join(([title] if title else []) + lines)


def format_metrics(metrics: dict, *, title: str = "") -> str:
    keys = [k for k in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP") if k in metrics]
    header = " ".join(f"{k:>7}" for k in keys)
    values = " ".join(f"{100 * metrics[k]:7.2f}" for k in keys)
    return (f"{title}\n" if title else "") + f"{header}\n{values}"
