"""``evaluate_run`` / ``reidkit track-eval``: hand-computed scores, agreement with trackers.eval, the MOTChallenge
rules (flag 0, distractors, MOT15), multi-camera IDF1, bad input and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reidkit.cli import main
from reidkit.errors import DatasetError
from reidkit.track.evaluate import evaluate_run

pytest.importorskip("trackeval")

A, B = (10, 10, 50, 100), (300, 10, 50, 100)  # two far-apart boxes (x, y, w, h)
FAR = (500, 300, 50, 100)


def _sequence(root: Path, name: str, gt_lines: list[str], length: int, **seqinfo) -> Path:
    folder = root / name
    (folder / "gt").mkdir(parents=True)
    (folder / "gt" / "gt.txt").write_text("".join(line + "\n" for line in gt_lines))
    info = {"name": name, "imDir": "img1", "frameRate": 10, "seqLength": length, "imWidth": 640,
            "imHeight": 480, "imExt": ".jpg", **seqinfo}  # fmt: skip
    (folder / "seqinfo.ini").write_text("[Sequence]\n" + "".join(f"{k}={v}\n" for k, v in info.items()))
    return folder


def _gt(frame: int, gt_id: int, box, flag: int = 1, cls: int = 1, visibility: float = 1.0) -> str:
    return ",".join(map(str, (frame, gt_id, *box, flag, cls, visibility)))


def _result(frame: int, track_id: int, box) -> str:
    return ",".join(map(str, (frame, track_id, *box, 1, -1, -1, -1)))


def _results(run: Path, name: str, lines: list[str]) -> None:
    run.mkdir(exist_ok=True)
    (run / f"{name}.txt").write_text("".join(line + "\n" for line in lines))


def _tiny_case(tmp_path: Path) -> tuple[Path, Path]:
    """2 gt ids over 4 frames: A (id 1) tracked as 10 throughout; B (id 2) as 20 in frames 1-2, as 21 in frame 3
    (an id switch), missed in frame 4 (a FN); and a box on nothing in frame 2 (a FP)."""
    gt_root, run = tmp_path / "gt", tmp_path / "run"
    _sequence(gt_root, "cam0", [_gt(f, 1, A) for f in range(1, 5)] + [_gt(f, 2, B) for f in range(1, 5)], 4)
    lines = [_result(f, 10, A) for f in range(1, 5)] + [
        _result(1, 20, B),
        _result(2, 20, B),
        _result(3, 21, B),
    ]
    _results(run, "cam0", [*lines, _result(2, 30, FAR)])
    return gt_root, run


def test_hand_computed_mota_idf1_hota(tmp_path):
    # GT boxes = 8. CLEAR: TP = 4 (A) + 3 (B, frames 1-3) = 7, FN = 1, FP = 1, IDSW = 1 (B: 20 -> 21)
    #   MOTA = 1 - (FN + FP + IDSW) / GT = 1 - 3/8 = 0.625; MOTP = 1 (every match is an exact box).
    # Identity: best one-to-one id pairing A<->10 (4 common boxes), B<->20 (2), so IDTP = 6, IDFN = 8 - 6 = 2,
    #   IDFP = 8 predicted - 6 = 2; IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN) = 12 / 16 = 0.75 = IDP = IDR.
    # HOTA (IoU 1, so every alpha alike): DetA = TP / (TP + FN + FP) = 7/9; AssA = mean over the 7 matches of
    #   TPA / (TPA + FNA + FPA): A-10: 4/4 (x4), B-20: 2/(2+2+0) (x2), B-21: 1/(1+3+0) (x1) -> 5.25/7 = 0.75;
    #   HOTA = sqrt(DetA * AssA) = sqrt(7/12).
    report = evaluate_run(*_tiny_case(tmp_path))
    (row,) = report.sequences
    assert (row.tp, row.fn, row.fp, row.idsw) == (7, 1, 1, 1)
    assert row.mota == pytest.approx(0.625) and row.motp == pytest.approx(1.0)
    assert (row.idtp, row.idfn, row.idfp) == (6, 2, 2)
    assert (
        row.idf1 == pytest.approx(0.75) and row.idp == pytest.approx(0.75) and row.idr == pytest.approx(0.75)
    )
    assert row.det_a == pytest.approx(7 / 9) and row.ass_a == pytest.approx(0.75)
    assert row.hota == pytest.approx(np.sqrt(7 / 12))
    assert (row.gt_ids, row.pred_ids, row.gt_dets, row.pred_dets) == (2, 4, 8, 8)
    assert report.combined.mota == pytest.approx(0.625) and report.multi_camera is None


def test_threshold_moves_matches(tmp_path):
    gt_root, run = tmp_path / "gt", tmp_path / "run"
    _sequence(gt_root, "cam0", [_gt(1, 1, (0, 0, 100, 100))], 1)
    _results(run, "cam0", [_result(1, 1, (0, 0, 100, 60))])  # IoU 0.6
    assert evaluate_run(gt_root, run).sequences[0].tp == 1
    tight = evaluate_run(gt_root, run, threshold=0.7).sequences[0]
    assert (tight.tp, tight.fp, tight.fn) == (0, 1, 1)
    with pytest.raises(DatasetError, match="IoU threshold"):
        evaluate_run(gt_root, run, threshold=1.5)


def _random_sequence(rng: np.random.Generator, length: int, ids: int) -> tuple[list[str], list[str]]:
    """Moving people with flag-0 rows, distractor / other classes, and a tracker with jitter, misses, id switches
    and false positives (some of them on distractors)."""
    gt_lines, result_lines, next_id = [], [], 100
    for person in range(1, ids + 1):
        cls = rng.choice([1, 1, 1, 1, 1, 1, 1, 2, 7, 8, 3, 12])
        start, stop = sorted(rng.integers(1, length + 1, size=2))
        x, y, vx = rng.uniform(0, 300), rng.uniform(0, 100), rng.uniform(-4, 4)
        w, h = rng.uniform(20, 60), rng.uniform(60, 150)
        track = next_id = next_id + 1
        for frame in range(start, stop + 1):
            box = (round(x + vx * frame, 2), round(y, 2), round(w, 2), round(h, 2))
            flag = 0 if rng.random() < 0.08 or cls != 1 else 1
            gt_lines.append(_gt(frame, person, box, flag, cls, round(rng.uniform(0, 1), 3)))
            if rng.random() < 0.06:
                track = next_id = next_id + 1  # an id switch
            if rng.random() < 0.85:
                jitter = rng.normal(0, 4, size=4)
                guess = (
                    box[0] + jitter[0],
                    box[1] + jitter[1],
                    box[2] + abs(jitter[2]),
                    box[3] + abs(jitter[3]),
                )
                result_lines.append(_result(frame, track, tuple(round(v, 2) for v in guess)))
    for frame in rng.integers(1, length + 1, size=length // 2):
        next_id += 1
        box = tuple(round(v, 2) for v in (rng.uniform(0, 400), rng.uniform(0, 150), 40, 100))
        result_lines.append(_result(int(frame), next_id, box))
    return gt_lines, result_lines


def test_trackeval_agrees_with_trackers_eval(tmp_path):
    trackers_eval = pytest.importorskip("trackers.eval")
    rng = np.random.default_rng(7)
    gt_root, run = tmp_path / "gt", tmp_path / "run"
    for index, length in enumerate((40, 25, 60)):
        gt_lines, result_lines = _random_sequence(rng, length, ids=12)
        _sequence(gt_root, f"MOT17-{index:02d}", gt_lines, length)
        _results(run, f"MOT17-{index:02d}", result_lines)
    report = evaluate_run(gt_root, run)
    theirs = trackers_eval.evaluate_mot_sequences(gt_root, run, metrics=["CLEAR", "HOTA", "Identity"])
    pairs = [(row, theirs.sequences[row.name]) for row in report.sequences] + [
        (report.combined, theirs.aggregate)
    ]
    assert len(pairs) == 4
    for ours, other in pairs:
        assert ours.gt_dets > 0 and ours.idsw > 0 and ours.fp > 0  # a case worth comparing
        for mine, their in [
            (ours.hota, other.HOTA.HOTA), (ours.det_a, other.HOTA.DetA), (ours.ass_a, other.HOTA.AssA),
            (ours.mota, other.CLEAR.MOTA), (ours.motp, other.CLEAR.MOTP), (ours.idf1, other.Identity.IDF1),
            (ours.idp, other.Identity.IDP), (ours.idr, other.Identity.IDR),
        ]:  # fmt: skip
            assert mine == pytest.approx(their, abs=1e-6), ours.name
        assert (ours.idsw, ours.fp, ours.fn) == (other.CLEAR.IDSW, other.CLEAR.CLR_FP, other.CLEAR.CLR_FN)


def test_flag_zero_rows_and_distractors_are_not_scored(tmp_path):
    gt_root, run = tmp_path / "gt", tmp_path / "run"
    lines = []
    for f in range(1, 4):
        lines += [_gt(f, 1, A), _gt(f, 2, B, flag=0), _gt(f, 3, FAR, flag=0, cls=8)]
    _sequence(gt_root, "MOT17-09-DPM", lines, 3)
    # id 1 tracked, the flag-0 pedestrian not tracked (no FN), a box on the distractor (removed, no FP)
    _results(
        run,
        "MOT17-09-DPM",
        [_result(f, 5, A) for f in range(1, 4)] + [_result(f, 6, FAR) for f in range(1, 4)],
    )
    (row,) = evaluate_run(gt_root, run).sequences
    assert row.release == "mot17"
    assert (row.tp, row.fn, row.fp, row.gt_ids, row.pred_ids) == (3, 0, 0, 1, 1)
    assert row.mota == pytest.approx(1.0) and row.idf1 == pytest.approx(1.0)


def test_mot15_ground_truth_keeps_every_row(tmp_path):
    """World coordinates -1 in column 8 must not read as a class: a perfect tracker scores MOTA 1, no FN."""
    gt_root, run = tmp_path / "gt", tmp_path / "run"
    lines = [
        ",".join(map(str, (f, i, *box, 1, -1, -1, -1))) for f in range(1, 6) for i, box in ((1, A), (2, B))
    ]
    _sequence(gt_root, "PETS09-S2L1", lines, 5)
    _results(
        run, "PETS09-S2L1", [_result(f, i + 10, box) for f in range(1, 6) for i, box in ((1, A), (2, B))]
    )
    (row,) = evaluate_run(gt_root, run).sequences
    assert row.release == "mot15"
    assert (row.gt_dets, row.tp, row.fn, row.fp, row.gt_ids) == (10, 10, 0, 0, 2)
    assert row.mota == pytest.approx(1.0) and row.hota == pytest.approx(1.0)
    # the same file in a folder whose name says MOT17: an error pointing at --release, then forced
    _sequence(tmp_path / "gt17", "MOT17-02-FRCNN", lines, 5)
    _results(tmp_path / "run17", "MOT17-02-FRCNN", [_result(1, 1, A)])
    with pytest.raises(DatasetError, match="column 8 is -1.*release mot15"):
        evaluate_run(tmp_path / "gt17", tmp_path / "run17")
    forced = evaluate_run(tmp_path / "gt17", tmp_path / "run17", release="mot15").sequences[0]
    assert (forced.release, forced.tp, forced.fn) == ("mot15", 1, 9)


def test_multi_camera_idf1_rewards_global_ids(tmp_path):
    # One person (global gt id 1) walks 3 frames in cam0, then 3 frames in cam1. Per camera either prediction
    # is perfect (IDF1 1). Over both cameras: one predicted id 5 everywhere -> IDTP 6 -> IDF1 1; id 5 in cam0 and
    # id 6 in cam1 -> the best pairing keeps 1<->5 (3 boxes): IDTP 3, IDFN 3, IDFP 3 -> IDF1 = 6/12 = 0.5.
    gt_root = tmp_path / "gt"
    for camera in ("cam0", "cam1"):
        _sequence(gt_root, camera, [_gt(f, 1, A) for f in range(1, 4)], 3)
    scores = {}
    for name, cam1_id in (("global", 5), ("switch", 6)):
        run = tmp_path / name
        _results(run, "cam0", [_result(f, 5, A) for f in range(1, 4)])
        _results(run, "cam1", [_result(f, cam1_id, A) for f in range(1, 4)])
        report = evaluate_run(gt_root, run)
        assert [row.idf1 for row in report.sequences] == [pytest.approx(1.0)] * 2
        scores[name] = report.multi_camera
    assert scores["global"].idf1 == pytest.approx(1.0) and scores["global"].idtp == 6
    assert scores["switch"].idf1 == pytest.approx(0.5)
    assert (scores["switch"].idtp, scores["switch"].idfn, scores["switch"].idfp) == (3, 3, 3)
    assert (scores["switch"].gt_ids, scores["switch"].pred_ids, scores["switch"].frames) == (1, 2, 6)


def test_missing_and_orphan_result_files(tmp_path):
    gt_root, run = _tiny_case(tmp_path)
    _sequence(gt_root, "cam1", [_gt(1, 1, A)], 2)
    with pytest.raises(
        DatasetError, match=r"no tracker result .*cam1\.txt.* for the ground-truth sequence 'cam1'"
    ):
        evaluate_run(gt_root, run)
    report = evaluate_run(gt_root, run, missing_as_empty=True)
    empty = report.sequences[1]
    assert empty.scored_as_empty and (empty.fn, empty.tp) == (1, 0)
    assert "cam1 (empty)" in report.table()
    assert report.combined.fn == 2 and report.combined.gt_dets == 9
    assert [row.name for row in evaluate_run(gt_root, run, sequences=["cam0"]).sequences] == ["cam0"]
    _results(run, "cam9", [_result(1, 1, A)])
    with pytest.raises(DatasetError, match=r"cam9\.txt in .* have no ground-truth sequence.*--sequences"):
        evaluate_run(gt_root, run, sequences=None, missing_as_empty=True)
    with pytest.raises(DatasetError, match="no ground truth for sequence.*cam7"):
        evaluate_run(gt_root, run, sequences=["cam0", "cam7"])


def test_seqinfo_mismatch_and_malformed_files(tmp_path):
    gt_root, run = _tiny_case(tmp_path)
    seqinfo = gt_root / "cam0" / "seqinfo.ini"
    seqinfo.write_text(seqinfo.read_text().replace("seqLength=4", "seqLength=3"))
    with pytest.raises(
        DatasetError, match=r"seqinfo\.ini' says seqLength=3 but .*gt\.txt' has boxes up to frame 4"
    ):
        evaluate_run(gt_root, run)
    seqinfo.write_text(seqinfo.read_text().replace("seqLength=3", "seqLength=4"))
    _results(run, "cam0", [_result(5, 1, A)])
    with pytest.raises(DatasetError, match=r"cam0\.txt' has boxes up to frame 5 but .*seqLength=4"):
        evaluate_run(gt_root, run)
    _results(run, "cam0", [_result(1, 1, A), "2,1,10,10,50"])
    with pytest.raises(DatasetError, match=r"cam0\.txt' line 2: expected 6 to 10"):
        evaluate_run(gt_root, run)
    seqinfo.unlink()
    with pytest.raises(DatasetError, match=r"seqinfo\.ini.* does not exist"):
        evaluate_run(gt_root, run)
    with pytest.raises(DatasetError, match="holds no MOTChallenge sequence"):
        evaluate_run(run, run)
    with pytest.raises(DatasetError, match="tracker results folder .* does not exist"):
        evaluate_run(gt_root, tmp_path / "nope")


def test_one_sequence_folder_as_gt_root(tmp_path):
    gt_root, run = _tiny_case(tmp_path)
    (row,) = evaluate_run(gt_root / "cam0", run).sequences
    assert row.name == "cam0" and row.mota == pytest.approx(0.625)


def test_cli_end_to_end(tmp_path, capsys):
    gt_root, run = _tiny_case(tmp_path)
    _sequence(gt_root, "cam1", [_gt(f, 1, B) for f in range(1, 3)], 2)
    _results(run, "cam1", [_result(f, 10, B) for f in range(1, 3)])
    out = tmp_path / "scores" / "track.json"
    assert main(["track-eval", "--gt", str(gt_root), "--results", str(run), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    header, *lines = text.splitlines()
    assert header.split()[:4] == ["Sequence", "Release", "HOTA", "DetA"]
    assert any(line.startswith("cam0 ") and " 62.50 " in line for line in lines)
    assert any(line.startswith("MULTI-CAMERA") for line in lines)
    assert len({len(line) for line in lines[:5] if not line.startswith("-")}) == 1  # aligned columns
    data = json.loads(out.read_text())
    assert [row["name"] for row in data["sequences"]] == ["cam0", "cam1"]
    assert data["sequences"][0]["mota"] == pytest.approx(0.625) and data["sequences"][1]["idf1"] == 1.0
    # cam0's A and cam1's B share gt id 1 and predicted id 10: one identity across the two cameras
    assert data["multi_camera"]["gt_ids"] == 2 and data["multi_camera"]["idtp"] == 6 + 2
    assert data["combined"]["gt_dets"] == 10 and data["threshold"] == 0.5
    assert [p.name for p in out.parent.iterdir()] == ["track.json"]

    assert main(["track-eval", "--gt", str(gt_root), "--results", str(run), "--sequences", "cam1"]) == 0
    assert "cam0" not in capsys.readouterr().out
    assert main(["track-eval", "--gt", str(gt_root), "--results", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["track-eval", "--gt", str(gt_root), "--results", str(run), "--sequences", " , "]) == 2
    assert "names no sequence" in capsys.readouterr().err


def test_multi_camera_over_mixed_releases_keeps_each_release_rules(tmp_path):
    """A MOT20 camera (where a non-MOT vehicle, class 6, is a distractor) scored with a MOT15 camera: the box on
    the vehicle is not a false positive, neither in its own row nor in the multi-camera row."""
    gt_root, run = tmp_path / "gt", tmp_path / "run"
    _sequence(gt_root, "MOT20-01", [_gt(1, 1, A), _gt(1, 2, FAR, flag=0, cls=6)], 1)
    _sequence(gt_root, "PETS09-S2L1", [",".join(map(str, (1, 1, *B, 1, -1, -1, -1)))], 1)
    _results(run, "MOT20-01", [_result(1, 7, A), _result(1, 8, FAR)])
    _results(run, "PETS09-S2L1", [_result(1, 7, B)])
    report = evaluate_run(gt_root, run)
    assert [(row.release, row.fp, row.tp) for row in report.sequences] == [("mot20", 0, 1), ("mot15", 0, 1)]
    multi = report.multi_camera
    assert (multi.release, multi.fp, multi.tp, multi.idf1) == ("mot15+mot20", 0, 2, pytest.approx(1.0))
