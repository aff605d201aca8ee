"""``reidkit keypoints``: estimates the images a keypoint file lacks, merges them into it, skips the cached ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit import pose
from reidkit.cli import main
from reidkit.data.keypoints import read_keypoints, write_keypoints


class _Fake:
    """Keypoints from the image itself: joint j at (j, mean pixel value), visibility 1; records its calls."""

    name = "fake estimator 1"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.closed = False

    def estimate(self, images) -> np.ndarray:
        self.calls.append(len(images))
        out = np.ones((len(images), 17, 3), dtype=np.float32)
        for i, image in enumerate(images):
            out[i, :, 0] = np.arange(17)
            out[i, :, 1] = np.asarray(image, dtype=np.float32).mean()
        return out

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake(monkeypatch) -> list[_Fake]:
    made: list[_Fake] = []

    def make() -> _Fake:
        made.append(_Fake())
        return made[-1]

    monkeypatch.setitem(pose.ESTIMATORS, "fake", make)
    return made


def _images(folder: Path, values: dict[str, int]) -> None:
    for name, value in values.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 16), (value, value, value)).save(folder / name)


def test_estimates_then_skips_cached_images_and_merges_new_ones(tmp_path, fake, capsys):
    images = tmp_path / "set"
    _images(images, {"a/1.png": 10, "a/2.png": 20, "b/3.png": 30})
    out = tmp_path / "kp.json"
    argv = ["keypoints", "--images", str(images), "--estimator", "fake", "--out", str(out), "--quiet"]
    assert main([*argv, "--batch-size", "2"]) == 0
    assert fake[0].calls == [2, 1] and fake[0].closed
    assert "3 estimated" in capsys.readouterr().out
    first = read_keypoints(out)
    assert first.source == "fake estimator 1"
    assert sorted(first.points) == ["set/a/1.png", "set/a/2.png", "set/b/3.png"]
    np.testing.assert_allclose(first.points["set/b/3.png"][:, 1], 30)
    assert main(argv) == 0  # nothing new: nothing estimated, the file unchanged
    assert fake[1].calls == [] and read_keypoints(out).points.keys() == first.points.keys()
    _images(images, {"b/4.png": 40, "a/1.png": 99})  # a new image, and a changed one (kept: skip by path)
    assert main(argv) == 0
    assert fake[2].calls == [1]
    merged = read_keypoints(out)
    assert len(merged.points) == 4
    np.testing.assert_allclose(merged.points["set/a/1.png"][:, 1], 10)
    np.testing.assert_allclose(merged.points["set/b/4.png"][:, 1], 40)
    assert main([*argv, "--overwrite", "--json"]) == 0
    assert fake[3].calls == [4]
    np.testing.assert_allclose(read_keypoints(out).points["set/a/1.png"][:, 1], 99)


def test_a_stopped_run_keeps_what_it_estimated(tmp_path):
    from reidkit.pose.estimate import estimate_file

    _images(tmp_path, {f"{i}.png": i for i in range(5)})

    class Failing(_Fake):
        def estimate(self, images):
            if self.calls:
                raise KeyboardInterrupt
            return super().estimate(images)

    paths = sorted(tmp_path.glob("*.png"))
    with pytest.raises(KeyboardInterrupt):
        estimate_file(Failing(), paths, tmp_path / "kp.json", batch_size=2)
    assert sorted(read_keypoints(tmp_path / "kp.json").points) == ["0.png", "1.png"]
    summary = estimate_file(_Fake(), paths, tmp_path / "kp.json", batch_size=2)
    assert (summary["estimated"], summary["cached"], summary["entries"]) == (3, 2, 5)


def test_a_dataset_defaults_to_its_root(tmp_path, fake):
    from reidkit.data.synth import generate

    root = tmp_path / "syn"
    generate(root, ids=3, cams=2, images_per_camera=2, seed=1, difficulty="easy")
    (root / "keypoints.json").unlink()  # the ground truth the generator wrote
    assert (
        main(["keypoints", "--dataset", "synthetic", "--root", str(root), "--estimator", "fake", "--quiet"])
        == 0
    )
    found = read_keypoints(root / "keypoints.json")
    assert set(found.points) == {p.relative_to(root).as_posix() for p in root.rglob("*.jpg")}


def test_bad_input_gives_error_messages(tmp_path, fake, capsys):
    images = tmp_path / "set"
    _images(images, {"1.png": 5})
    other = tmp_path / "elsewhere" / "kp.json"
    other.parent.mkdir()
    given = ["keypoints", "--images", str(images), "--estimator", "fake", "--quiet"]
    cases = [
        ([*given, "--out", str(other)], "is not under"),
        (["keypoints", "--images", str(tmp_path / "none"), "--estimator", "fake"], "is not a folder"),
        (["keypoints", "--dataset", "synthetic", "--estimator", "fake"], "--dataset needs --root"),
        ([*given, "--root", str(tmp_path)], "--root and --option go with --dataset"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert "error: " in (err := capsys.readouterr().err) and message in err, argv
    write_keypoints(images / "kp.json", {"1.png": np.zeros((17, 3))}, source="ground truth")
    assert main([*given, "--out", str(images / "kp.json")]) == 2
    assert "holds keypoints of 'ground truth'" in capsys.readouterr().err
    (images / "bad.json").write_text("{}")
    assert main([*given, "--out", str(images / "bad.json")]) == 2
    assert "not a reidkit keypoint file" in capsys.readouterr().err
    assert not fake or all(not made.calls for made in fake)


def test_missing_mediapipe_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mediapipe(name, *args, **kwargs):
        if name == "mediapipe" or name.startswith("mediapipe."):
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mediapipe)
    from reidkit.errors import ReidkitError
    from reidkit.pose.mediapipe_pose import MediaPipePose

    with pytest.raises(ReidkitError, match=r"pip install 'reidkit\[pose\]'"):
        MediaPipePose()
