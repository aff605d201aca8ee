"""The application commands: ``reidkit search``, ``serve`` and ``export`` (the index commands: ``cli/index.py``)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reidkit.cli._common import (
    add_backend_arguments,
    add_embedder_arguments,
    embedder_from_args,
    port_number,
    positive,
    positive_float,
)
from reidkit.errors import ReidkitError


def add_search(commands) -> None:
    p = commands.add_parser("search", help="search an index with a query photo")
    p.add_argument("--index", required=True, help="index folder (or Milvus collection, with --backend milvus)")
    add_backend_arguments(p)
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
    from reidkit.index import open_index, search_segments
    from reidkit.viz import RankedList, ranked_grid, write_results_page

    embedder = embedder_from_args(args)
    query = embedder.embed_images([read_image(args.query)])
    camera = args.camera.split(",") if args.camera else None
    fetch = max(args.top_k * 5, 50) if args.rerank else args.top_k
    with open_index(args.index, backend=args.backend, uri=args.uri, readonly=True) as index:
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
    p.add_argument(
        "--index",
        required=True,
        help="index folder (with --backend milvus: a folder whose name is the collection; it holds the "
        "images added through the service)",
    )
    add_backend_arguments(p)
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
    from reidkit.index.backends import check_backend
    from reidkit.serve import serve_main

    serve_main(
        index=args.index,
        uri=check_backend(args.backend, args.uri),
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
