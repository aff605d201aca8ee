"""``reidkit synth`` and ``reidkit datasets summary``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from reidkit.cli._common import dataset_options, non_negative, positive
from reidkit.data._synth_domains import DOMAINS
from reidkit.errors import ReidkitError


def add_synth(commands) -> None:
    p = commands.add_parser(
        "synth",
        help="generate a synthetic pedestrian dataset (Market-1501 layout, or DukeMTMC-VideoReID with --tracklets)",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--ids", type=positive, default=100, help="number of identities (default 100)")
    p.add_argument(
        "--cams", type=positive, help="number of cameras (default: the domain's; 6 for the default domain)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", choices=["easy", "medium", "hard"], default="medium")
    p.add_argument(
        "--domain",
        choices=list(DOMAINS),
        default="default",
        help="the site: backgrounds, light, per-camera colour casts, clothing palette, resolution / blur and "
        "cameras; " + "; ".join(f"{d.name}: {d.description}" for d in DOMAINS.values()),
    )
    p.add_argument(
        "--distractors", type=non_negative, default=0, help="distractor people (pid 0) in the gallery"
    )
    p.add_argument("--workers", type=non_negative, default=2)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--sheet",
        metavar="PNG",
        help="also write a contact sheet of test identities across cameras (with --tracklets: a few "
        "tracklets frame by frame, with their visible fractions)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    video = p.add_argument_group(
        "tracklets (DukeMTMC-VideoReID layout, frames.csv with the frames' visibility)"
    )
    video.add_argument(
        "--tracklets",
        action="store_true",
        help="write walking tracklets of consecutive frames instead of images",
    )
    video.add_argument(
        "--frames", type=int_range, metavar="N|LOW-HIGH", help="frames per tracklet (default 8-24)"
    )
    video.add_argument(
        "--tracklets-per-camera",
        type=int_range,
        metavar="N|LOW-HIGH",
        help="tracklets of an identity per camera it appears in (default 1-2)",
    )
    video.add_argument(
        "--occlusion",
        type=fraction,
        help="fraction of the tracklets with a run of frames hidden by a passer-by or cut by the frame edge "
        "(default 0.3)",
    )
    p.set_defaults(func=run_synth)


def int_range(value: str) -> tuple[int, int]:
    """argparse type: ``N`` or ``LOW-HIGH`` (integers, LOW <= HIGH) -> ``(low, high)``."""
    parts = value.split("-")
    if len(parts) not in (1, 2) or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected N or LOW-HIGH (non-negative integers), got {value!r}")
    low, high = int(parts[0]), int(parts[-1])
    if low > high:
        raise argparse.ArgumentTypeError(f"expected LOW <= HIGH, got {value!r}")
    return low, high


def fraction(value: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value!r}")
    return number


def run_synth(args: argparse.Namespace) -> int:
    tracklet_options = {
        "frames": args.frames,
        "tracklets_per_camera": args.tracklets_per_camera,
        "occlusion": args.occlusion,
    }
    if args.tracklets:
        from reidkit.data.synth_tracklets import generate_tracklets, tracklet_sheet

        if args.distractors:
            raise ReidkitError(
                "--distractors: not available with --tracklets (every tracklet has a real identity)"
            )
        given = {name: value for name, value in tracklet_options.items() if value is not None}
        return _synthesise(args, generate_tracklets, given, tracklet_sheet, "tracklet sheet")
    for name, value in tracklet_options.items():
        if value is not None:
            raise ReidkitError(f"--{name.replace('_', '-')} is an option of tracklets: add --tracklets")
    from reidkit.data.synth import contact_sheet, generate

    return _synthesise(args, generate, {"distractors": args.distractors}, contact_sheet, "contact sheet")


def _synthesise(
    args: argparse.Namespace,
    generate: Callable[..., dict],
    options: dict[str, Any],
    sheet: Callable[..., object],
    sheet_name: str,
) -> int:
    """Run a generator with the options every synth command has plus ``options``; print its summary and
    write the sheet that ``--sheet`` asks for with ``sheet(path, out, seed=...)``."""
    summary = generate(
        args.out,
        ids=args.ids,
        cams=args.cams,
        seed=args.seed,
        difficulty=args.difficulty,
        domain=args.domain,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.quiet,
        **options,
    )
    print(json.dumps(summary, indent=2) if args.json else _format_synth(args.out, summary))
    if args.sheet:
        sheet(args.sheet, args.out, seed=args.seed)
        print(f"{sheet_name}: {args.sheet}")
    return 0


def _format_synth(out: str, summary: dict) -> str:
    lines = [f"wrote synthetic dataset to {out}"]
    for key, value in summary.items():
        if not isinstance(value, (dict, list)):
            lines.append(f"  {key}: {value}")
        elif isinstance(value, dict):
            lines.append(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
    return "\n".join(lines)


def add_datasets(commands) -> None:
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
    s.set_defaults(func=run_datasets_summary)


def run_datasets_summary(args: argparse.Namespace) -> int:
    from reidkit.data.datasets import format_summary, load_dataset, summarize_split

    split = load_dataset(args.name, args.root, **dataset_options(args.option))
    summary = summarize_split(split)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0
