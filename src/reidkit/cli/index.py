"""``reidkit index build|add|info``: a gallery index from images, a dataset, tracklets or tracking runs."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from reidkit.cli._common import (
    add_backend_arguments,
    add_dataset_arguments,
    add_embedder_arguments,
    add_video_arguments,
    dataset_options,
    embedder_from_args,
    image_folder,
    positive,
    reject_video_flags,
    split_samples,
    video_settings,
)
from reidkit.data.video_datasets import is_video_dataset
from reidkit.errors import ConfigError, ReidkitError

if TYPE_CHECKING:
    from reidkit.index import Index


def add_index(commands) -> None:
    p = commands.add_parser("index", help="build, extend or describe a gallery index (FAISS + SQLite)")
    sub = p.add_subparsers(dest="index_command", required=True)
    for name in ("build", "add"):
        s = sub.add_parser(
            name, help=f"{name} images {'into a new' if name == 'build' else 'to an existing'} index"
        )
        if name == "add":
            s.add_argument("index", help="index folder (or Milvus collection, with --backend milvus)")
        else:
            s.add_argument(
                "--out", required=True, help="new index folder (or Milvus collection, with --backend milvus)"
            )
            s.add_argument(
                "--kind", choices=["flat", "ivf", "ivfpq"], default="flat", help="exact (flat) or IVF(-PQ)"
            )
            s.add_argument(
                "--metric", choices=["ip", "l2"], default="ip", help="cosine (ip) or Euclidean (l2)"
            )
            s.add_argument("--nlist", type=positive, help="IVF lists (default: about 4 sqrt(N) when trained)")
            s.add_argument(
                "--nprobe", type=positive, help="IVF lists visited per query (default: max(16, nlist / 64))"
            )
            s.add_argument(
                "--refine",
                type=positive,
                default=4,
                help="ivfpq: candidates per hit re-ranked with the exact embeddings (default 4)",
            )
        add_backend_arguments(s)
        add_embedder_arguments(s)
        s.add_argument("--images", help="a folder of images (camera = sub-folder name)")
        s.add_argument(
            "--tracks",
            action="append",
            metavar="RUN",
            help="a tracking run folder (reidkit track --out RUN): its tracklets, with their features, "
            "thumbnails, cameras and times; repeatable; needs no embedder flags",
        )
        add_dataset_arguments(s, defaults_from_checkpoint=False)
        s.add_argument("--split", choices=["train", "query", "gallery"], default="gallery")
        add_video_arguments(s, evaluation=False)
        s.add_argument("--batch-size", type=positive, default=64)
        s.add_argument("--quiet", action="store_true")
        s.set_defaults(func=run_index_write)
    s = sub.add_parser("info", help="size, model and kind of an index")
    s.add_argument("index")
    add_backend_arguments(s)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_index_info)


def _gallery_items(args: argparse.Namespace) -> tuple[list[str], list[dict]]:
    """Image paths and their metadata: a folder (camera = sub-folder name) or a dataset split."""
    from reidkit.data.records import NO_CAMERA

    if args.images:
        folder = Path(args.images)
        paths = image_folder("--images", args.images)
        items = []
        for path in paths:
            parent = Path(path).parent
            items.append({"path": path, "camera": None if parent == folder else parent.name})
        return paths, items
    if not args.dataset or not args.root:
        raise ReidkitError("give --images DIR, or --dataset NAME with --root R, or --tracks RUN")
    from reidkit.data.datasets import load_dataset

    samples = split_samples(load_dataset(args.dataset, args.root, **dataset_options(args.option)), args.split)
    if not samples:
        raise ReidkitError(
            f"the {args.split} split of {args.dataset} at {args.root} is empty: nothing to index"
        )
    items = [
        {"path": s.path, "camera": None if s.camid == NO_CAMERA else s.camid, "pid": s.pid} for s in samples
    ]
    return [s.path for s in samples], items


def _video_tracklets(args: argparse.Namespace) -> list:
    """The tracklets of ``--split`` of the video dataset ``--dataset``."""
    from reidkit.data.video_datasets import load_video_dataset

    if args.images:
        raise ReidkitError("give --images DIR or --dataset NAME, not both")
    tracklets = split_samples(
        load_video_dataset(args.dataset, args.root, **dataset_options(args.option)), args.split
    )
    if not tracklets:
        raise ReidkitError(
            f"the {args.split} split of {args.dataset} at {args.root} has no tracklets: nothing to index"
        )
    return list(tracklets)


def _add_video(index: Index, embedder, args: argparse.Namespace, target: str) -> None:
    from reidkit.index import index_tracklets

    seq_len, frames = video_settings(args, getattr(embedder, "checkpoint", None))
    done = index_tracklets(
        index,
        embedder,
        _video_tracklets(args),
        seq_len=seq_len,
        frames=frames,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    print(
        f"indexed {done.added} tracklets of {args.dataset} into {target} ({done.skipped} already there, skipped; "
        f"{len(index)} in all)"
    )


def run_index_info(args: argparse.Namespace) -> int:
    from reidkit.index import open_index

    with open_index(args.index, backend=args.backend, uri=args.uri, readonly=True) as index:
        info = index.info()
    print(
        json.dumps(info, indent=2, default=str)
        if args.json
        else "\n".join(f"{k}: {v}" for k, v in info.items())
    )
    return 0


def _open_for_build(args: argparse.Namespace, model: Any) -> tuple[Index, bool]:
    """The index of ``--out``: created, or resumed when an earlier build with the same settings left it.

    Args:
        args: the parsed arguments.
        model: what the index is built for: ``name``, ``fingerprint`` and ``dim`` (an embedder, or the
            embedder of a tracking run).

    Returns:
        The open index, and whether it was created now (False: resumed).
    """
    from reidkit.index import SettingsMismatchError, create_or_resume_index

    try:
        index, resumed = create_or_resume_index(
            args.out,
            backend=args.backend,
            uri=args.uri,
            dim=model.dim,
            fingerprint=model.fingerprint,
            model_name=model.name,
            metric=args.metric,
            kind=args.kind,
            nlist=args.nlist,
            nprobe=args.nprobe,
            refine=args.refine,
        )
    except SettingsMismatchError as error:
        raise ReidkitError(
            f"--out {args.out} already holds an index built with other settings or another model: "
            f"{'; '.join(error.differences)}. To add these images to it, run `reidkit index add {args.out}` "
            f"with the model it was built with; to build a new index, remove {args.out} or choose another --out"
        ) from None
    if resumed:
        print(
            f"resuming the build in {args.out}: it holds {len(index)} images from an earlier build with the "
            "same settings and model; the images already there are skipped"
        )
    return index, not resumed


def _run_model(run: str) -> SimpleNamespace:
    """The embedder (name, fingerprint, dim) that made the tracklet features of run folder ``run``."""
    from reidkit.track.runfiles import read_run_files

    info = read_run_files(run).info
    if info.fingerprint is None:
        raise ReidkitError(
            f"--tracks {run}: the run was tracked without an embedder, so its tracklets have no features to index"
        )
    return SimpleNamespace(name=info.embedder["name"], fingerprint=info.fingerprint, dim=info.dim)


def _add_tracks(index: Index, runs: list[str], target: str) -> None:
    from reidkit.index import index_tracks

    for run in runs:
        done = index_tracks(index, run)
        print(
            f"indexed {done.added} tracklets of {run} into {target} ({done.skipped} already there, skipped; "
            f"{len(index)} in all)"
        )
        if done.replaced or done.removed:
            print(
                f"the run changed since it was indexed: {done.replaced} tracklets re-added, "
                f"{done.removed} no longer in it removed"
            )
        if done.without_feature:
            print(
                f"{done.without_feature} tracklets have no feature (no crop good enough) and are not indexed"
            )


def _has_embedder(args: argparse.Namespace) -> bool:
    return any(getattr(args, name) for name in ("checkpoint", "onnx", "openvino"))


def run_index_write(args: argparse.Namespace) -> int:
    """``reidkit index build|add``; under ``torchrun`` the processes embed image chunks in turn, rank 0 writes."""
    from reidkit.distributed import Distributed

    distributed = Distributed.from_environment()
    if not distributed.enabled:
        return _index_write(args, distributed)
    if args.tracks or (args.dataset and is_video_dataset(args.dataset)):
        raise ConfigError(
            "index under torchrun shards the embedding of images; add tracks or tracklets as one process"
        )
    from reidkit.index import index_images

    device = distributed.process_device(args.device)
    args.device = str(device)
    with distributed.joined(device):
        if distributed.is_main:
            return _index_write(args, distributed)
        # the others embed the chunks rank 0 hands out: they neither list the images nor open the index
        index_images(None, embedder_from_args(args), [], batch_size=args.batch_size, distributed=distributed)
        return 0


def _index_write(args: argparse.Namespace, distributed) -> int:
    from reidkit.index import index_images, open_index
    from reidkit.index.store import discard_unwritten

    runs = args.tracks or []
    video = bool(args.dataset) and is_video_dataset(args.dataset)
    images = bool(args.images or args.dataset or not runs) and not video
    if not video:
        given = "--images" if args.images else f"the dataset {args.dataset!r}" if args.dataset else "--tracks"
        reject_video_flags(args, given)
    embedder = embedder_from_args(args) if images or video or _has_embedder(args) else None
    paths, items = _gallery_items(args) if images else ([], [])
    if args.index_command == "build":
        target = args.out
        index, created = _open_for_build(args, embedder if embedder is not None else _run_model(runs[0]))
    else:
        target, created = args.index, False
        index = open_index(args.index, backend=args.backend, uri=args.uri)
    try:
        with index:
            if video:
                _add_video(index, embedder, args, target)
            if images:
                done = index_images(
                    index,
                    embedder,
                    paths,
                    items,
                    batch_size=args.batch_size,
                    progress=not args.quiet,
                    distributed=distributed,
                )
            _add_tracks(index, runs, target)
            total = len(index)
    except BaseException:
        if created and args.backend == "faiss":  # a build that committed nothing leaves nothing behind
            with contextlib.suppress(ReidkitError, OSError):
                discard_unwritten(Path(target))
        raise
    if not images:
        return 0
    print(
        f"indexed {done.added} images into {target} ({done.skipped} already there, skipped; {total} in all)"
    )
    if done.replaced:
        print(
            f"{done.replaced} of them had changed since they were indexed: re-embedded, old entries replaced"
        )
    if done.repeated:
        print(f"{done.repeated} paths were given more than once and indexed once")
    return 0
