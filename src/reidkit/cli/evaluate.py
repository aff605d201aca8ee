"""``reidkit eval`` (Rank-k, mAP, mINP and a report folder) and ``reidkit extract`` (features to ``.npz``).

Both take image datasets and video datasets (any name of the video registry, ``tracked_run`` and
``custom_tracklets`` included): a video split is embedded one feature per tracklet
(:func:`reidkit.embed.embed_tracklets`) and evaluated under the MARS protocol
(:mod:`reidkit.video_evaluation`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reidkit.cli._common import (
    add_bf16_argument,
    add_dataset_arguments,
    add_video_arguments,
    checkpoint_embedder,
    dataset_choice,
    format_metrics,
    format_split_metrics,
    image_folder,
    non_negative,
    non_negative_float,
    positive,
    reject_video_flags,
    split_samples,
    video_settings,
)
from reidkit.data.video_datasets import is_video_dataset
from reidkit.errors import ConfigError, ReidkitError


def _add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True)
    add_dataset_arguments(parser, defaults_from_checkpoint=True)
    parser.add_argument("--device", default="cpu")
    add_bf16_argument(parser)
    parser.add_argument("--workers", type=non_negative, default=2)
    parser.add_argument("--no-flip", action="store_true", help="do not average with the mirrored image")
    parser.add_argument("--quiet", action="store_true")


def add_eval(commands) -> None:
    p = commands.add_parser("eval", help="evaluate a checkpoint: Rank-k, mAP, mINP + report folder")
    _add_checkpoint_arguments(p)
    p.add_argument("--metric", choices=["euclidean", "cosine"], default="euclidean")
    p.add_argument("--rerank", choices=["exact", "fast"], help="k-reciprocal re-ranking")
    p.add_argument(
        "--qe", type=non_negative, default=0, metavar="K", help="alpha query expansion over K neighbours"
    )
    p.add_argument(
        "--distance",
        choices=["global", "local", "combined", "visibility"],
        default="global",
        help="local/combined: AlignedReID's aligned local distance (slower; see README); visibility: "
        "pose-guided parts, the global and shared visible part distances averaged (model pose_parts)",
    )
    p.add_argument(
        "--keypoints",
        metavar="FILE",
        help="keypoint file of the evaluated images for --distance visibility (default: keypoints.json in the "
        "dataset root)",
    )
    p.add_argument(
        "--local-weight",
        type=non_negative_float,
        default=1.0,
        help="weight of the local distance in combined",
    )
    p.add_argument(
        "--pairwise",
        action="store_true",
        help="score every query-gallery pair with the checkpoint's verification pair head "
        "(distance = 1 - same-identity probability; slow by design)",
    )
    p.add_argument(
        "--pair-batch-size", type=positive, default=4096, help="query-gallery pairs per pair-head call"
    )
    p.add_argument(
        "--features",
        metavar="PREFIX",
        help="also save the scored features to PREFIX.query.npz and PREFIX.gallery.npz "
        "(the latter with the distance matrix)",
    )
    p.add_argument(
        "--batch-size", type=positive, default=128, help="images per forward pass (video: frames per step)"
    )
    p.add_argument("--report", help="report folder (default: beside the checkpoint)")
    p.add_argument(
        "--grid-queries", type=non_negative, default=6, help="queries in ranked.png (image datasets)"
    )
    p.add_argument("--json", action="store_true")
    add_video_arguments(p, evaluation=True)
    p.set_defaults(func=run_eval)


def _scorer(args: argparse.Namespace, embedder, root=None):
    from reidkit.evaluation import (
        GlobalDistance,
        aligned_scorer,
        global_scorer,
        load_pair_head,
        pairwise_scorer,
    )

    if args.pairwise:
        if args.distance != "global" or args.rerank or args.qe:
            raise ConfigError("--pairwise scores with the pair head: drop --distance, --rerank and --qe")
        head, on = load_pair_head(embedder, device=args.device)
        return pairwise_scorer(head, on=on, batch_size=args.pair_batch_size)
    if args.keypoints is not None and args.distance != "visibility":
        raise ConfigError("--keypoints is for --distance visibility")
    if args.distance != "global":
        if args.rerank or args.qe:
            raise ConfigError(
                f"re-ranking and query expansion work on the global distance, not {args.distance!r}"
            )
        if args.distance == "visibility":
            from reidkit.data.keypoints import dataset_keypoints
            from reidkit.evaluation import visibility_scorer

            return visibility_scorer(dataset_keypoints(root, args.keypoints, what="--distance visibility"))
        return aligned_scorer(mode=args.distance, local_weight=args.local_weight, metric=args.metric)
    return global_scorer(GlobalDistance(metric=args.metric, rerank=args.rerank, query_expansion=args.qe))


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from reidkit._io import atomic_write_text
    from reidkit.evaluation import evaluate_split
    from reidkit.extract import save_features
    from reidkit.viz import plot_cmc, ranked_grid, ranked_lists

    checkpoint, embedder = checkpoint_embedder(args, batch_size=args.batch_size)
    name, root, options = dataset_choice(args, checkpoint)
    if is_video_dataset(name):
        return _run_video_eval(args, checkpoint, embedder, (name, root, options))
    reject_video_flags(args, f"the dataset {name!r}")
    from reidkit.data.datasets import load_dataset

    scorer = _scorer(args, embedder, root)
    split = load_dataset(name, root, **options)
    result = evaluate_split(embedder, split, scorer, workers=args.workers, progress=not args.quiet)
    if args.features:
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
    atomic_write_text(report / "metrics.json", json.dumps(metrics, indent=2))
    plot_cmc({Path(args.checkpoint).name: result.metrics.cmc}, report / "cmc.png")
    ranked_grid(ranked_lists(split, result.distmat, queries=args.grid_queries), report / "ranked.png")
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        title = f"{split.name or args.dataset}: {len(split.query)} queries, {len(split.gallery)} gallery"
        print(format_metrics(metrics, title=title))
        print(f"report: {report}")
    return 0


def _tracklet_records(tracklets):
    """One feature-file record per tracklet: its first frame as the path, its pid and camid."""
    from reidkit.data.records import Sample

    return [Sample(t.paths[0], t.pid, t.camid) for t in tracklets]


def _save_tracklet_features(path: Path, features, tracklets, **extra) -> None:
    import numpy as np

    from reidkit.extract import save_features

    frames = np.array([len(t.paths) for t in tracklets], dtype=np.int64)
    save_features(path, features, _tracklet_records(tracklets), frames=frames, **extra)


def _run_video_eval(args: argparse.Namespace, checkpoint, embedder, dataset: tuple[str, str, dict]) -> int:
    """``reidkit eval`` on a video dataset: one split, or the mean over every split with ``--all-splits``."""
    import numpy as np

    from reidkit._io import atomic_write_text
    from reidkit.data.video_datasets import load_video_dataset
    from reidkit.evaluation import GlobalDistance
    from reidkit.video_evaluation import average_metrics, evaluate_video_split, load_video_splits, video_sides
    from reidkit.viz import plot_cmc

    name, root, options = dataset
    if args.pairwise or args.distance != "global":
        raise ConfigError(
            "video datasets are scored by the global embedding distance: drop --pairwise and --distance"
        )
    if args.all_splits and args.features:
        raise ConfigError("--features saves one split's features: drop --all-splits, or --features")
    seq_len, frames = video_settings(args, checkpoint)
    mode = args.video_mode or "v2v"
    keywords = {
        "mode": mode,
        "seq_len": seq_len,
        "frames": frames,
        "distance": GlobalDistance(metric=args.metric, rerank=args.rerank, query_expansion=args.qe),
        "batch_size": args.batch_size,
        "workers": args.workers,
        "progress": not args.quiet,
    }
    if args.all_splits:
        splits = load_video_splits(name, root, **options)
        if len(splits) == 1:
            raise ConfigError(
                f"--all-splits: the video dataset {name!r} has a single split; drop --all-splits"
            )
    else:
        splits = [load_video_dataset(name, root, **options)]
    results = [evaluate_video_split(embedder, split, **keywords) for split in splits]
    per_split = [result.metrics for result in results]
    mean = average_metrics(per_split)
    metrics = mean.as_dict()
    if args.all_splits:
        metrics["splits"] = [m.as_dict() for m in per_split]
    if args.features:
        query, gallery = video_sides(splits[0], mode)
        stem = Path(args.features)
        _save_tracklet_features(stem.with_name(stem.name + ".query.npz"), results[0].query_features, query)
        _save_tracklet_features(
            stem.with_name(stem.name + ".gallery.npz"),
            results[0].gallery_features,
            gallery,
            distmat=np.asarray(results[0].distmat, dtype=np.float32),
        )
    report = Path(args.report) if args.report else Path(args.checkpoint).parent / "report"
    atomic_write_text(report / "metrics.json", json.dumps(metrics, indent=2))
    plot_cmc({Path(args.checkpoint).name: mean.cmc}, report / "cmc.png")
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    split = splits[0]
    setting = f"{mode}, seq_len {seq_len}, frames {frames}"
    if args.all_splits:
        title = f"{split.name or name}: mean of {len(splits)} splits ({setting})"
        print(format_split_metrics(metrics["splits"], metrics, title=title))
    else:
        counts = f"{len(split.query)} query, {len(split.gallery)} gallery tracklets"
        title = f"{split.name or name} ({setting}): {counts}"
        print(format_metrics(metrics, title=title))
    print(f"report: {report}")
    return 0


def add_extract(commands) -> None:
    p = commands.add_parser("extract", help="extract features to an .npz file")
    _add_checkpoint_arguments(p)
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--images", help="a folder of images instead of a dataset")
    p.add_argument("--split", choices=["train", "query", "gallery"], default="gallery")
    add_video_arguments(p, evaluation=False)
    p.set_defaults(func=run_extract)


def run_extract(args: argparse.Namespace) -> int:
    """``reidkit extract``; under ``torchrun`` each process embeds its share and rank 0 writes the file."""
    from reidkit.distributed import Distributed

    distributed = Distributed.from_environment()
    device = distributed.process_device(args.device)
    args.device = str(device)
    with distributed.joined(device):
        return _extract(args, distributed)


#: images per embedding call of extract (the shards of a distributed extract are whole calls)
EXTRACT_CHUNK = 64


def _extract(args: argparse.Namespace, distributed) -> int:
    from reidkit.data.records import Sample
    from reidkit.distributed import shard_bounds
    from reidkit.embed import embed_paths
    from reidkit.extract import save_features

    checkpoint, embedder = checkpoint_embedder(args, batch_size=EXTRACT_CHUNK)
    if args.images:
        reject_video_flags(args, "--images")
        samples = [Sample(p, -1, -1) for p in image_folder("--images", args.images)]
    else:
        from reidkit.data.datasets import load_dataset

        name, root, options = dataset_choice(args, checkpoint)
        if is_video_dataset(name):
            if distributed.enabled:
                raise ConfigError(
                    "extract under torchrun shards image sets; extract a video dataset as one process"
                )
            return _run_video_extract(args, checkpoint, embedder, (name, root, options))
        reject_video_flags(args, f"the dataset {name!r}")
        samples = split_samples(load_dataset(name, root, **options), args.split)
        if not samples:
            raise ReidkitError(f"the {args.split} split of that dataset is empty: nothing to extract")
    paths = [s.path for s in samples]
    start, stop = shard_bounds(len(paths), EXTRACT_CHUNK, distributed.rank, distributed.world_size)
    progress = not args.quiet and distributed.is_main
    features = embed_paths(
        embedder, paths[start:stop], batch_size=EXTRACT_CHUNK, workers=args.workers, progress=progress
    )
    features = distributed.gather_rows(features)
    if features is None:  # not rank 0: its rows went to rank 0
        return 0
    save_features(args.out, features, samples)
    print(f"wrote {len(samples)} x {features.shape[1]} features to {args.out}")
    return 0


def _run_video_extract(args: argparse.Namespace, checkpoint, embedder, dataset: tuple[str, str, dict]) -> int:
    """``reidkit extract`` on a video dataset: one feature row per tracklet of ``--split``."""
    from reidkit.data.video_datasets import load_video_dataset
    from reidkit.embed import embed_tracklets

    name, root, options = dataset
    tracklets = split_samples(load_video_dataset(name, root, **options), args.split)
    if not tracklets:
        raise ReidkitError(f"the {args.split} split of that dataset has no tracklets: nothing to extract")
    seq_len, frames = video_settings(args, checkpoint)
    features = embed_tracklets(
        embedder,
        tracklets,
        seq_len=seq_len,
        frames=frames,
        batch_size=embedder.batch_size,
        workers=args.workers,
        progress=not args.quiet,
    )
    _save_tracklet_features(Path(args.out), features, tracklets)
    print(f"wrote {len(tracklets)} x {features.shape[1]} features (one per tracklet) to {args.out}")
    return 0
