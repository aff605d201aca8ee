"""Run folder files: round trip, atomic replacement (also under a killed writer) and clear errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from reidkit.track.records import Tracklet
from reidkit.track.runfiles import (
    IDENTITIES_NAME,
    RUN_NAME,
    TRACKLETS_NAME,
    CameraInfo,
    RunFileError,
    RunInfo,
    read_run,
    read_run_files,
    thumbnail_name,
    write_run,
)

DIM = 8
START = 1_700_000_000.0


def _two_tone(rng: np.random.Generator) -> np.ndarray:
    """A ``[16, 8, 3]`` crop: one colour on top, another below (JPEG keeps it close)."""
    image = np.empty((16, 8, 3), dtype=np.uint8)
    image[:8], image[8:] = rng.integers(0, 255, size=3), rng.integers(0, 255, size=3)
    return image


def make_run(seed: int = 0, count: int = 5) -> tuple[RunInfo, list[Tracklet]]:
    """Two cameras (one with a wall clock and a video, one without), ``count`` tracklets with random values."""
    rng = np.random.default_rng(seed)
    info = RunInfo(
        cameras=[
            CameraInfo("hall", "/videos/hall.avi", 10.0, START, (64, 48), 200, "hall.webm"),
            CameraInfo("door 2", "/videos/door2", 25.0, 0.0, (32, 24), 90, None),
        ],
        embedder={"name": "test-model", "fingerprint": f"fp-{DIM}", "dim": DIM},
        settings={"tracker": {"name": "bytetrack"}, "seed": seed},
    )
    tracklets = []
    for n in range(count):
        camera = info.cameras[n % 2]
        first = int(rng.integers(1, 50))
        frames = first + np.sort(rng.choice(40, size=int(rng.integers(1, 6)), replace=False))
        feature = rng.normal(size=DIM).astype(np.float32)
        tracklets.append(
            Tracklet(
                camera=camera.name,
                local_id=n + 1,
                frames=frames,
                boxes=rng.uniform(0, 40, size=(len(frames), 4)),
                scores=rng.uniform(0, 1, size=len(frames)),
                fps=camera.fps,
                camera_start=camera.camera_start,
                feature=None if n == 3 else feature / np.linalg.norm(feature),
                quality=float(rng.uniform(0, 5)),
                thumbnail=None if n == 4 else _two_tone(rng),
                person=n // 2,
                global_id=None if n == 2 else 10 + n % 2,
            )
        )
    return info, tracklets


def test_round_trip_is_exact(tmp_path):
    info, tracklets = make_run()
    write_run(tmp_path / "run", info, tracklets)
    read_info, read_tracklets = read_run(tmp_path / "run", load_thumbnails=True)
    assert read_info == RunInfo(
        cameras=tuple(info.cameras), embedder=info.embedder, settings=info.settings, format_version=1
    )
    assert [t.key for t in read_tracklets] == [t.key for t in tracklets]
    for mine, theirs in zip(tracklets, read_tracklets, strict=True):
        np.testing.assert_array_equal(theirs.frames, mine.frames)
        np.testing.assert_array_equal(theirs.boxes, mine.boxes)  # float64 blobs: bit-exact
        np.testing.assert_array_equal(theirs.scores, mine.scores)
        if mine.feature is None:
            assert theirs.feature is None
        else:
            assert theirs.feature.dtype == np.float32 and theirs.feature.tobytes() == mine.feature.tobytes()
        assert (theirs.person, theirs.global_id, theirs.quality) == (
            mine.person,
            mine.global_id,
            mine.quality,
        )
        assert (theirs.start_time, theirs.end_time) == (mine.start_time, mine.end_time)
        if mine.thumbnail is None:
            assert theirs.thumbnail is None
        else:  # JPEG: close, not exact
            assert theirs.thumbnail.shape == mine.thumbnail.shape
            assert np.abs(theirs.thumbnail.astype(int) - mine.thumbnail).mean() < 8
    files = read_run_files(tmp_path / "run")
    assert files.thumbnails[("door 2", 2)] == thumbnail_name("door 2", 2) == "thumbs/door_2_2.jpg"
    assert ("door 2", 5) not in files.thumbnails
    # the times are on each camera's clock: frame i at camera_start + (i - 1) / fps
    first = read_tracklets[0]
    assert first.start_time == START + (first.first_frame - 1) / 10.0
    identities = json.loads((tmp_path / "run" / IDENTITIES_NAME).read_text())["identities"]
    assert [entry["global_id"] for entry in identities] == [10, 11]
    ten = identities[0]  # tracklets 1 and 5 (hall, 0-based 0 and 4): 3 has no global id
    assert sorted(map(tuple, ten["tracklets"])) == [("hall", 1), ("hall", 5)]
    assert ten["cameras"] == ["hall"]
    members = [t for t in tracklets if t.global_id == 10]
    assert ten["first_time"] == min(t.start_time for t in members)
    assert ten["last_time"] == max(t.end_time for t in members)


def test_run_without_embedder_and_rewrite_removes_stale_thumbnails(tmp_path):
    info, tracklets = make_run(count=4)
    write_run(tmp_path, info, tracklets)
    assert (tmp_path / thumbnail_name("door 2", 4)).is_file()
    bare = RunInfo(info.cameras, {"name": None, "fingerprint": None, "dim": None})
    for tracklet in tracklets:
        tracklet.feature = None
    write_run(tmp_path, bare, tracklets[:2])
    read_info, read_tracklets = read_run(tmp_path)
    assert read_info.dim is None and read_info.fingerprint is None
    assert [t.key for t in read_tracklets] == [("hall", 1), ("door 2", 2)]
    assert sorted(p.name for p in (tmp_path / "thumbs").iterdir()) == ["door_2_2.jpg", "hall_1.jpg"]


def _write_half_then_fail(path, data):
    from reidkit._io import atomic_write

    def write(stream):
        stream.write(data[: len(data) // 2])
        raise KeyboardInterrupt("stopped mid-write")

    atomic_write(path, write)


def test_a_write_stopped_midway_leaves_the_old_files(tmp_path, monkeypatch):
    from reidkit.track import runfiles

    old_info, old = make_run(seed=0)
    write_run(tmp_path, old_info, old)
    before = {name: (tmp_path / name).read_bytes() for name in (RUN_NAME, TRACKLETS_NAME, IDENTITIES_NAME)}
    new_info, new = make_run(seed=1, count=7)
    # stopped while writing identities.json (after the new table was renamed in): each file is whole, and the
    # reader says the table is not the one run.json was written with
    monkeypatch.setattr(
        runfiles,
        "_write_bytes",
        lambda path, data: (
            _write_half_then_fail if path.name == IDENTITIES_NAME else runfiles.atomic_write_bytes
        )(path, data),
    )
    with pytest.raises(KeyboardInterrupt):
        write_run(tmp_path, new_info, new)
    assert (tmp_path / RUN_NAME).read_bytes() == before[RUN_NAME]
    assert (tmp_path / IDENTITIES_NAME).read_bytes() == before[IDENTITIES_NAME]
    with pytest.raises(RunFileError, match="is not the table .*run.json was written with.*re-run"):
        read_run(tmp_path)
    assert not [p for p in tmp_path.rglob(".*.tmp")]
    # stopped while the table is built: the old table stays
    monkeypatch.undo()
    write_run(tmp_path, old_info, old)

    def failing_replace(source, target, _replace=runfiles.os.replace):
        if Path(target).name == TRACKLETS_NAME:
            raise OSError("disk gone")
        _replace(source, target)

    monkeypatch.setattr(runfiles.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_run(tmp_path, new_info, new)
    monkeypatch.undo()
    assert (tmp_path / TRACKLETS_NAME).read_bytes() == before[TRACKLETS_NAME]
    assert [t.key for t in read_run(tmp_path)[1]] == [t.key for t in old]
    assert not [p for p in tmp_path.rglob(".*.tmp")]


KILLED_WRITER = """
import os, sys, sqlite3
sys.path.insert(0, {tests!r})
from track.test_runfiles import make_run
from reidkit.track import runfiles

