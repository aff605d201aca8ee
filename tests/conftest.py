"""Shared fixtures: a small synthetic dataset generated once per test session (per worker)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # tests run two at a time on two cores


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny Market-1501-layout synthetic set: 24 identities (12 train, 12 test), 3 cameras, easy."""
    from reidkit.data.synth import generate

    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate(root, ids=24, cams=3, seed=0, difficulty="easy")
    return root
