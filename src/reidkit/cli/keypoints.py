"""``reidkit keypoints``: estimate body keypoints of a folder or a dataset into a keypoint file (cached)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reidkit.cli._common import dataset_options, image_folder, positive
from reidkit.errors import ReidkitError


def add_keypoints(commands) -> None:
    from reidkit.pose import ESTIMATORS

    p = commands.add_parser(
        "keypoints",
        help="estimate COCO-17 body keypoints of images into a keypoints.json (skips images already in it)",
        description="Estimate the keypoints of every image under --images (recursive) or of a dataset's train, "
        "query and gallery images, and write them to --out (paths relative to its folder). Images already in "
        "the file are skipped; --overwrite estimates everything again. The mediapipe estimator needs "
        "pip install 'reidkit[pose]'.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="folder of images (searched recursively)")
    source.add_argument("--dataset", metavar="NAME", help="a dataset (with --root): all its images")
    p.add_argument("--root", help="the dataset root (with --dataset)")
    p.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. variant=labeled"
    )
    p.add_argument("--estimator", required=True, choices=sorted(ESTIMATORS), help="the keypoint estimator")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="the keypoint file (default: keypoints.json in the --images folder or the dataset root); every "
        "image must be under its folder",
    )
    p.add_argument("--batch-size", type=positive, default=16, help="images per estimator call (default 16)")
    p.add_argument("--overwrite", action="store_true", help="estimate every image again, replacing --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_keypoints)


def _images(args: argparse.Namespace) -> tuple[list[str], str]:
    """The images of ``--images`` or ``--dataset/--root`` and the folder that holds the default file."""
    if args.images:
        if args.root or args.option:
            raise ReidkitError("--root and --option go with --dataset, not --images")
        return image_folder("--images", args.images), args.images
    if not args.root:
        raise ReidkitError("--dataset needs --root")
    from reidkit.data.datasets import load_dataset

    split = load_dataset(args.dataset, args.root, **dataset_options(args.option))
    paths = sorted({sample.path for part in (split.train, split.query, split.gallery) for sample in part})
    if not paths:
        raise ReidkitError(f"dataset {args.dataset} at {args.root} has no images")
    return paths, args.root


def run_keypoints(args: argparse.Namespace) -> int:
    from reidkit.pose import make_estimator
    from reidkit.pose.estimate import estimate_file, relative_keys

    images, folder = _images(args)
    out = Path(args.out) if args.out else Path(folder) / "keypoints.json"
    if out.exists() and not out.is_file():
        raise ReidkitError(f"--out {out} is not a file")
    relative_keys(images, out)  # every image under the file's folder, before the estimator loads
    estimator = make_estimator(args.estimator)
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(unit="img", desc="keypoints")
    try:
        summary = estimate_file(
            estimator,
            images,
            out,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            progress=None if bar is None else bar.update,
        )
    finally:
        if bar is not None:
            bar.close()
        close = getattr(estimator, "close", None)
        if close is not None:
            close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {summary['entries']} images' keypoints to {summary['out']} ({summary['source']}): "
            f"{summary['estimated']} estimated ({summary['no_pose']} without a pose), {summary['cached']} "
            "already there"
        )
    return 0
