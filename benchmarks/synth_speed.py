"""Speed of the synthetic pedestrian generator: images/s with 1 and 2 worker processes.

Wall-clock images/s depends on what else the machine runs, so the table also gives the CPU time per image
(this process and its workers), which does not; the last column is the speed-up over ``workers=1`` measured
in the same run. The issue's target: >= 300 images/s on 2 cores.

    .venv/bin/python benchmarks/synth_speed.py [--ids 100] [--cams 6] [--difficulty hard] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from _reference import machine_line

from reidkit.data.synth import DIFFICULTIES, generate


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--cams", type=int, default=6)
    parser.add_argument("--difficulty", default="hard", choices=DIFFICULTIES)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting; the fastest is reported")
    args = parser.parse_args()
    print(
        f"synthetic pedestrians: {args.ids} ids, {args.cams} cameras, {args.difficulty}; "
        f"{machine_line()}, load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'workers':>7} {'images':>7} {'seconds':>8} {'images/s':>9} {'CPU ms/image':>13} {'vs workers=1':>13}"
    )
    baseline = None
    with tempfile.TemporaryDirectory() as folder:
        for workers in args.workers:
            best = None
            for repeat in range(args.repeats):
                cpu = _cpu_seconds()
                start = time.perf_counter()
                summary = generate(
                    Path(folder) / f"w{workers}-{repeat}",
                    ids=args.ids,
                    cams=args.cams,
                    seed=0,
                    difficulty=args.difficulty,
                    workers=workers,
                )
                seconds = time.perf_counter() - start
                cpu = _cpu_seconds() - cpu
                if best is None or seconds < best[0]:
                    best = (seconds, cpu, summary["images"])
            seconds, cpu, images = best
            rate = images / seconds
            baseline = baseline or rate
            print(
                f"{workers:>7} {images:>7} {seconds:>8.2f} {rate:>9.0f} {1000 * cpu / images:>13.2f} "
                f"{rate / baseline:>12.2f}x"
            )


if __name__ == "__main__":
    main()
