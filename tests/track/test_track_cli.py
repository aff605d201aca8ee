"""``reidkit track`` end to end, then ``index add --tracks`` and ``search`` on its run; bad input -> clear errors."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("cv2", reason="video needs opencv")
pytest.importorskip("trackers", reason="tracking needs the trackers library: pip install 'reidkit[track]'")

from reidkit.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from reidkit.data.synth_video import generate_video

    return generate_video(
        tmp_path_factory.mktemp("sv") / "v", cams=2, ids=4, seconds=12, size=(320, 180), seed=1, video=True
    )


def _track(*args):
    return main(["track", "--no-progress", *map(str, args)])


def test_track_videos_render_then_index_and_search_segments(video, untrained_checkpoint, tmp_path, capsys):
    pytest.importorskip("faiss", reason="the gallery index needs faiss-cpu")
    run = tmp_path / "run"
    cams = tmp_path / "cams.yaml"
    cams.write_text(
        f"cameras:\n"
        f"  - {{name: lobby, source: {video / 'c1'}, start: 2026-12-01T10:00:00Z}}\n"
        f"  - {{name: street, source: {video / 'c2'}, start: 2026-12-01T10:00:00Z}}\n"
        "transit:\n  - [lobby, street, 0, 60]\n"
    )
    code = _track("--cameras", cams, "--detector", "detections", "--out", run, "--render",
                  "--checkpoint", untrained_checkpoint)
    assert code == 0
    printed = capsys.readouterr().out
    assert "lobby" in printed and "frames/s" in printed
    assert {"lobby.txt", "street.txt", "lobby.webm", "street.webm", "run.json"} <= {p.name for p in run.iterdir()}
    info = json.loads((run / "run.json").read_text())
    assert [c["video"] for c in info["cameras"]] == ["lobby.webm", "street.webm"]
    assert info["cameras"][0]["camera_start"] == pytest.approx(1796119200.0)

    index = tmp_path / "gallery.index"
    assert main(["index", "build", "--tracks", str(run), "--out", str(index)]) == 0
    capsys.readouterr()
    thumb = sorted((run / "thumbs").glob("lobby_*.jpg"))[0]
    assert main(["search", "--index", str(index), "--query", str(thumb), "--checkpoint",
                 str(untrained_checkpoint), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    first = answer["identities"][0]
    assert first["segments"][0]["camera"] in ("lobby", "street")
    assert first["segments"][0]["start_iso"].startswith("2026-12-01T10:")
    assert any(s["video"].endswith(".webm") for i in answer["identities"] for s in i["segments"])


def test_track_video_files_with_detection_files_and_reentries_split(video, tmp_path):
    run = tmp_path / "run"
    videos = [video / "c1.avi", video / "c2.avi"]
    dets = [video / "c1" / "det" / "det.txt", video / "c2" / "det" / "det.txt"]
    code = _track(*videos, "--detector", "detections", "--detections", dets[0], "--detections", dets[1],
                  "--out", run, "--reentries", "split", "--tracker", "ocsort",
                  "--tracker-param", "minimum_consecutive_frames=2")
    assert code == 0
    assert (run / "c1.txt").stat().st_size > 0
    settings = json.loads((run / "run.json").read_text())["settings"]
    assert settings["tracker"] == {"name": "ocsort", "params": {"minimum_consecutive_frames": 2}}
    assert settings["link"]["reentries"] == "split"


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda d, v: None, lambda d, v: [d / "missing.avi", "--detector", "hog"], "does not exist"),
        (lambda d, v: (d / "bad.avi").write_bytes(b"not a video at all"), lambda d, v: [d / "bad.avi"],
         "bad.avi"),
        (lambda d, v: (d / "empty.avi").write_bytes(b""), lambda d, v: [d / "empty.avi"], "empty.avi"),
        (lambda d, v: None,
         lambda d, v: [v / "c1", "--detector", "openvino", "--detector-model", d / "none.xml"], "none.xml"),
        (lambda d, v: None, lambda d, v: [v / "c1", "--detector", "openvino"], "--detector-model"),
        (lambda d, v: None, lambda d, v: [v / "c1.avi", "--detector", "detections"], "needs a det.txt"),
        (lambda d, v: None, lambda d, v: [v / "c1", "--detections", v / "c1" / "det" / "det.txt"],
         "needs --detector detections"),
        (lambda d, v: None, lambda d, v: [v / "c1", "--detector", "detections", "--transit", "c1,c9,1,2"],
         "no camera is named 'c9'"),
        (lambda d, v: None, lambda d, v: [v / "c1", "--detector", "detections", "--transit", "c1,c1,x,2"],
         "A,B,MIN,MAX"),
        (lambda d, v: None, lambda d, v: [v / "c1", "--tracker-param", "speed=3"], "has no parameter 'speed'"),
        (lambda d, v: None, lambda d, v: [], "give the cameras one way"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(video, tmp_path, capsys, make, args, message):
    make(tmp_path, video)
    out = tmp_path / "run"
    assert _track(*args(tmp_path, video), "--out", out) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_mismatched_seqinfo_names_the_file(video, tmp_path, capsys):
    seq = tmp_path / "c1"
    shutil.copytree(video / "c1", seq)
    text = (seq / "seqinfo.ini").read_text().replace("seqLength=120", "seqLength=500")
    (seq / "seqinfo.ini").write_text(text)
    assert _track(seq, "--detector", "detections", "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    print(err)
    assert "seqinfo.ini" in err and "500" in err
