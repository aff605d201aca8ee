"""``reidkit track-eval``: score a tracking run against MOTChallenge ground truth (TrackEval)."""

from __future__ import annotations

import argparse

from reidkit.cli._common import positive_float
from reidkit.errors import ReidkitError


def add_track_eval(commands) -> None:
    p = commands.add_parser(
        "track-eval",
        help="score tracker results against MOTChallenge ground truth: HOTA, MOTA, IDF1, multi-camera IDF1",
    )
    p.add_argument("--gt", required=True, metavar="DIR", help="folder of <seq>/gt/gt.txt + <seq>/seqinfo.ini")
    p.add_argument("--results", required=True, metavar="RUN", help="folder of <seq>.txt result files")
    p.add_argument("--sequences", metavar="A,B", help="comma-separated sequences to score (default: all)")
    p.add_argument(
        "--release",
        choices=["auto", "mot15", "mot16", "mot17", "mot20"],
        default="auto",
        help="ground-truth release; auto: from the sequence name, else the file's columns (default auto)",
    )
    p.add_argument(
        "--threshold", type=positive_float, default=0.5, help="IoU of a match for MOTA and IDF1 (default 0.5)"
    )
    p.add_argument(
        "--missing-as-empty",
        action="store_true",
        help="score a sequence without a result file as tracked by nothing (default: an error)",
    )
    p.add_argument("--json", metavar="OUT.json", help="also write the scores as JSON (atomically)")
    p.set_defaults(func=run_track_eval)


def run_track_eval(args: argparse.Namespace) -> int:
    from reidkit._io import atomic_write_text
    from reidkit.track.evaluate import evaluate_run

    sequences = None
    if args.sequences is not None:
        sequences = [name.strip() for name in args.sequences.split(",") if name.strip()]
        if not sequences:
            raise ReidkitError(f"--sequences {args.sequences!r} names no sequence")
    report = evaluate_run(
        args.gt,
        args.results,
        sequences=sequences,
        release=None if args.release == "auto" else args.release,
        threshold=args.threshold,
        missing_as_empty=args.missing_as_empty,
    )
    print(report.table())
    if args.json:
        try:
            atomic_write_text(args.json, report.to_json() + "\n")
        except OSError as error:
            raise ReidkitError(f"--json {args.json}: cannot be written: {error}") from error
        print(f"scores: {args.json}")
    return 0
