"""Training and embedding throughput of the baseline per backbone and input size, on this machine.

Prints images/s for one training step (``reidkit.engine.train_step``: forward + loss + backward + optimiser
step, P x K batch) and for inference (``embed``), with ratios against ResNet-50 at 256x128 measured in the
same run. Random input tensors: this measures the model, not image decoding (see eval_time.py for the full
pipeline).

    .venv/bin/python benchmarks/train_speed.py [--device cuda] [--amp] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import _runs
import torch
from _reference import machine_line

from reidkit.data.batch import Batch
from reidkit.losses.criterion import build_criterion
from reidkit.models import build_model

CASES = [
    ("resnet50", 256, 128),
    ("resnet50", 128, 64),
    ("resnet18", 256, 128),
    ("resnet18", 128, 64),
    ("mobilenet_v2", 256, 128),
    ("mobilenet_v2", 128, 64),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    backbone: str, height: int, width: int, *, device, batch: int, steps: int, amp: bool
) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model("baseline", num_classes=100, backbone=backbone, last_stride=1).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    criterion = build_criterion(
        [
            {"name": "cross_entropy", "on": "logits", "params": {"epsilon": 0.1}},
            {"name": "trihard", "on": "global"},
        ],
        num_classes=100,
        feat_dim=model.embedding_dim,
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4)
    images = torch.randn(batch, 3, height, width, device=device)
    pids = torch.arange(batch, device=device) // 4
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    train_batch = Batch(images, pids, torch.zeros_like(pids))
    train_rate = _runs.time_train_steps(model, criterion, optimizer, train_batch, steps=steps, amp=amp)

    model.eval()
    with torch.no_grad(), autocast:
        model.embed(images)
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model.embed(images)
        _sync(device)
    embed_rate = batch * steps / (time.perf_counter() - start)
    return train_rate, embed_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA, or the CPU: see cpu_bf16.py)")
    parser.add_argument("--batch", type=int, default=64, help="P x K batch size (default 16 x 4)")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"machine: {machine_line(torch.get_num_threads())}, device {device}")
    print(f"torch {torch.__version__}, batch {args.batch}, bf16 autocast {args.amp}")
    rows = [
        (case, measure(*case, device=device, batch=args.batch, steps=args.steps, amp=args.amp))
        for case in CASES
    ]
    base_train, base_embed = rows[0][1]
    print(
        f"\n{'backbone':<14}{'input':>9}{'train img/s':>13}{'x r50@256':>11}{'embed img/s':>13}{'x r50@256':>11}"
    )
    for (backbone, height, width), (train_rate, embed_rate) in rows:
        print(
            f"{backbone:<14}{f'{height}x{width}':>9}{train_rate:>13.1f}{train_rate / base_train:>11.2f}"
            f"{embed_rate:>13.1f}{embed_rate / base_embed:>11.2f}"
        )


if __name__ == "__main__":
    main()
