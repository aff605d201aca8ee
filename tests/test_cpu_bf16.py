"""bfloat16 on the CPU: ``train.cpu_amp`` autocasts the training forward pass, ``TorchEmbedder(bf16=True)`` /
``--bf16`` the embedding; weights, loss and features stay float32 and close to the float32 path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ddp_worker import small_run
from reidkit.checkpoint import Preprocess
from reidkit.data.records import Sample
from reidkit.embed import TorchEmbedder, load_embedder
from reidkit.engine import FitOptions, fit
from reidkit.errors import EmbeddingError
from reidkit.losses.criterion import build_criterion
from reidkit.models.output import ReidOutput
from reidkit.precision import cpu_has_bf16
from reidkit.recipe import build_optimizer

TERMS = ({"name": "cross_entropy", "on": "logits", "params": {}}, {"name": "trihard", "on": "global"})


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.classifier = nn.Linear(32, 4, bias=False)
        self.embedding_dim = 32
        self.seen: list[torch.dtype] = []
        self.conv.register_forward_hook(lambda module, args, out: self.seen.append(out.dtype))

    def forward(self, images: torch.Tensor) -> ReidOutput:
        feature = self.pool(self.conv(images))
        return ReidOutput(embedding=feature, global_features=[feature], logits=[self.classifier(feature)])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images).embedding


def _samples(root) -> list[Sample]:
    rng = np.random.default_rng(0)
    samples = []
    for pid in range(4):
        colour = rng.integers(0, 255, 3)
        for index in range(4):
            pixels = np.clip(colour + rng.normal(0, 20, (16, 8, 3)), 0, 255).astype(np.uint8)
            path = root / f"{pid}_{index}.png"
            Image.fromarray(pixels).save(path)
            samples.append(Sample(str(path), pid, index % 2))
    return samples


def _fit(tmp_path, samples, name: str, *, cpu_amp: bool) -> tuple[_Tiny, dict]:
    torch.manual_seed(0)
    model = _Tiny()
    criterion = build_criterion(TERMS, num_classes=4, feat_dim=32)
    optimizer = build_optimizer(model, criterion, name="adam", lr=1e-2, weight_decay=0.0)
    run = small_run(samples, model, criterion, optimizer, terms=TERMS, p=2, seed=0, random_erasing=0.0)
    with pytest.warns() if cpu_amp and not cpu_has_bf16() else _no_warning():
        result = fit(run, FitOptions(out_dir=tmp_path / name, epochs=2, log_every=1, cpu_amp=cpu_amp))
    return model, result


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_cpu_amp_runs_the_forward_in_bf16_and_keeps_weights_float32_and_close(tmp_path):
    samples = _samples(tmp_path)
    plain, _ = _fit(tmp_path, samples, "fp32", cpu_amp=False)
    mixed, _ = _fit(tmp_path, samples, "bf16", cpu_amp=True)
    assert set(plain.seen) == {torch.float32}
    assert torch.bfloat16 in mixed.seen  # the training forward passes were autocast
    for (name, a), b in zip(plain.state_dict().items(), mixed.state_dict().values(), strict=True):
        assert b.dtype == a.dtype, name
    weights = torch.cat([p.detach().flatten() for p in plain.parameters()])
    mixed_weights = torch.cat([p.detach().flatten() for p in mixed.parameters()])
    assert not torch.equal(weights, mixed_weights)  # bf16 rounding does change the trajectory ...
    relative = (weights - mixed_weights).norm() / weights.norm()
    assert relative < 0.1, relative  # ... but 8 Adam steps stay close to the float32 run


def test_cpu_amp_training_is_deterministic(tmp_path):
    samples = _samples(tmp_path)
    first, _ = _fit(tmp_path, samples, "a", cpu_amp=True)
    second, _ = _fit(tmp_path, samples, "b", cpu_amp=True)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_bf16_embedder_gives_float32_unit_features_close_to_float32():
    torch.manual_seed(0)
    model = _Tiny()
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8)) for _ in range(6)]
    plain = TorchEmbedder(model, Preprocess(16, 8), batch_size=4)
    mixed = TorchEmbedder(model, Preprocess(16, 8), batch_size=4, bf16=True)
    model.seen.clear()
    a = plain.embed_images(images)
    assert set(model.seen) == {torch.float32}
    b = mixed.embed_images(images)
    assert torch.bfloat16 in model.seen
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.99  # cosine of the bf16 and the float32 feature
    assert mixed.fingerprint == plain.fingerprint  # the same model: searchable against one index


def test_bf16_is_refused_for_an_exported_model(tmp_path):
    with pytest.raises(EmbeddingError, match="bf16"):
        load_embedder(onnx=tmp_path / "model.onnx", bf16=True)


def test_extract_bf16_from_the_cli_is_close_to_float32(untrained_checkpoint, synthetic_root, tmp_path):
    from reidkit.cli import main

    argv = ["extract", "--checkpoint", str(untrained_checkpoint), "--images", str(synthetic_root / "query")]
    argv += ["--workers", "0", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "fp32.npz")]) == 0
    assert main([*argv, "--out", str(tmp_path / "bf16.npz"), "--bf16"]) == 0
    a, b = np.load(tmp_path / "fp32.npz"), np.load(tmp_path / "bf16.npz")
    assert list(a["paths"]) == list(b["paths"]) and b["features"].dtype == np.float32
    cosine = (a["features"] * b["features"]).sum(axis=1)
    assert not np.array_equal(a["features"], b["features"])
    assert cosine.min() > 0.99, cosine.min()


def test_train_cpu_amp_from_the_cli(tiny_overrides, synthetic_root, tmp_path):
    from reidkit.checkpoint import CHECKPOINT_NAME, load
    from reidkit.cli import main

    sets = [*tiny_overrides, "model.pretrained=null", f"data.root={synthetic_root}", "train.epochs=1"]
    sets += ["data.workers=0", "train.device=cpu", "train.cpu_amp=true"]
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path),
                "--quiet",
                "--max-steps",
                "2",
                *sum((["--set", s] for s in sets), []),
            ]
        )
        == 0
    )
    saved = load(tmp_path / CHECKPOINT_NAME)
    assert saved.config["train"]["cpu_amp"] is True
    assert all(value.dtype in (torch.float32, torch.int64) for value in saved.weights.values())


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx512f avx512_bf16 amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", False)],
)
def test_cpu_has_amx_reads_the_amx_bf16_flag(monkeypatch, tmp_path, flags, expected):
    import builtins

    from reidkit import precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n")
    real_open = builtins.open
    monkeypatch.setattr(
        builtins,
        "open",
        lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **k),
    )
    precision.cpu_has_amx.cache_clear()
    try:
        assert precision.cpu_has_amx() is expected
    finally:
        monkeypatch.undo()
        precision.cpu_has_amx.cache_clear()
