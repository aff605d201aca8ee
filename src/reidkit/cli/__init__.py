"""The ``reidkit`` command line: the edge where arguments and configs become plain calls to the library.

One module per family of commands, each command one ``add_<name>(commands)`` (its parser) and one
``run_<name>(args)`` (its handler): :mod:`.data` (synth, datasets), :mod:`.train`, :mod:`.evaluate` (eval,
extract), :mod:`.search` (index, search, serve, export), :mod:`.synth_video`, :mod:`.track`, :mod:`.track_eval`, :mod:`.cluster`, :mod:`.adapt`,
:mod:`.keypoints`.
Bad input ends with ``error: <message>`` and exit
status 2.
"""

from __future__ import annotations

import argparse
import sys

from reidkit import __version__
from reidkit.cli import (
    adapt,
    cluster,
    data,
    evaluate,
    index,
    keypoints,
    search,
    synth_video,
    track,
    track_eval,
    train,
)
from reidkit.errors import ReidkitError

EXIT_BAD_INPUT = 2

#: the subcommands in the order ``reidkit --help`` lists them
COMMANDS = (
    data.add_synth,
    data.add_datasets,
    synth_video.add_synth_video,
    train.add_train,
    adapt.add_adapt,
    evaluate.add_eval,
    evaluate.add_extract,
    index.add_index,
    search.add_search,
    search.add_serve,
    search.add_export,
    track.add_track,
    track_eval.add_track_eval,
    cluster.add_cluster,
    keypoints.add_keypoints,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidkit", description="Person re-identification toolkit")
    parser.add_argument("--version", action="version", version=f"reidkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
