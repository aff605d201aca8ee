"""``reidkit track``: camera videos -> per-camera tracks -> identities across cameras, written as a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from reidkit.cli._common import add_embedder_arguments, non_negative_float, positive, positive_float
from reidkit.errors import ConfigError


def add_track(commands) -> None:
    p = commands.add_parser(
        "track",
        help="detect, track and link people in camera videos (MOTChallenge results with global ids)",
        description="One camera per video file or MOTChallenge sequence folder (seqinfo.ini + img1/).",
    )
    p.add_argument("videos", nargs="*", help="video files or sequence folders, one camera each (name = stem)")
    p.add_argument("--videos", dest="video_dir", metavar="DIR", help="every video / sequence folder in DIR")
    p.add_argument("--cameras", metavar="YAML", help="a cameras file (names, sources, fps, start, transit)")
    p.add_argument("--out", required=True, metavar="RUN", help="the run folder to write (replaced when it is one)")
    p.add_argument("--fps", type=positive_float, help="frame rate of every camera (default: from the file)")
    p.add_argument("--start-time", help="start time of every camera: seconds or ISO-8601 (default 0)")

    det = p.add_argument_group("detection")
    det.add_argument("--detector", choices=["hog", "openvino", "detections"], default="hog")
    det.add_argument("--detector-model", metavar="XML", help="OpenVINO IR of pedestrian-detection-adas-0002")
    det.add_argument(
        "--detections", action="append", metavar="DET.txt",
        help="MOTChallenge det.txt, once per camera in order (default <sequence>/det/det.txt)",
    )
    det.add_argument("--min-score", type=float, help="lowest detection score kept")
    det.add_argument("--min-height", type=non_negative_float, default=0.0, help="lowest box height kept (px)")
    det.add_argument("--detector-batch", type=positive, default=8, help="frames per detector call")

    trk = p.add_argument_group("per-camera tracking (the trackers library)")
    trk.add_argument("--tracker", choices=["bytetrack", "ocsort", "botsort", "sort"], default="bytetrack")
    trk.add_argument(
        "--tracker-param", action="append", metavar="KEY=VALUE",
        help="a tracker constructor parameter, e.g. lost_track_buffer=60",
    )
    trk.add_argument(
        "--min-track-boxes", type=positive, default=3, help="drop tracks seen on fewer frames (flicker)"
    )
    trk.add_argument("--samples-per-track", type=positive, default=16, help="crops embedded per tracklet")
    trk.add_argument("--min-crop-height", type=non_negative_float, default=48.0, help="smallest crop embedded (px)")

    trk.add_argument(
        "--no-cut", action="store_true", help="do not cut tracks where their appearance changes (id swaps)"
    )
    trk.add_argument("--cut-threshold", type=non_negative_float, default=0.45, help="cosine distance")

    link = p.add_argument_group("identities")
    link.add_argument("--no-relink", action="store_true", help="do not re-link tracklets inside a camera")
    link.add_argument("--relink-threshold", type=non_negative_float, default=0.3, help="cosine distance")
    link.add_argument("--relink-max-gap", type=non_negative_float, default=10.0, help="seconds")
    link.add_argument(
        "--reentries", choices=["link", "split"], default="link",
        help="link: a person who leaves a camera and comes back keeps the id; split: gets a new id there",
    )
    link.add_argument("--no-link", action="store_true", help="no cross-camera linking")
    link.add_argument("--link-threshold", type=non_negative_float, default=0.35, help="cosine distance")
    link.add_argument("--linkage", choices=["average", "single", "complete"], default="average")
    link.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking of tracklet distances")
    link.add_argument(
        "--transit", action="append", metavar="A,B,MIN,MAX",
        help="seconds a person needs from camera A to camera B (either direction)",
    )
    p.add_argument("--render", action="store_true", help="write an annotated <camera>.webm per camera")
    p.add_argument("--no-progress", action="store_true")
    add_embedder_arguments(p)
    p.set_defaults(func=run_track)


def _cameras(args: argparse.Namespace):
    from reidkit.track.cameras import cameras_from_folder, cameras_from_paths, cameras_from_yaml

    given = sum(bool(x) for x in (args.videos, args.video_dir, args.cameras))
    if given != 1:
        raise ConfigError("give the cameras one way: video paths, --videos DIR, or --cameras YAML")
    transit = {}
    if args.cameras:
        cameras, transit = cameras_from_yaml(args.cameras)
    elif args.video_dir:
        cameras = cameras_from_folder(args.video_dir, fps=args.fps, start=args.start_time)
    else:
        cameras = cameras_from_paths(
            args.videos, fps=args.fps, start=args.start_time, detections=args.detections
        )
    for value in args.transit or []:
        parts = value.split(",")
        try:
            a, b, low, high = parts[0], parts[1], float(parts[2]), float(parts[3])
        except (IndexError, ValueError):
            raise ConfigError(f"--transit {value!r} must look like A,B,MIN,MAX (seconds)") from None
        if len(parts) != 4 or not 0 <= low <= high:
            raise ConfigError(f"--transit {value!r} must look like A,B,MIN,MAX with 0 <= MIN <= MAX")
        names = {camera.name for camera in cameras}
        for name in (a, b):
            if name not in names:
                raise ConfigError(f"--transit {value!r}: no camera is named {name!r} ({', '.join(sorted(names))})")
        transit[(a, b)] = (low, high)
    return cameras, transit


def _options(args: argparse.Namespace, transit):
    from reidkit.track.appearance import AppearanceSettings
    from reidkit.track.linking import LinkSettings, RelinkSettings
    from reidkit.track.pipeline import DetectorSettings, TrackOptions
    from reidkit.track.switches import SwitchSettings
    from reidkit.track.tracking import TrackerSettings

    return TrackOptions(
        detector=DetectorSettings(
            kind=args.detector,
            model=Path(args.detector_model) if args.detector_model else None,
            min_score=args.min_score,
            min_height=args.min_height,
            batch_size=args.detector_batch,
        ),
        tracker=TrackerSettings.from_strings(args.tracker, args.tracker_param or []),
        appearance=AppearanceSettings(samples_per_track=args.samples_per_track, min_height=args.min_crop_height),
        switches=SwitchSettings(enabled=not args.no_cut, threshold=args.cut_threshold),
        relink=RelinkSettings(
            enabled=not args.no_relink, threshold=args.relink_threshold, max_gap_s=args.relink_max_gap
        ),
        link=LinkSettings(
            enabled=not args.no_link,
            threshold=args.link_threshold,
            linkage=args.linkage,
            rerank=args.rerank,
            transit=transit,
            reentries=args.reentries,
        ),
        min_boxes=args.min_track_boxes,
        render=args.render,
    )


def run_track(args: argparse.Namespace) -> int:
    from reidkit.cli._common import embedder_from_args
    from reidkit.track.pipeline import track_cameras

    if args.detections and (args.video_dir or args.cameras):
        raise ConfigError("--detections pairs with video paths; in a cameras file give 'detections' per camera")
    if args.detections and args.detector != "detections":
        raise ConfigError("--detections needs --detector detections")
    cameras, transit = _cameras(args)
    options = _options(args, transit)
    embedder = None
    if args.checkpoint or args.onnx or args.openvino:
        embedder = embedder_from_args(args)
    else:
        print("no embedder given (--checkpoint / --onnx / --openvino): tracker ids only, no linking")
    summary = track_cameras(cameras, embedder, options, args.out, progress=not args.no_progress)
    print(summary.table())
    print(f"wrote {summary.out}")
    return 0
