"""Every registered model's ``embed`` exports to ONNX and matches PyTorch (skipped without onnxruntime)."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

from reidkit.models import MODELS, build_model

onnxruntime = pytest.importorskip("onnxruntime", reason="install reidkit[onnx] for the export tests")


class _Embed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.embed(images)


@pytest.mark.parametrize("name", list(MODELS))
def test_embed_exports_to_onnx(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=4, backbone="resnet18").eval()
    example = torch.randn(2, 3, 96, 32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Embed(model).eval(),
            (example,),
            buffer,
            input_names=["images"],
            output_names=["embedding"],
            dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        buffer.getvalue(), sess_options=options, providers=["CPUExecutionProvider"]
    )
    images = torch.randn(3, 3, 96, 32)
    (exported,) = session.run(["embedding"], {"images": images.numpy()})
    with torch.no_grad():
        expected = model.embed(images)
    assert exported.shape == (3, model.embedding_dim)
    torch.testing.assert_close(torch.from_numpy(exported), expected, rtol=1e-3, atol=1e-4)
