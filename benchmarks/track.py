"""Video -> people: identity quality per stage on synthetic multi-camera video, and throughput on real video.

Part 1 (accuracy): ``reidkit synth-video`` cameras with ground truth, detections from their simulated
``det/det.txt``, ReID features from a real model; each camera is tracked once (ByteTrack) and then scored
(``track-eval``, trackeval) at three stages: the tracker alone, + re-linking inside cameras, + cross-camera
linking. ``--sweep`` adds a table over the link threshold.

Part 2 (throughput): the whole pipeline on ``../shared/data/vtest.avi`` (768x576, 795 frames) with the OMZ
pedestrian detector and a 256x128 ReID model, per-stage frames/s; the run folder (with ``--render``) is kept
for looking at.

    python benchmarks/track.py [--reid XML] [--detector XML] [--cams 3 --ids 12 --seconds 60] [--sweep]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _reference import machine_line  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REID = SHARED / "omz" / "person-reidentification-retail-0287" / "person-reidentification-retail-0287.xml"
DETECTOR = SHARED / "omz" / "pedestrian-detection-adas-0002" / "pedestrian-detection-adas-0002.xml"
VIDEO = SHARED / "vtest.avi"


def _score(gt_root: Path, tracklets, cameras, out: Path):
    from reidkit.track.evaluate import evaluate_run
    from reidkit.track.motfiles import write_results
    from reidkit.track.pipeline import result_rows

    out.mkdir(parents=True, exist_ok=True)
    for camera in cameras:
        write_results(out / f"{camera}.txt", result_rows(tracklets, camera))
    report = evaluate_run(gt_root, out)
    return report.combined, report.multi_camera


def _track_synthetic(args, embedder, work: Path, seed: int):
    from reidkit.data.synth_video import generate_video
    from reidkit.track.camera import track_camera
    from reidkit.track.detect import MotDetections
    from reidkit.track.video import open_source

    root = generate_video(work / f"video{seed}", cams=args.cams, ids=args.ids, seconds=args.seconds, seed=seed)
    cameras = sorted(p.name for p in root.iterdir() if (p / "seqinfo.ini").is_file())
    results = [
        track_camera(
            open_source(root / c), MotDetections(root / c / "det" / "det.txt"), embedder, min_boxes=args.min_boxes
        )
        for c in cameras
    ]
    return root, cameras, results


def _stage_scores(root, cameras, results, relink, link, work: Path):
    from reidkit.track.linking import link_tracklets

    tracklets = [t for r in results for t in r.tracklets]
    link_tracklets(tracklets, relink, link, frame_sizes={r.camera: r.size for r in results})
    combined, multi = _score(root, tracklets, cameras, work)
    return combined, multi, len({t.global_id for t in tracklets})


def accuracy(args, embedder, work: Path) -> None:
    from reidkit.track.linking import LinkSettings, RelinkSettings

    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {seed: _track_synthetic(args, embedder, work, seed) for seed in seeds}
    relink, link = RelinkSettings(), LinkSettings()
    stages = [
        ("tracker only", replace(relink, enabled=False), replace(link, enabled=False)),
        ("+ re-linking", relink, replace(link, enabled=False)),
        ("+ cross-camera", relink, link),
        ("+ cross-camera, re-ranked", relink, replace(link, rerank=True, threshold=0.5)),
    ]
    counts = ", ".join(f"seed {s}: {sum(len(r.tracklets) for r in runs[s][2])}" for s in seeds)
    print(
        f"\nsynthetic: {args.cams} cameras x {args.seconds:g} s at 10 fps, {args.ids} people; tracklets {counts}; "
        f"mean over seeds {args.seeds}"
    )
    header = f"{'stage':<28} {'HOTA':>6} {'MOTA':>6} {'IDF1':>6} {'IDSW':>5} {'ids':>5} {'MC-IDF1':>8} {'MC-HOTA':>8}"
    print(header + "\n" + "-" * len(header))
    for name, r, k in stages:
        rows = [_stage_scores(*runs[s], r, k, work / f"{name}-{s}".replace(" ", "_")) for s in seeds]
        mean = lambda f, rows=rows: sum(f(row) for row in rows) / len(rows)  # noqa: E731
        print(
            f"{name:<28} {100 * mean(lambda x: x[0].hota):6.2f} {100 * mean(lambda x: x[0].mota):6.2f} "
            f"{100 * mean(lambda x: x[0].idf1):6.2f} {mean(lambda x: x[0].idsw):5.1f} {mean(lambda x: x[2]):5.1f} "
            f"{100 * mean(lambda x: x[1].idf1):8.2f} {100 * mean(lambda x: x[1].hota):8.2f}"
        )
    print(f"ground-truth identities: {args.ids} per seed")
    if args.sweep:
        print(f"\nlink threshold sweep (re-link {relink.threshold}), means over seeds {args.seeds}:")
        print(f"{'threshold':>9} {'rerank':>6} {'IDF1':>6} {'MC-IDF1':>8} {'ids':>5}")
        for rerank in (False, True):
            for threshold in (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
                k = replace(link, threshold=threshold, rerank=rerank)
                rows = [_stage_scores(*runs[s], relink, k, work / "sweep") for s in seeds]
                print(
                    f"{threshold:9.2f} {str(rerank):>6} {100 * sum(r[0].idf1 for r in rows) / len(rows):6.2f} "
                    f"{100 * sum(r[1].idf1 for r in rows) / len(rows):8.2f} {sum(r[2] for r in rows) / len(rows):5.1f}"
                )


def throughput(args, embedder, work: Path) -> None:
    from reidkit.track.cameras import cameras_from_paths
    from reidkit.track.pipeline import DetectorSettings, TrackOptions, track_cameras

    if not (VIDEO.is_file() and Path(args.detector).is_file()):
        print(f"\nthroughput: skipped ({VIDEO} or {args.detector} is missing)")
        return
    out = Path(args.keep) if args.keep else work / "vtest_run"
    options = TrackOptions(detector=DetectorSettings(kind="openvino", model=Path(args.detector), batch_size=8))
    began = time.perf_counter()
    summary = track_cameras(cameras_from_paths([VIDEO]), embedder, options, out)
    total = time.perf_counter() - began
    frames = summary.frames
    print(f"\nthroughput: {VIDEO.name} ({frames} frames, 768x576), OMZ detector + {embedder.name}, ByteTrack")
    print(f"{'stage':<12} {'seconds':>8} {'frames/s':>9}")
    for stage, seconds in summary.seconds.items():
        print(f"{stage:<12} {seconds:8.2f} {frames / max(seconds, 1e-9):9.1f}")
    print(f"{'whole run':<12} {total:8.2f} {frames / total:9.1f}   ({len(summary.tracklets)} tracklets, "
          f"{summary.identities} identities)")
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"most crops held at once: {summary.cameras[0].peak_crops}; peak RSS of this process {peak_mb:.0f} MB")
    if args.render:
        from reidkit.track.render import render_camera
        from reidkit.track.video import open_source

        began = time.perf_counter()
        render_camera(open_source(VIDEO), summary_rows(summary), out / "vtest.webm")
        seconds = time.perf_counter() - began
        print(f"{'render':<12} {seconds:8.2f} {frames / seconds:9.1f}   (annotated WebM, not part of the run above)")
    print(f"run folder: {out}")


def summary_rows(summary):
    from reidkit.track.pipeline import result_rows

    return result_rows(summary.tracklets, summary.cameras[0].camera)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reid", default=str(REID), help="OpenVINO ReID model (.xml)")
    parser.add_argument("--preprocess", default="bgr255")
    parser.add_argument("--no-flip", action="store_true", help="do not average with mirrored crops")
    parser.add_argument("--detector", default=str(DETECTOR))
    parser.add_argument("--cams", type=int, default=3)
    parser.add_argument("--ids", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seeds", default="0,1,2", help="synthetic videos, one per seed (comma-separated)")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--min-boxes", type=int, default=3, help="drop tracks with fewer boxes (as reidkit track)")
    parser.add_argument("--render", action="store_true", help="also time the annotated video of vtest")
    parser.add_argument("--keep", help="keep the vtest run folder here")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if not Path(args.reid).is_file():
        sys.exit(f"ReID model {args.reid} is missing (../shared/data/omz); pass --reid")
    from reidkit.embed import load_embedder

    embedder = load_embedder(openvino=args.reid, preprocess=args.preprocess, flip=not args.no_flip)
    print(machine_line())
    with tempfile.TemporaryDirectory() as temp:
        if not args.skip_accuracy:
            accuracy(args, embedder, Path(temp))
        if not args.skip_throughput:
            throughput(args, embedder, Path(temp))


if __name__ == "__main__":
    main()
