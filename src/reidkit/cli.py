"""The ``reidkit`` command line: the edge where a config is turned into plain calls to the library.

Subcommands: synth, datasets, train, eval, extract (and the search/serve/export family when their
optional dependencies are installed). Bad input ends with ``error: <message>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from reidkit import __version__
from reidkit.errors import ReidkitError

EXIT_BAD_INPUT = 2


# -------------------------------------------------------------------------------------------- commands
def cmd_synth(args: argparse.Namespace) -> int:
    from reidkit.data.synth import generate

    summary = generate(
        args.out,
        ids=args.ids,
        cams=args.cams,
        seed=args.seed,
        difficulty=args.difficulty,
        distractors=args.distractors,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(json.dumps(summary, indent=2) if args.json else _format_synth(args.out, summary))
    if args.sheet:
        from reidkit.data.synth import contact_sheet

        contact_sheet(args.sheet, args.out, seed=args.seed)
        print(f"contact sheet: {args.sheet}")
    return 0


def _format_synth(out: str, summary: dict) -> str:
    lines = [f"wrote synthetic dataset to {out}"]
    for key, value in summary.items():
        if not isinstance(value, (dict, list)):
            lines.append(f"  {key}: {value}")
        elif isinstance(value, dict):
            lines.append(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
    return "\n".join(lines)


def _options(pairs: list[str]) -> dict:
    from reidkit.config import yaml_load

    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ReidkitError(f"--option {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        options[key] = yaml_load(value)
    return options


def cmd_datasets_summary(args: argparse.Namespace) -> int:
    from reidkit.data.datasets import format_summary, load_dataset, summarize_split

    split = load_dataset(args.name, args.root, **_options(args.option))
    summary = summarize_split(split)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from reidkit.checkpoint import CHECKPOINT_NAME
    from reidkit.config import load_config, save_config
    from reidkit.engine import fit
    from reidkit.recipe import build_training, fit_options

    config = load_config(args.config, args.set)
    out = Path(args.out)
    resume = None
    if args.resume is not None:
        resume = Path(args.resume) if args.resume != "auto" else out / CHECKPOINT_NAME
    progress = not args.quiet
    run = build_training(config)
    save_config(config, out / "config.yaml")
    options = fit_options(config, run, out_dir=out, resume=resume, max_steps=args.max_steps, progress=progress)
    result = fit(run, options)
    from reidkit._io import atomic_write_text

    atomic_write_text(
        out / "metrics.json", json.dumps({"before": result["before"], "after": result["metrics"]}, indent=2)
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"checkpoint: {out / CHECKPOINT_NAME}")
        if result["before"]:
            print(format_metrics(result["before"], title="before training"))
        if result["metrics"]:
            print(format_metrics(result["metrics"], title=f"after {result['state']['epoch']} epochs"))
    return 0


def format_metrics(metrics: dict, *, title: str = "") -> str:
    keys = [k for k in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP") if k in metrics]
    header = " ".join(f"{k:>7}" for k in keys)
    values = " ".join(f"{100 * metrics[k]:7.2f}" for k in keys)
    return (f"{title}\n" if title else "") + f"{header}\n{values}"


def _load_split(args: argparse.Namespace, checkpoint=None):
    """The split named by ``--dataset/--root``, or by default the one the checkpoint was trained on."""
    from reidkit.data.datasets import load_dataset

    data = checkpoint.data if checkpoint is not None else None
    name = args.dataset or (data.name if data else None)
    root = args.root or (data.root if data else None)
    if not name or not root:
        raise ReidkitError("give --dataset and --root (the checkpoint does not name a dataset)")
    options = _options(getattr(args, "option", None))
    if data is not None and not args.dataset and not options:
        options = dict(data.options)
    return load_dataset(name, root, **options)


def _scorer(args: argparse.Namespace, embedder):
    from reidkit.errors import ConfigError
    from reidkit.evaluation import aligned_scorer, global_scorer, load_pair_head, pairwise_scorer

    if args.pairwise:
        if args.distance != "global" or args.rerank or args.qe:
            raise ConfigError("--pairwise scores with the pair head: drop --distance, --rerank and --qe")
        head, on = load_pair_head(embedder, device=args.device)
        return pairwise_scorer(head, on=on, batch_size=args.pair_batch_size)
    if args.distance != "global":
        if args.rerank or args.qe:
            raise ConfigError(
                f"re-ranking and query expansion work on the global distance, not {args.distance!r}"
            )
        return aligned_scorer(mode=args.distance, local_weight=args.local_weight, metric=args.metric)
    return global_scorer(metric=args.metric, rerank=args.rerank, query_expansion=args.qe)


def cmd_eval(args: argparse.Namespace) -> int:
    from reidkit import checkpoint as checkpoints
    from reidkit.embed import TorchEmbedder
    from reidkit.evaluation import evaluate_split
    from reidkit.viz import plot_cmc, ranked_grid, ranked_lists

    checkpoint = checkpoints.load(args.checkpoint, map_location=args.device).without_training()
    embedder = TorchEmbedder.from_checkpoint(
        checkpoint, flip=not args.no_flip, device=args.device, batch_size=args.batch_size
    )
    scorer = _scorer(args, embedder)
    split = _load_split(args, checkpoint)
    result = evaluate_split(embedder, split, scorer, workers=args.workers, progress=not args.quiet)
    if args.features:
        import numpy as np

        from reidkit.extract import save_features

        stem = Path(args.features)
        save_features(stem.with_name(stem.name + ".query.npz"), result.query_features, split.query)
        save_features(
            stem.with_name(stem.name + ".gallery.npz"),
            result.gallery_features,
            split.gallery,
            distmat=np.asarray(result.distmat, dtype=np.float32),
        )
    metrics = result.metrics.as_dict()
    report = Path(args.report) if args.report else Path(args.checkpoint).parent / "report"
    from reidkit._io import atomic_write_text

    atomic_write_text(report / "metrics.json", json.dumps(metrics, indent=2))
    plot_cmc({Path(args.checkpoint).name: result.metrics.cmc}, report / "cmc.png")
    ranked_grid(ranked_lists(split, result.distmat, queries=args.grid_queries), report / "ranked.png")
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(
            format_metrics(
                metrics,
                title=f"{split.name or args.dataset}: {len(split.query)} queries, {len(split.gallery)} gallery",
            )
        )
        print(f"report: {report}")
    return 0


def _image_folder(option: str, folder: str) -> list[str]:
    """The image files under ``folder`` (recursive, sorted; the suffixes of :data:`IMAGE_EXTENSIONS`)."""
    from reidkit.data.folder import IMAGE_EXTENSIONS, list_images

    path = Path(folder)
    if not path.is_dir():
        raise ReidkitError(f"{option} {path} is not a folder")
    paths = [str(p) for p in list_images(path, recursive=True)]
    if not paths:
        raise ReidkitError(f"{option} {path} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths


def cmd_extract(args: argparse.Namespace) -> int:
    from reidkit import checkpoint as checkpoints
    from reidkit.data.records import Sample
    from reidkit.embed import TorchEmbedder, embed_paths
    from reidkit.extract import save_features

    checkpoint = checkpoints.load(args.checkpoint, map_location=args.device).without_training()
    embedder = TorchEmbedder.from_checkpoint(checkpoint, flip=not args.no_flip, device=args.device)
    if args.images:
        samples = [Sample(p, -1, -1) for p in _image_folder("--images", args.images)]
    else:
        split = _load_split(args, checkpoint)
        samples = {"train": split.train, "query": split.query, "gallery": split.gallery}[args.split]
    features = embed_paths(
        embedder, [s.path for s in samples], workers=args.workers, progress=not args.quiet
    )
    save_features(args.out, features, samples)
    print(f"wrote {len(samples)} x {features.shape[1]} features to {args.out}")
    return 0


# ------------------------------------------------------------------------------------ search and serving
def _embedder(args: argparse.Namespace):
    from reidkit.embed import load_embedder

    return load_embedder(
        checkpoint=args.checkpoint,
        onnx=args.onnx,
        openvino=args.openvino,
        preprocess=args.preprocess,
        device=args.device,
    )


def _gallery_items(args: argparse.Namespace, embedder) -> tuple[list[str], list[dict]]:
    """Image paths and their metadata: a folder (camera = sub-folder name) or a dataset split."""
    from reidkit.data.records import NO_CAMERA

    if args.images:
        folder = Path(args.images)
        paths = _image_folder("--images", args.images)
        items = []
        for path in paths:
            parent = Path(path).parent
            items.append({"path": path, "camera": None if parent == folder else parent.name})
        return paths, items
    if not args.dataset or not args.root:
        raise ReidkitError("give --images DIR, or --dataset NAME with --root R")
    from reidkit.data.datasets import load_dataset

    split = load_dataset(args.dataset, args.root, **_options(args.option))
    samples = {"train": split.train, "query": split.query, "gallery": split.gallery}[args.split]
    items = [
        {"path": s.path, "camera": None if s.camid == NO_CAMERA else s.camid, "pid": s.pid} for s in samples
    ]
    return [s.path for s in samples], items


def cmd_index(args: argparse.Namespace) -> int:
    from reidkit.index import Index, index_images

    if args.index_command == "info":
        with Index.open(args.index, readonly=True) as index:
            info = index.info()
        print(
            json.dumps(info, indent=2, default=str)
            if args.json
            else "\n".join(f"{k}: {v}" for k, v in info.items())
        )
        return 0
    embedder = _embedder(args)
    paths, items = _gallery_items(args, embedder)
    if args.index_command == "build":
        index = Index.create(
            args.out,
            dim=embedder.dim,
            fingerprint=embedder.fingerprint,
            model_name=embedder.name,
            metric=args.metric,
            kind=args.kind,
        )
        target = args.out
    else:
        index = Index.open(args.index)
        target = args.index
    with index:
        ids = index_images(index, embedder, paths, items, batch_size=args.batch_size, progress=not args.quiet)
        total = len(index)
    print(f"indexed {len(ids)} images into {target} ({total} in all)")
    return 0


def _rerank_hits(index, query, hits: list, top_k: int) -> list:
    """k-reciprocal re-ranking of the retrieved candidates (exact mode on the small candidate set)."""
    import numpy as np

    from reidkit.rerank import k_reciprocal

    if len(hits) < 3:
        return hits[:top_k]
    vectors = index.vectors([hit.id for hit in hits]).astype(np.float32)

    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(np.clip((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0, None))

    k1 = min(20, len(hits) - 1)
    reranked = k_reciprocal(
        distance(query, vectors), distance(query, query), distance(vectors, vectors), k1=k1, k2=min(6, k1)
    )[0]
    order = np.argsort(reranked, kind="stable")[:top_k]
    return [type(hits[i])(hits[i].id, float(reranked[i]), hits[i].item) for i in order]


def cmd_search(args: argparse.Namespace) -> int:
    from reidkit.data.transforms import read_image
    from reidkit.index import Index
    from reidkit.viz import RankedList, ranked_grid, write_results_page

    embedder = _embedder(args)
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
    rows = [hit.to_dict() for hit in hits]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(f"{'rank':>4}  {'distance':>8}  {'camera':<10} {'time':<20} {'pid':>5}  path")
        for rank, hit in enumerate(hits, 1):
            item = hit.item
            when = (
                ""
                if item.timestamp is None
                else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item.timestamp))
            )
            pid = "" if item.pid is None else item.pid
            print(
                f"{rank:>4}  {hit.distance:8.4f}  {str(item.camera or ''):<10} {when:<20} {pid:>5}  {item.path}"
            )
    if args.out:
        out = Path(args.out)
        existing = [hit for hit in hits if Path(hit.item.path).is_file()]
        ranked_grid(
            [
                RankedList(
                    args.query,
                    [h.item.path for h in existing],
                    [False] * len(existing),
                    [h.distance for h in existing],
                )
            ],
            out / "results.png",
            top_k=len(existing),
            neutral=True,
        )
        write_results_page(out / "results.html", args.query, hits)
        print(f"results: {out / 'results.png'}, {out / 'results.html'}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
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
        device=args.device,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from reidkit.export import export_main

    export_main(
        checkpoint=args.checkpoint,
        out=args.out,
        format=args.format,
        flip=not args.no_flip,
        images=args.images,
    )
    return 0


def _add_embedder_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("embedder (exactly one)")
    group.add_argument("--checkpoint", help="a reidkit checkpoint")
    group.add_argument("--onnx", help="an ONNX model (reidkit export, or third-party with --preprocess)")
    group.add_argument("--openvino", help="an OpenVINO IR .xml (or .onnx) model")
    group.add_argument("--preprocess", help="preprocessing of a third-party model: imagenet, bgr255, rgb255")
    parser.add_argument("--device", default="cpu")


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidkit", description="Person re-identification toolkit")
    parser.add_argument("--version", action="version", version=f"reidkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("synth", help="generate a synthetic pedestrian dataset (Market-1501 layout)")
    p.add_argument("out", help="output folder")
    p.add_argument("--ids", type=int, default=100, help="number of identities (default 100)")
    p.add_argument("--cams", type=int, default=6, help="number of cameras (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", choices=["easy", "medium", "hard"], default="medium")
    p.add_argument("--distractors", type=int, default=0, help="distractor people (pid 0) in the gallery")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--sheet", metavar="PNG", help="also write a contact sheet of test identities across cameras"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = commands.add_parser("datasets", help="inspect datasets")
    sub = p.add_subparsers(dest="datasets_command", required=True)
    s = sub.add_parser("summary", help="ids / images / cameras per split")
    s.add_argument(
        "--name", required=True, help="dataset name (market1501, dukemtmcreid, msmt17, cuhk03, custom, ...)"
    )
    s.add_argument("--root", required=True)
    s.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. variant=labeled"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_datasets_summary)

    p = commands.add_parser("train", help="train a model from a YAML recipe")
    p.add_argument("--config", help="YAML recipe (defaults when omitted)")
    p.add_argument("--out", required=True, help="run folder (checkpoint, log.jsonl, config.yaml)")
    p.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value"
    )
    p.add_argument(
        "--resume", nargs="?", const="auto", help="continue from a checkpoint (default: OUT/checkpoint.pt)"
    )
    p.add_argument("--max-steps", type=int, help="stop (with a checkpoint) after this many optimiser steps")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    for name, func, help_text in (
        ("eval", cmd_eval, "evaluate a checkpoint: Rank-k, mAP, mINP + report folder"),
        ("extract", cmd_extract, "extract features to an .npz file"),
    ):
        p = commands.add_parser(name, help=help_text)
        p.add_argument("--checkpoint", required=True)
        p.add_argument("--dataset", help="dataset name (default: the one the checkpoint was trained on)")
        p.add_argument("--root", help="dataset root (default: the checkpoint's)")
        p.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option")
        p.add_argument("--device", default="cpu")
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--no-flip", action="store_true", help="do not average with the mirrored image")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=func)
        if name == "eval":
            p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
            p.add_argument("--rerank", choices=["exact", "fast"], help="k-reciprocal re-ranking")
            p.add_argument(
                "--qe", type=int, default=0, metavar="K", help="alpha query expansion over K neighbours"
            )
            p.add_argument(
                "--distance",
                choices=["global", "local", "combined"],
                default="global",
                help="local/combined: AlignedReID's aligned local distance (slower; see README)",
            )
            p.add_argument(
                "--local-weight", type=float, default=1.0, help="weight of the local distance in combined"
            )
            p.add_argument(
                "--pairwise",
                action="store_true",
                help="score every query-gallery pair with the checkpoint's verification pair head "
                "(distance = 1 - same-identity probability; slow by design)",
            )
            p.add_argument(
                "--pair-batch-size", type=int, default=4096, help="query-gallery pairs per pair-head call"
            )
            p.add_argument(
                "--features",
                metavar="PREFIX",
                help="also save the scored features to PREFIX.query.npz and PREFIX.gallery.npz "
                "(the latter with the distance matrix)",
            )
            p.add_argument("--batch-size", type=int, default=128)
            p.add_argument("--report", help="report folder (default: beside the checkpoint)")
            p.add_argument("--grid-queries", type=int, default=6)
            p.add_argument("--json", action="store_true")
        else:
            p.add_argument("--out", required=True, help="output .npz file")
            p.add_argument("--images", help="a folder of images instead of a dataset")
            p.add_argument("--split", choices=["train", "query", "gallery"], default="gallery")

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
        _add_embedder_arguments(s)
        s.add_argument("--images", help="a folder of images (camera = sub-folder name)")
        s.add_argument("--dataset", help="or a dataset name ...")
        s.add_argument("--root", help="... and its root")
        s.add_argument("--option", action="append", metavar="KEY=VALUE", help="dataset option")
        s.add_argument("--split", choices=["train", "query", "gallery"], default="gallery")
        s.add_argument("--batch-size", type=int, default=64)
        s.add_argument("--quiet", action="store_true")
        s.set_defaults(func=cmd_index)
    s = sub.add_parser("info", help="size, model and kind of an index")
    s.add_argument("index")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_index)

    p = commands.add_parser("search", help="search an index with a query photo")
    p.add_argument("--index", required=True)
    p.add_argument("--query", required=True, help="query image file")
    _add_embedder_arguments(p)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--camera", help="only these cameras (comma-separated)")
    p.add_argument("--since", help="only after this time (ISO-8601 or seconds)")
    p.add_argument("--until", help="only before this time")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking of the candidates")
    p.add_argument("--out", help="folder for results.png (ranked grid) and results.html")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = commands.add_parser("serve", help="HTTP search service with a web page")
    p.add_argument("--index", required=True)
    _add_embedder_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--token-env", default="REIDKIT_TOKEN", help="environment variable holding the write token"
    )
    p.add_argument("--max-upload-mb", type=float, default=10.0)
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser(
        "export", help="export a checkpoint's embed() to ONNX or TorchScript, with parity check"
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--out", help="output file (default: beside the checkpoint)")
    p.add_argument("--images", nargs="*", help="real images for the parity check")
    p.add_argument("--no-flip", action="store_true", help="export without flip averaging")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ReidkitError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
