"""MOTChallenge text files: release detection, the checks with their messages, and result writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reidkit.errors import DatasetError
from reidkit.track.motfiles import (
    detect_release,
    format_results,
    read_gt,
    read_results,
    release_from_name,
    write_results,
)


def _gt_file(root: Path, sequence: str, text: str) -> Path:
    path = root / sequence / "gt" / "gt.txt"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


MOT17_TEXT = "1,1,10,20,30,60,1,1,0.9\n1,2,100,20,30,60,0,8,0.5\n2,1,12,20,30,60,1,1,1\n"
MOT15_TEXT = "1,1,10,20,30,60,1,-1,-1,-1\n2,1,12,20,30,60,1,-1,-1,-1\n2,3,50,20,30,60,1,-1,-1,-1\n"


@pytest.mark.parametrize(
    ("name", "release"),
    [
        ("MOT17-02-FRCNN", "mot17"),
        ("MOT16-04", "mot16"),
        ("mot20-01", "mot20"),
        ("PETS09-S2L1", "mot15"),
        ("TUD-Stadtmitte", "mot15"),
        ("cam0", None),
        ("MOT170", None),
        (None, None),
    ],
)
def test_release_from_name(name, release):
    assert release_from_name(name) == release


def test_detect_release_from_contents():
    mot17 = np.array([[1, 1, 0, 0, 5, 5, 1, 1, 1.0], [1, 2, 0, 0, 5, 5, 0, 7, 0.2]])
    mot15 = np.array([[1, 1, 0, 0, 5, 5, 1, -1, -1, -1]])
    assert detect_release(mot17) == "mot17"
    assert detect_release(mot15) == "mot15"
    # 9 fields whose column 8 is not a class id: not the MOT16 layout, so no class column
    assert detect_release(np.array([[1, 1, 0, 0, 5, 5, 1, -1, -1]])) == "mot15"
    assert detect_release(mot17, name="PETS09-S2L1") == "mot15"  # a known name wins
    assert detect_release(np.zeros((0, 9))) == "mot17"


def test_read_mot17_keeps_flag_class_visibility(tmp_path):
    gt = read_gt(_gt_file(tmp_path, "cam0", MOT17_TEXT))
    assert gt.release == "mot17"
    assert gt.rows.shape == (3, 9)
    np.testing.assert_array_equal(gt.rows[1], [1, 2, 100, 20, 30, 60, 0, 8, 0.5])
    np.testing.assert_array_equal(gt.scored, [True, False, True])
    assert gt.last_frame == 2


def test_read_mot15_rows_all_pedestrians(tmp_path):
    """Columns 8-10 are world coordinates: no row may be taken for a class (and lost)."""
    gt = read_gt(_gt_file(tmp_path, "cam0", MOT15_TEXT))
    assert gt.release == "mot15"
    assert gt.scored.all() and len(gt.rows) == 3
    np.testing.assert_array_equal(gt.rows[:, 7:], 1.0)


def test_mot15_file_under_a_mot17_name_is_an_error_unless_forced(tmp_path):
    path = _gt_file(tmp_path, "MOT17-02-SDP", MOT15_TEXT)
    with pytest.raises(
        DatasetError, match=r"line 1: column 8 is -1, not a MOTChallenge class.*release mot15"
    ):
        read_gt(path)
    assert read_gt(path, "mot15").release == "mot15"
    with pytest.raises(DatasetError, match="unknown MOTChallenge release 'mot99'"):
        read_gt(path, "mot99")


def test_forced_mot16_needs_nine_fields(tmp_path):
    path = _gt_file(tmp_path, "cam0", "1,1,10,20,30,60,1\n")
    assert read_gt(path).release == "mot15"
    with pytest.raises(DatasetError, match="9 fields per line"):
        read_gt(path, "mot16")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,1,10,20,30,60,1,1,1\n1,2,3\n", r"line 2: expected 7 to 10 comma-separated fields.*got 3"),
        ("1,1,10,20,30,60,1,1,1\n\n2,1,x,20,30,60,1,1,1\n", r"line 3: every field must be a number"),
        ("0,1,10,20,30,60,1,1,1\n", r"line 1: frame must be an integer >= 1 \(field 1\), got 0"),
        ("1.5,1,10,20,30,60,1,1,1\n", r"line 1: frame must be an integer"),
        ("1,1,10,20,0,60,1,1,1\n", r"line 1: box width w must be > 0 \(field 5\)"),
        ("1,1,10,20,30,-2,1,1,1\n", r"line 1: box height h must be > 0"),
        ("1,1,10,20,30,60,1,1,1\n1,1,10,20,30,60,1,1\n", r"line 2: 8 fields, but line 1 has 9"),
        ("1,4,10,20,30,60,1,1,1\n2,4,1,2,3,4,1,1,1\n1,4,5,5,5,5,1,1,1\n", r"lines 1 and 3: id 4 .* frame 1"),
        ("1,1,10,20,30,nan,1,1,1\n", r"line 1: fields must be finite"),
    ],
)
def test_bad_gt_lines_name_file_and_line(tmp_path, text, message):
    path = _gt_file(tmp_path, "cam0", text)
    with pytest.raises(DatasetError, match=message) as caught:
        read_gt(path)
    assert str(path) in str(caught.value)


def test_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="ground-truth file .* does not exist"):
        read_gt(tmp_path / "nope" / "gt" / "gt.txt")
    with pytest.raises(DatasetError, match="tracker result file .* does not exist"):
        read_results(tmp_path / "nope.txt")


def test_read_results(tmp_path):
    path = tmp_path / "cam0.txt"
    path.write_text("1, 3, 10.5, 20, 30, 60, 0.75, -1, -1, -1\n2 4 1 2 3 4\n\n3,5,1,2,3,4,0.5,\n")
    rows = read_results(path)
    np.testing.assert_allclose(
        rows, [[1, 3, 10.5, 20, 30, 60, 0.75], [2, 4, 1, 2, 3, 4, 1], [3, 5, 1, 2, 3, 4, 0.5]]
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert read_results(empty).shape == (0, 7)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,1,1,2,3\n", r"line 1: expected 6 to 10"),
        ("1,-1,1,2,3,4,1,-1,-1,-1\n", r"line 1: id must be an integer >= 0 \(field 2\), got -1"),
        ("1,1,1,2,3,4\n1,1,1,2,3,4\n", r"lines 1 and 2: id 1 appears twice in frame 1"),
        ("2,1,1,2,3,4\n0,1,1,2,3,4\n", r"line 2: frame must be"),
    ],
)
def test_bad_result_lines(tmp_path, text, message):
    path = tmp_path / "cam0.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_results(path)


def test_format_and_write_results_round_trip(tmp_path):
    rows = np.array([[2, 7, 1.234, 5.678, 10, 20, 0.9], [1, 9, 0, 0, 5, 5, 1.0], [1, 3, 1, 1, 2, 2, 0.5]])
    text = format_results(rows)
    assert text.splitlines() == [
        "1,3,1.00,1.00,2.00,2.00,0.5000,-1,-1,-1",
        "1,9,0.00,0.00,5.00,5.00,1.0000,-1,-1,-1",
        "2,7,1.23,5.68,10.00,20.00,0.9000,-1,-1,-1",
    ]
    path = tmp_path / "run" / "cam0.txt"
    write_results(path, rows)
    assert path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["cam0.txt"]  # no temp file left
    back = read_results(path)
    np.testing.assert_allclose(back[:, :2], [[1, 3], [1, 9], [2, 7]])
    assert format_results(np.zeros((0, 7))) == ""


def test_write_results_bad_rows_leave_the_old_file(tmp_path):
    path = tmp_path / "cam0.txt"
    write_results(path, np.array([[1, 1, 0, 0, 5, 5, 1.0]]))
    before = path.read_text()
    for rows, message in [
        (np.zeros((2, 6)), r"\[N, 7\]"),
        (np.array([[0, 1, 0, 0, 5, 5, 1.0]]), "1-based"),
        (np.array([[1, -1, 0, 0, 5, 5, 1.0]]), "ids"),
        (np.array([[1, 1, 0, 0, 0, 5, 1.0]]), "w > 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            write_results(path, rows)
    assert path.read_text() == before
    assert len(list(tmp_path.iterdir())) == 1
