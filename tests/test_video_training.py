"""Training on tracklets: config keys, the temporal model in the registry and the checkpoint, exact resume,
export of a video checkpoint, and the errors of a recipe that mixes images and video."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reidkit import checkpoint
from reidkit.checkpoint import CHECKPOINT_NAME, DataRef
from reidkit.cli import main
from reidkit.config import load_config
from reidkit.errors import ConfigError, EmbeddingError, ReidkitError
from reidkit.models import build_model
from reidkit.models.temporal import TemporalModel
from reidkit.recipe import build_training

pytestmark = pytest.mark.slow

#: the tiny training setup of the tests (resnet18 at 64x32, P x K = 4 x 2) on tracklets, with 4-frame clips
VIDEO_OVERRIDES = [
    "data.dataset=dukemtmc_videoreid",
    "model.backbone=resnet18",
    "model.last_stride=2",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.k=2",
    "data.seq_len=4",
    "data.workers=0",
]


def _sets(*items: str) -> list[str]:
    return sum((["--set", item] for item in items), [])


def _train(root, out, *more: str, args=()) -> int:
    items = [*VIDEO_OVERRIDES, f"data.root={root}", "model.pretrained=null", "schedule.warmup_epochs=0", *more]
    return main(["train", "--out", str(out), "--quiet", *args, *_sets(*items)])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.temporal=mean", "model.temporal must be null or one of avg"),
        ("model.rnn=transformer", "model.rnn must be lstm or gru"),
        ("data.seq_len=0", "data.seq_len"),
        ("data.frames=all", "data.frames must be random or evenly"),
        ("eval.video_mode=i2i", "eval.video_mode must be v2v, i2v or v2i"),
        ("eval.frames=random", "eval.frames must be all or evenly"),
    ],
)
def test_bad_video_config_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_the_registry_builds_a_temporal_model_from_spec_params():
    model = build_model(
        "baseline", num_classes=5, backbone="resnet18", last_stride=2, temporal="rnn", temporal_hidden=16, rnn="gru"
    )
    assert isinstance(model, TemporalModel) and model.head_name == "rnn"
    assert isinstance(model.head.recurrent, torch.nn.GRU) and model.head.recurrent.hidden_size == 16
    with pytest.raises(ConfigError, match="need a temporal head"):
        build_model("baseline", num_classes=5, backbone="resnet18", rnn="gru")


def test_recipe_refuses_a_temporal_head_on_images_and_image_extras_on_video(synthetic_root, tracklet_root):
    image = load_config(None, [f"data.root={synthetic_root}", "model.temporal=avg", "model.backbone=resnet18"])
    with pytest.raises(ConfigError, match="model.temporal 'avg' needs a video dataset"):
        build_training(image)
    video = load_config(None, [*VIDEO_OVERRIDES, f"data.root={tracklet_root}", "data.attributes=a.csv"])
    with pytest.raises(ConfigError, match="data.attributes is for image datasets"):
        build_training(video)
    clash = load_config(
        None, [*VIDEO_OVERRIDES, f"data.root={tracklet_root}", "model.temporal=avg", "model.params={rnn: gru}"]
    )
    with pytest.raises(ConfigError, match="model.params.rnn: set model.rnn instead"):
        build_training(clash)
    too_few = load_config(None, [*VIDEO_OVERRIDES, f"data.root={tracklet_root}", "model.temporal=avg", "data.p=40"])
    with pytest.raises(ReidkitError, match="data.p / data.k"):
        build_training(too_few)


def test_a_clip_run_resumes_exactly_and_records_the_clip_length(tracklet_root, tmp_path):
    more = ("model.temporal=quality", "model.temporal_hidden=16", "train.epochs=2", "train.log_every=1")
    assert _train(tracklet_root, tmp_path / "straight", *more) == 0
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    steps = [entry for entry in log if entry["kind"] == "step"]
    assert len(steps) >= 4
    epochs = [entry for entry in log if entry["kind"] == "epoch"]
    # images/s counts frames: 4-frame clips, so it is 4x the clip rate (same steps, same clock)
    assert all(entry["images_per_s"] > 0 for entry in epochs)
    assert _train(tracklet_root, tmp_path / "resumed", *more, args=("--max-steps", "3")) == 0
    assert _train(tracklet_root, tmp_path / "resumed", *more, args=("--resume",)) == 0
    straight = checkpoint.load(tmp_path / "straight" / CHECKPOINT_NAME)
    resumed = checkpoint.load(tmp_path / "resumed" / CHECKPOINT_NAME)
    for name, value in straight.weights.items():
        assert torch.equal(value, resumed.weights[name]), name
    resumed_log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in resumed_log if e["kind"] == "step"] == [e["loss"] for e in steps]
    assert straight.data == DataRef("dukemtmc_videoreid", str(tracklet_root), {}, seq_len=4)
    assert straight.spec.params == {"temporal": "quality", "temporal_hidden": 16, "rnn": "lstm"}
    assert isinstance(straight.build_model(), TemporalModel)


def test_data_ref_clip_length_round_trips_and_image_refs_stay_as_before():
    assert DataRef("x", "r").to_dict() == {"name": "x", "root": "r", "options": {}}
    assert DataRef("x", "r", seq_len=6).to_dict()["seq_len"] == 6


@pytest.fixture(scope="module")
def video_checkpoint(tracklet_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("video_checkpoint")
    assert _train(tracklet_root, out, "model.temporal=attention", "model.temporal_hidden=16", "train.epochs=0") == 0
    return out / CHECKPOINT_NAME


@pytest.mark.parametrize("dynamic", [False, True])
def test_onnx_export_of_a_video_checkpoint(video_checkpoint, tmp_path, dynamic):
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime")
    from reidkit.embed import OnnxEmbedder
    from reidkit.embed.runtimes import read_onnx_metadata
    from reidkit.export import CLIP_LENGTH_KEY, export

    out = tmp_path / "video.onnx"
    report = export(video_checkpoint, out, seq_len=None if dynamic else 3, dynamic_length=dynamic)
    assert report.max_abs_diff_random <= 1e-4 and report.max_abs_diff_real <= 1e-4
    assert read_onnx_metadata(out)[CLIP_LENGTH_KEY] == ("dynamic" if dynamic else "3")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert len(shape) == 5 and (isinstance(shape[1], str) if dynamic else shape[1] == 3)
    model = checkpoint.load(video_checkpoint).build_model().eval()
    model.load_state_dict(checkpoint.load(video_checkpoint).weights)
    clips = torch.randn(2, 5 if dynamic else 3, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.embed(clips).numpy()
    got = session.run(None, {"images": clips.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    with pytest.raises(EmbeddingError, match="is a video model export"):
        OnnxEmbedder(out)


def test_image_export_refuses_video_options(untrained_checkpoint, tmp_path):
    from reidkit.export import ExportError, export

    with pytest.raises(ExportError, match="for video models"):
        export(untrained_checkpoint, tmp_path / "x.onnx", seq_len=4)
    assert not (tmp_path / "x.onnx").exists()


def test_a_video_checkpoint_embeds_a_photo_as_a_one_frame_clip(video_checkpoint, tracklet_root):
    from reidkit.data.transforms import read_image
    from reidkit.embed import TorchEmbedder

    saved = checkpoint.load(video_checkpoint)
    embedder = TorchEmbedder.from_checkpoint(saved, flip=False)
    path = next(tracklet_root.glob("query/*/*/*.jpg"))
    got = embedder.embed_images([read_image(str(path))])
    with torch.no_grad():
        frames = torch.from_numpy(embedder.preprocess([read_image(str(path))]))
        clip = embedder.model.embed(frames[:, None]).numpy()
        # attention over one frame gives it weight 1: the frame model's BNNeck feature of that frame
        frame_model = embedder.model.frame_model
        alone = frame_model.bnneck(frame_model.pool(frame_model.trunk(frames)).flatten(1)).numpy()
    np.testing.assert_allclose(got, clip / np.linalg.norm(clip, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(clip, alone, atol=1e-5)
