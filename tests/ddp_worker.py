"""One process of a distributed test run (started by tests/test_distributed.py; never collected by pytest).

``python tests/ddp_worker.py IMAGES OUT [MAX_STEPS [RESUME]]``: trains a small batch-norm-free model on the images
in IMAGES for two epochs (or MAX_STEPS steps, continuing from checkpoint RESUME) with ``reidkit.engine.fit``, as one
process or, with the torchrun variables set, as one of several.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from reidkit.checkpoint import DataRef, ModelSpec, Preprocess
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import Sample, Split
from reidkit.data.sampler import PKSampler
from reidkit.data.transforms import TrainTransform
from reidkit.distributed import Distributed
from reidkit.engine import FitOptions, fit
from reidkit.losses.criterion import build_criterion
from reidkit.models.output import ReidOutput
from reidkit.recipe import TrainingRun, build_optimizer

#: an ID loss, batch-hard triplet mining over the whole batch and center loss (a criterion with parameters)
TERMS = (
    {"name": "cross_entropy", "on": "logits", "params": {"epsilon": 0.1}},
    {"name": "trihard", "on": "global", "params": {"margin": 0.3}},
    {"name": "center", "weight": 0.01, "on": "global"},
)


class NoBatchNorm(nn.Module):
    """Convolutions without batch norm: a sample's output does not depend on the rest of its batch."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.classifier = nn.Linear(32, num_classes)
        self.embedding_dim = 32

    def forward(self, images: torch.Tensor) -> ReidOutput:
        feature = self.trunk(images)
        return ReidOutput(embedding=feature, global_features=[feature], logits=[self.classifier(feature)])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images).embedding


def small_run(
    samples, model, criterion, optimizer, *, terms, p: int, seed: int, random_erasing: float
) -> TrainingRun:
    """A CPU training run of 16x8 images, P x 2 batches, a constant learning rate (also used by other tests)."""
    num_classes = len({s.pid for s in samples})
    return TrainingRun(
        split=Split(train=tuple(samples), query=(), gallery=()),
        dataset=ImageDataset(samples, TrainTransform(16, 8, pad=2, random_erasing=random_erasing)),
        sampler=PKSampler([s.pid for s in samples], p=p, k=2, seed=seed),
        model=model,
        criterion=criterion,
        optimizer=optimizer,
        lr_at=lambda epoch: 1.0,
        device=torch.device("cpu"),
        spec=ModelSpec(name=type(model).__name__.lower(), num_classes=num_classes, backbone="none"),
        preprocess=Preprocess(16, 8),
        data=DataRef(name="images", root=str(Path(samples[0].path).parent)),
        loss_terms=terms,
        seed=seed,
        config={},
    )


def main(images: str, out: str, max_steps: str | None = None, resume: str | None = None) -> None:
    samples = [
        Sample(str(path), int(path.name.split("_")[0]), 0) for path in sorted(Path(images).glob("*.png"))
    ]
    num_classes = len({s.pid for s in samples})
    torch.manual_seed(0)
    model = NoBatchNorm(num_classes)
    criterion = build_criterion(TERMS, num_classes=num_classes, feat_dim=32)
    # SGD, not Adam: Adam's update hides a wrong gradient scale (a mean instead of the sum over processes)
    optimizer = build_optimizer(model, criterion, name="sgd", lr=0.05, weight_decay=5e-4, momentum=0.9)
    run = small_run(samples, model, criterion, optimizer, terms=TERMS, p=4, seed=3, random_erasing=0.5)
    distributed = Distributed.from_environment()
    distributed.start(torch.device("cpu"))
    try:
        options = FitOptions(
            out_dir=out,
            epochs=2,
            log_every=1,
            distributed=distributed,
            max_steps=int(max_steps) if max_steps else None,
            resume=resume,
        )
        fit(run, options)
    finally:
        distributed.stop()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(*sys.argv[1:5])
