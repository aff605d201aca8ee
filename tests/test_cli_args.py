"""Every numeric option of the CLI is checked by the parser: a clear usage error (exit 2), never a traceback."""

from __future__ import annotations

import pytest

from reidkit.cli import build_parser, main

BAD = [
    (["synth", "out", "--ids", "0"], "--ids: expected an integer >= 1, got 0"),
    (["synth", "out", "--cams", "-2"], "--cams: expected an integer >= 1, got -2"),
    (["synth", "out", "--distractors", "-1"], "--distractors: expected an integer >= 0"),
    (["synth", "out", "--workers", "x"], "--workers: invalid non_negative value: 'x'"),
    (["train", "--out", "o", "--max-steps", "0"], "--max-steps: expected an integer >= 1"),
    (["eval", "--checkpoint", "c", "--qe", "-1"], "--qe: expected an integer >= 0"),
    (["eval", "--checkpoint", "c", "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["eval", "--checkpoint", "c", "--pair-batch-size", "0"], "--pair-batch-size: expected an integer >= 1"),
    (["eval", "--checkpoint", "c", "--local-weight", "-0.5"], "--local-weight: expected a number >= 0"),
    (["eval", "--checkpoint", "c", "--local-weight", "inf"], "--local-weight: expected a number >= 0"),
    (["eval", "--checkpoint", "c", "--workers", "-1"], "--workers: expected an integer >= 0"),
    (
        ["extract", "--checkpoint", "c", "--out", "f.npz", "--workers", "-3"],
        "--workers: expected an integer >= 0",
    ),
    (["index", "build", "--out", "i", "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["index", "build", "--out", "i", "--nprobe", "0"], "--nprobe: expected an integer >= 1"),
    (["index", "build", "--out", "i", "--refine", "-2"], "--refine: expected an integer >= 1"),
    (["search", "--index", "i", "--query", "q.jpg", "--top-k", "0"], "--top-k: expected an integer >= 1"),
    (
        ["keypoints", "--images", "d", "--estimator", "mediapipe", "--batch-size", "0"],
        "--batch-size: expected an integer >= 1",
    ),
    (["keypoints", "--images", "d", "--estimator", "openpose"], "--estimator: invalid choice: 'openpose'"),
    (
        ["keypoints", "--images", "d", "--dataset", "x", "--estimator", "mediapipe"],
        "not allowed with argument",
    ),
    (["keypoints", "--estimator", "mediapipe"], "one of the arguments --images --dataset is required"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(argv[:1] + argv[-2:]) for argv, _ in BAD])
def test_bad_numbers_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_good_numbers_parse():
    args = build_parser().parse_args(["eval", "--checkpoint", "c", "--qe", "0", "--local-weight", "0.5"])
    assert (args.qe, args.local_weight, args.workers, args.batch_size) == (0, 0.5, 2, 128)
    args = build_parser().parse_args(["synth", "out", "--ids", "3", "--distractors", "0"])
    assert (args.ids, args.distractors) == (3, 0)
