"""The application commands: ``reidkit index build|add|info``, ``search``, ``serve`` and ``export``."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from reidkit.cli._common import (
    add_dataset_arguments,
    add_embedder_arguments,
    add_video_arguments,
    dataset_options,
    embedder_from_args,
    image_folder,
    port_number,
    positive,
    positive_float,
    reject_video_flags,
    split_samples,
    video_settings,
)
from reidkit.data.video_datasets import is_video_dataset
from reidkit.errors import ReidkitError

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
            s.add_argument("index", help="index folder")
        else:
            s.add_argument("--out", required=True, help="new index folder")
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
    from reidkit.index import Index

    with Index.open(args.index, readonly=True) as index:
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
    from reidkit.index import Index, SettingsMismatchError

    try:
        index, resumed = Index.create_or_resume(
            args.out,
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
    from reidkit.index import Index, index_images
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
        index = Index.open(args.index)
    try:
        with index:
            if video:
                _add_video(index, embedder, args, target)
            if images:
                done = index_images(
                    index, embedder, paths, items, batch_size=args.batch_size, progress=not args.quiet
                )
            _add_tracks(index, runs, target)
            total = len(index)
    except BaseException:
        if created:  # a build that committed nothing leaves nothing behind; the original error is reported
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


def add_search(commands) -> None:
    p = commands.add_parser("search", help="search an index with a query photo")
    p.add_argument("--index", required=True)
    p.add_argument("--query", required=True, help="query image file")
    add_embedder_arguments(p)
    p.add_argument("--top-k", type=positive, default=20)
    p.add_argument("--camera", help="only these cameras (comma-separated)")
    p.add_argument("--since", help="only after this time (ISO-8601 or seconds)")
    p.add_argument("--until", help="only before this time")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking of the candidates")
    p.add_argument("--out", help="folder for results.png (ranked grid) and results.html")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_search)


def _rerank_hits(index, query, hits: list, top_k: int) -> list:
    """k-reciprocal re-ranking of the retrieved candidates (exact mode on the small candidate set)."""
    import numpy as np

    from reidkit.rerank import rerank_candidates

    if len(hits) < 3:
        return hits[:top_k]
    vectors = index.vectors([hit.id for hit in hits]).astype(np.float32)
    reranked = rerank_candidates(np.asarray(query, dtype=np.float32), vectors)
    order = np.argsort(reranked, kind="stable")[:top_k]
    return [type(hits[i])(hits[i].id, float(reranked[i]), hits[i].item) for i in order]


def _print_hits(hits: list) -> None:
    print(f"{'rank':>4}  {'distance':>8}  {'camera':<10} {'time':<20} {'pid':>5}  path")
    for rank, hit in enumerate(hits, 1):
        item = hit.item
        when = (
            "" if item.timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item.timestamp))
        )
        pid = "" if item.pid is None else item.pid
        print(
            f"{rank:>4}  {hit.distance:8.4f}  {str(item.camera or ''):<10} {when:<20} {pid:>5}  {item.path}"
        )


def _print_identities(identities: list) -> None:
    """One block per identity: its best distance, then one line per segment (camera, times, distance)."""
    for rank, answer in enumerate(identities, 1):
        who = (
            f"global id {answer.global_id}"
            if answer.global_id is not None
            else "a tracklet without global id"
        )
        cameras = ", ".join(answer.cameras)
        print(
            f"#{rank}  {who} in {answer.run}  distance {answer.distance:.4f}  "
            f"{len(answer.segments)} segments on {cameras}"
        )
        print(
            f"    {'camera':<10} {'start s':>14} {'end s':>14}  {'start (UTC)':<24} {'end (UTC)':<24} {'distance':>8}  thumbnail"
        )
        for segment in answer.segments:
            entry = segment.to_dict()
            print(
                f"    {str(segment.camera):<10} {segment.start_time:14.2f} {segment.end_time:14.2f}  "
                f"{entry['start_iso'] or '-':<24} {entry['end_iso'] or '-':<24} {segment.distance:8.4f}"
                f"{'' if segment.hit else '*'} {segment.thumbnail}"
            )
    if any(not segment.hit for answer in identities for segment in answer.segments):
        print("* a segment of an identity found, not itself among the top hits")


def run_search(args: argparse.Namespace) -> int:
    from reidkit.data.transforms import read_image
    from reidkit.index import Index, search_segments
    from reidkit.viz import RankedList, ranked_grid, write_results_page

    embedder = embedder_from_args(args)
    query = embedder.embed_images([read_image(args.query)])
    camera = args.camera.split(",") if args.camera else None
    fetch = max(args.top_k * 5, 50) if args.rerank else args.top_k
    with Index.open(args.index, readonly=True) as index:
        hits = index.search(
            query,
            fingerprint=embedder.fingerprint,
            top_k=fetch,
            camera=camera,
            since=args.since,
            until=args.until,
        )[0]
        if args.rerank:
            hits = _rerank_hits(index, query, hits, args.top_k)
        # with re-ranking, the segments not among the hits would have distances on another scale: not listed
        found = search_segments(
            index,
            query,
            fingerprint=embedder.fingerprint,
            hits=hits,
            complete=not args.rerank,
            camera=camera,
            since=args.since,
            until=args.until,
        )
    identities = [answer.to_dict() for answer in found.identities]
    if args.json:
        answer = [hit.to_dict() for hit in hits]
        if identities:
            answer = {"identities": identities, "results": answer}
        print(json.dumps(answer, indent=2, default=str))
    elif identities:
        _print_identities(found.identities)
        if found.hits:
            print("images:")
            _print_hits(found.hits)
    else:
        _print_hits(hits)
    if args.out:
        out = Path(args.out)
        existing = [hit for hit in hits if Path(hit.item.path).is_file()]
        ranked = RankedList(
            args.query,
            [h.item.path for h in existing],
            [False] * len(existing),
            [h.distance for h in existing],
        )
        try:
            ranked_grid([ranked], out / "results.png", top_k=len(existing), neutral=True)
            write_results_page(out / "results.html", args.query, found.hits, identities=found.identities)
        except OSError as error:
            raise ReidkitError(
                f"--out {out}: cannot write the results there ({error.strerror or error})"
            ) from None
        print(f"results: {out / 'results.png'}, {out / 'results.html'}")
    return 0


def add_serve(commands) -> None:
    p = commands.add_parser("serve", help="HTTP search service with a web page")
    p.add_argument("--index", required=True)
    add_embedder_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port, 0..65535 (default 8000)")
    p.add_argument(
        "--token-env", default="REIDKIT_TOKEN", help="environment variable holding the write token"
    )
    p.add_argument("--max-upload-mb", type=positive_float, default=10.0, help="size limit of one image")
    p.add_argument(
        "--max-pixels",
        type=positive,
        default=40_000_000,
        help="width x height limit of the images of one request, summed (default 40000000)",
    )
    p.add_argument(
        "--max-concurrent-decodes",
        type=positive,
        default=2,
        help="requests at the pixel limit decoding at once; decoded images take at most about "
        "max-pixels x this x 8 bytes (default 2)",
    )
    p.add_argument(
        "--body-timeout",
        type=positive_float,
        default=120.0,
        help="seconds a request body may take to arrive (default 120)",
    )
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from reidkit.serve import serve_main

    serve_main(
        index=args.index,
        checkpoint=args.checkpoint,
        onnx=args.onnx,
        openvino=args.openvino,
        preprocess=args.preprocess,
        host=args.host,
        port=args.port,
        token_env=args.token_env,
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_concurrent_decodes=args.max_concurrent_decodes,
        body_timeout_s=args.body_timeout,
        device=args.device,
        bf16=args.bf16,
    )
    return 0


def add_export(commands) -> None:
    p = commands.add_parser(
        "export", help="export a checkpoint's embed() to ONNX or TorchScript, with parity check"
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--out", help="output file (default: beside the checkpoint)")
    p.add_argument("--images", nargs="*", help="real images for the parity check")
    p.add_argument("--no-flip", action="store_true", help="export without flip averaging")
    p.add_argument(
        "--seq-len", type=positive, help="video model: frames per clip (default: its training clip length)"
    )
    p.add_argument(
        "--dynamic-length", action="store_true", help="video model: clips of any length (dynamic frames axis)"
    )
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from reidkit.export import export_main

    export_main(
        checkpoint=args.checkpoint,
        out=args.out,
        format=args.format,
        flip=not args.no_flip,
        images=args.images,
        seq_len=args.seq_len,
        dynamic_length=args.dynamic_length,
    )
    return 0
