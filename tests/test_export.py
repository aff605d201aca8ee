from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'reidkit[onnx]'")
pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime: pip install 'reidkit[onnx]'")

from reidkit import checkpoint as checkpoints  # noqa: E402
from reidkit import export as export_module  # noqa: E402
from reidkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from reidkit.embed import OnnxEmbedder, Preprocess, TorchEmbedder, read_onnx_metadata  # noqa: E402
from reidkit.errors import CheckpointError  # noqa: E402
from reidkit.export import ExportError, export, read_torchscript_metadata  # noqa: E402
from reidkit.models import MODELS, build_model  # noqa: E402

HEIGHT, WIDTH = 96, 32  # 6 rows of stride-16 features: divisible into the 2, 3 and 6 stripes of PCB and MGN


def make_checkpoint(path, name: str):
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, backbone="resnet18")
    for module in model.modules():  # non-trivial running statistics, so eval-mode batch norm matters
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=generator))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    spec = checkpoints.ModelSpec(name=name, num_classes=4, backbone="resnet18", last_stride=1)
    preprocess = Preprocess(HEIGHT, WIDTH, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    checkpoints.save(
        path, checkpoints.Checkpoint(spec=spec, preprocess=preprocess, weights=model.state_dict())
    )
    return path


def load_embedder_from_checkpoint(path, *, flip: bool = True) -> TorchEmbedder:
    return TorchEmbedder.from_checkpoint(checkpoints.load(path), flip=flip)


def pictures(count: int, seed: int = 1) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(70, 30, 3), dtype=np.uint8)) for _ in range(count)]


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [name for name in MODELS if not getattr(MODELS[name], "uses_keypoints", False)]
)
def test_onnx_export_parity_for_every_model(tmp_path, name):
    checkpoint = make_checkpoint(tmp_path / "model.pt", name)
    report = export(checkpoint, tmp_path / "model.onnx")
    assert report.max_abs_diff_random <= 1e-4 and report.max_abs_diff_real <= 1e-4
    torch_embedder = load_embedder_from_checkpoint(checkpoint)
    assert report.dim == torch_embedder.dim and report.fingerprint == torch_embedder.fingerprint
    # the export, run by the ONNX embedder with the preprocessing from its metadata, embeds like PyTorch
    onnx_embedder = OnnxEmbedder(report.path)
    assert onnx_embedder.fingerprint == torch_embedder.fingerprint
    assert onnx_embedder.preprocess == Preprocess(
        height=HEIGHT, width=WIDTH, mean=IMAGENET_MEAN, std=IMAGENET_STD, flip=True
    )
    for count in (1, 3):  # the exported batch axis is dynamic (traced with 2)
        images = pictures(count, seed=count)
        np.testing.assert_allclose(
            onnx_embedder.embed_images(images), torch_embedder.embed_images(images), atol=1e-4
        )
    # the raw graph output is the model's embed (not flipped, not normalised)
    batch = torch.randn(5, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))
    raw = onnx_embedder._forward(batch.numpy())
    with torch.no_grad():
        expected = torch_embedder.model.embed(batch).numpy()
    assert raw.shape == (5, report.dim)
    np.testing.assert_allclose(raw, expected, atol=1e-4, rtol=0)


def test_onnx_metadata_round_trip(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.pt", "baseline")
    report = export(checkpoint, tmp_path / "model.onnx", flip=False)
    metadata = read_onnx_metadata(report.path)
    assert metadata["reidkit.model_name"] == "baseline"
    assert metadata["reidkit.embedding_dim"] == str(report.dim) == "512"
    assert Preprocess.from_mapping(json.loads(metadata["reidkit.preprocess"]), where="x") == Preprocess(
        height=HEIGHT, width=WIDTH, mean=IMAGENET_MEAN, std=IMAGENET_STD, flip=False
    )
    assert (
        metadata["reidkit.fingerprint"] == load_embedder_from_checkpoint(checkpoint, flip=False).fingerprint
    )
    assert metadata["reidkit.fingerprint"] != load_embedder_from_checkpoint(checkpoint, flip=True).fingerprint


def test_torchscript_export_parity_and_metadata(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "model.pt", "baseline")
    image_files = []
    for position, image in enumerate(pictures(2, seed=5)):
        image_files.append(tmp_path / f"{position}.png")
        image.save(image_files[-1])
    report = export(checkpoint, tmp_path / "model.ts", format="torchscript", images=image_files)
    assert report.max_abs_diff_random <= 1e-4 and report.max_abs_diff_real <= 1e-4
    metadata = read_torchscript_metadata(report.path)
    assert (
        metadata["reidkit.fingerprint"] == report.fingerprint and metadata["reidkit.model_name"] == "baseline"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream
        module = torch.jit.load(str(report.path))
    model = load_embedder_from_checkpoint(checkpoint).model
    batch = torch.randn(5, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(module(batch), model.embed(batch), atol=1e-4, rtol=0)


def test_failed_parity_check_writes_nothing(tmp_path, monkeypatch):
    checkpoint = make_checkpoint(tmp_path / "model.pt", "baseline")
    real_runner = export_module._onnx_runner

    def drifting_runner(data):
        run = real_runner(data)
        return lambda batch: run(batch) + 2e-4

    monkeypatch.setattr(export_module, "_onnx_runner", drifting_runner)
    with pytest.raises(ExportError, match=r"parity check failed .* 0\.0002\d* on random inputs"):
        export(checkpoint, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "model.pt"]


def test_bad_export_requests(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        export(tmp_path / "missing.pt", tmp_path / "out.onnx")
    checkpoint = make_checkpoint(tmp_path / "model.pt", "baseline")
    with pytest.raises(ExportError, match="format must be one of"):
        export(checkpoint, tmp_path / "out.tflite", format="tflite")
