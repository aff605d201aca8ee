"""Shared fixtures: a small synthetic dataset generated once per test session (per worker)."""

from __future__ import annotations

import os
import shutil

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


#: the smallest training setup the recipes accept (resnet18 at 64x32, P x K = 4 x 2)
TINY_OVERRIDES = [
    "model.backbone=resnet18",
    "model.last_stride=2",
    "data.height=64",
    "data.width=32",
    "data.p=4",
    "data.k=2",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    """:data:`TINY_OVERRIDES`, for tests that train from the CLI."""
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def untrained_checkpoint(synthetic_root, tmp_path_factory):
    """A reidkit checkpoint of an untrained tiny model (``train.epochs=0``): real weights, real file format."""
    from reidkit.checkpoint import CHECKPOINT_NAME
    from reidkit.cli import main

    out = tmp_path_factory.mktemp("untrained")
    sets = [*TINY_OVERRIDES, f"data.root={synthetic_root}", "train.epochs=0", "data.workers=0"]
    assert main(["train", "--out", str(out), "--quiet", *sum((["--set", s] for s in sets), [])]) == 0
    return out / CHECKPOINT_NAME


@pytest.fixture(scope="session")
def tracklet_root(tmp_path_factory):
    """A tiny DukeMTMC-VideoReID-layout synthetic set: 12 identities (6 train, 6 test), 2 cameras, 6-10 frames."""
    from reidkit.data.synth_tracklets import generate_tracklets

    root = tmp_path_factory.mktemp("tracklets") / "data"
    generate_tracklets(root, ids=12, cams=2, seed=0, difficulty="easy", frames=(6, 10), workers=1)
    return root


# headless Chromium (Debian package) driven by Playwright, for the web-page tests
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _chromium() -> str:
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("chromium is not installed (Debian: apt-get install chromium); skipping the browser test")


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium per test process, closed once at the end (not between modules)."""
    executable = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs: pip install playwright"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
