"""``reidkit synth-video``: synthetic multi-camera video with MOTChallenge ground truth."""

from __future__ import annotations

import argparse
import json

from reidkit.cli._common import non_negative, positive, positive_float


def frame_size(value: str) -> tuple[int, int]:
    """argparse type: ``WIDTHxHEIGHT`` in pixels, e.g. ``640x360``."""
    parts = value.lower().split("x")
    try:
        width, height = (int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT in pixels, e.g. 640x360, got {value!r}"
        ) from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"expected a positive width and height, got {value!r}")
    return width, height


def add_synth_video(commands) -> None:
    p = commands.add_parser(
        "synth-video",
        help="generate synthetic multi-camera video with ground truth (MOTChallenge layout, global ids)",
    )
    p.add_argument(
        "out", help="output folder: <camera>/seqinfo.ini, img1/, gt/gt.txt, det/det.txt, meta.json"
    )
    p.add_argument("--cams", type=positive, default=3, help="number of cameras c1..cC (default 3)")
    p.add_argument("--ids", type=positive, default=8, help="number of identities (default 8)")
    p.add_argument(
        "--seconds", type=positive_float, default=30.0, help="length of each camera's video (default 30)"
    )
    p.add_argument("--fps", type=positive_float, default=10.0, help="frames per second (default 10)")
    p.add_argument(
        "--size", type=frame_size, default=(640, 360), help="frame size WIDTHxHEIGHT (default 640x360)"
    )
    p.add_argument("--seed", type=non_negative, default=0)
    p.add_argument("--video", action="store_true", help="also write <out>/<camera>.avi (MJPG, needs OpenCV)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_synth_video)


def run_synth_video(args: argparse.Namespace) -> int:
    from reidkit.data.synth_video import generate_video

    out = generate_video(
        args.out,
        cams=args.cams,
        ids=args.ids,
        seconds=args.seconds,
        fps=args.fps,
        size=args.size,
        seed=args.seed,
        video=args.video,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    summary = {
        "root": str(out),
        "cameras": [camera["name"] for camera in meta["cameras"]],
        "frames_per_camera": meta["cameras"][0]["frames"],
        "ids_seen": len(meta["visits"]),
        "visits": sum(len(visits) for visits in meta["visits"].values()),
        "counts": meta["counts"],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote synthetic video to {out}")
        for key, value in summary.items():
            if key != "counts":
                print(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")
        for camera, counts in summary["counts"].items():
            print(f"  {camera}: {counts['gt_rows']} ground-truth boxes, {counts['detections']} detections")
    return 0