class Dying:
    def __init__(self, connection):
        self.connection = connection
    def execute(self, *args):
        return self.connection.execute(*args)
    def executemany(self, statement, rows):
        rows = list(rows)
        self.connection.executemany(statement, rows[: len(rows) // 2])
        self.connection.commit()
        os._exit(9)  # killed half-way through the table

runfiles.sqlite3 = type("S", (), {{"connect": staticmethod(lambda path: Dying(sqlite3.connect(path)))}})
info, tracklets = make_run(seed=1, count=7)
runfiles.write_run({run!r}, info, tracklets)
"""


def test_a_killed_writer_leaves_the_old_run_readable(tmp_path):
    run = tmp_path / "run"
    old_info, old = make_run(seed=0)
    write_run(run, old_info, old)
    before = {name: (run / name).read_bytes() for name in (RUN_NAME, TRACKLETS_NAME, IDENTITIES_NAME)}
    script = KILLED_WRITER.format(tests=str(Path(__file__).parents[1]), run=str(run))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True)
    assert result.returncode == 9, result.stderr
    assert {name: (run / name).read_bytes() for name in before} == before
    assert [t.key for t in read_run(run)[1]] == [t.key for t in old]
    assert [p.name for p in run.glob(".tracklets.sqlite.*.tmp")]  # what the killed writer left
    new_info, new = make_run(seed=1, count=7)
    write_run(run, new_info, new)  # a re-run replaces the run and clears the leftovers
    assert [t.key for t in read_run(run)[1]] == [t.key for t in new]
    assert not [p for p in run.rglob(".*.tmp")]


def _edit_table(run: Path, statement: str) -> None:
    """Change the table by hand, and drop run.json's record of it so that the rows themselves are checked."""
    with sqlite3.connect(run / TRACKLETS_NAME) as connection:
        connection.execute(statement)
    connection.close()
    content = json.loads((run / RUN_NAME).read_text())
    content.pop("tracklets")
    (run / RUN_NAME).write_text(json.dumps(content))


def _edit_json(run: Path, change) -> None:
    content = json.loads((run / RUN_NAME).read_text())
    change(content)
    (run / RUN_NAME).write_text(json.dumps(content))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda run: (run / RUN_NAME).unlink(), r"run.json is missing: .* is not a tracking run folder"),
        (lambda run: (run / RUN_NAME).write_text("{"), r"run.json cannot be read as JSON"),
        (
            lambda run: _edit_json(run, lambda c: c.update(format_version=7)),
            r"run.json: format_version is 7; this reidkit reads version 1",
        ),
        (lambda run: _edit_json(run, lambda c: c["cameras"][1].pop("fps")), r"cameras\[1\] lacks \['fps'\]"),
        (
            lambda run: _edit_json(run, lambda c: c["cameras"][0].update(fps=-1)),
            r"cameras\[0\].fps must be > 0, got -1",
        ),
        (
            lambda run: _edit_json(run, lambda c: c["cameras"][0].update(video="../elsewhere.webm")),
            r"cameras\[0\].video must be a path inside the run folder",
        ),
        (
            lambda run: _edit_json(run, lambda c: c["embedder"].update(dim="eight")),
            r"embedder.dim must be an integer >= 0, got 'eight'",
        ),
        (lambda run: (run / TRACKLETS_NAME).unlink(), r"tracklets.sqlite is missing"),
        (lambda run: (run / TRACKLETS_NAME).write_bytes(b"not sqlite" * 100), r"tracklets.sqlite cannot be"),
        (
            lambda run: _edit_table(run, "ALTER TABLE tracklets RENAME COLUMN quality TO weight"),
            r"table tracklets has columns .*\(missing \['quality'\]\) \(unexpected \['weight'\]\)",
        ),
        (
            lambda run: _edit_table(run, "UPDATE tracklets SET feature = zeroblob(12) WHERE local_id = 2"),
            r"row 2 \(door 2:2\): column feature must be a BLOB of 8 float32 \(32 bytes.*got 12",
        ),
        (
            lambda run: _edit_table(run, "UPDATE tracklets SET boxes = zeroblob(50) WHERE local_id = 1"),
            r"row 1 \(hall:1\): column boxes must be a BLOB of float64 \[N, 6\] rows",
        ),
        (
            lambda run: _edit_table(run, "UPDATE tracklets SET camera = 'roof' WHERE local_id = 1"),
            r"camera 'roof' is not among the cameras of run.json",
        ),
        (
            lambda run: _edit_table(
                run, "UPDATE tracklets SET start_time = start_time + 1 WHERE local_id = 1"
            ),
            r"row 1 \(hall:1\): column start_time is .* puts that frame at",
        ),
        (
            lambda run: _edit_table(run, "UPDATE tracklets SET first_frame = 0 WHERE local_id = 1"),
            r"first_frame/last_frame 0/.* do not match the boxes",
        ),
        (
            lambda run: _edit_table(run, "UPDATE tracklets SET thumbnail = '/etc/passwd' WHERE local_id = 1"),
            r"column thumbnail must be a path inside the run folder",
        ),
        (
            lambda run: _edit_table(run, "UPDATE tracklets SET boxes = x'' WHERE local_id = 3"),
            r"row 3 \(hall:3\): column boxes must be a BLOB",
        ),
    ],
)
def test_bad_files_are_named(tmp_path, edit, message):
    info, tracklets = make_run()
    write_run(tmp_path, info, tracklets)
    edit(tmp_path)
    with pytest.raises(RunFileError, match=message):
        read_run(tmp_path)


def test_bad_tracklets_are_refused_before_anything_is_written(tmp_path):
    info, tracklets = make_run()
    stranger = Tracklet("roof", 1, [1], np.ones((1, 4)), [1.0], 10.0, START)
    with pytest.raises(RunFileError, match=r"tracklet roof:1: camera 'roof' is not in the run's cameras"):
        write_run(tmp_path / "a", info, [*tracklets, stranger])
    twin = Tracklet("hall", 1, [1], np.ones((1, 4)), [1.0], 10.0, START)
    with pytest.raises(RunFileError, match=r"share a \(camera, local_id\): \('hall', 1\)"):
        write_run(tmp_path / "a", info, [*tracklets, twin])
    wide = Tracklet("hall", 9, [1], np.ones((1, 4)), [1.0], 10.0, START, feature=np.zeros(3, np.float32))
    with pytest.raises(RunFileError, match="feature has 3 values, the run's embedder dim is 8"):
        write_run(tmp_path / "a", info, [wide])
    grey = Tracklet("hall", 9, [1], np.ones((1, 4)), [1.0], 10.0, START, thumbnail=np.zeros((4, 4), np.uint8))
    with pytest.raises(RunFileError, match=r"thumbnail must be a \[H, W, 3\] uint8 RGB image"):
        write_run(tmp_path / "a", info, [grey])
    slow = Tracklet("hall", 9, [1], np.ones((1, 4)), [1.0], 5.0, START)
    with pytest.raises(RunFileError, match="fps / camera_start differ from those of camera 'hall'"):
        write_run(tmp_path / "a", info, [slow])
    assert not (tmp_path / "a").exists()
