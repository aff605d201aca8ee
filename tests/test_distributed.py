"""Distributed training over processes (gloo on the CPU): the same optimiser steps as one process on the whole
batch, rank-0-only files, ``torchrun -m reidkit train`` end to end, clear errors when launched wrongly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddp_worker import NoBatchNorm
from reidkit.checkpoint import CHECKPOINT_NAME, load
from reidkit.cli import main
from reidkit.distributed import Distributed, shard_bounds
from reidkit.errors import ConfigError

WORKER = Path(__file__).with_name("ddp_worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for pid in range(6):
        colour = rng.integers(0, 255, 3)
        for index in range(3):
            pixels = np.clip(colour + rng.normal(0, 25, (16, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"{pid}_{index}.png")
    return root


def _environment(**variables) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")
    }
    env.pop("MASTER_PORT", None)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.update({k: str(v) for k, v in variables.items()})
    return env


def _worker(images: Path, out: Path, *more: str, **variables) -> subprocess.Popen:
    argv = [sys.executable, str(WORKER), str(images), str(out), *more]
    return subprocess.Popen(argv, env=_environment(**variables))


def _ranks(images: Path, out: Path, *more: str, world: int = 2) -> list[int]:
    """Run the worker as ``world`` processes of one distributed run; their exit codes."""
    port = _free_port()
    processes = [
        _worker(
            images,
            out,
            *more,
            RANK=rank,
            WORLD_SIZE=world,
            LOCAL_RANK=rank,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
        )
        for rank in range(world)
    ]
    return [process.wait(timeout=300) for process in processes]


@pytest.mark.slow
def test_two_gloo_processes_take_the_single_process_optimiser_steps(tmp_path):
    images = _images(tmp_path / "images")
    single = _worker(images, tmp_path / "one")
    assert single.wait(timeout=300) == 0
    assert _ranks(images, tmp_path / "two") == [0, 0]
    one, two = load(tmp_path / "one" / CHECKPOINT_NAME), load(tmp_path / "two" / CHECKPOINT_NAME)
    assert one.training.global_step == two.training.global_step > 4
    for name, weight in one.weights.items():
        torch.testing.assert_close(two.weights[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    for name, value in one.criterion_state.items():  # the center loss's centres: the criterion's own state
        torch.testing.assert_close(two.criterion_state[name], value, rtol=1e-4, atol=1e-5, msg=name)
    log_one = [json.loads(line) for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    log_two = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    shared = [entry for entry in log_two if entry["kind"] == "distributed"]
    assert shared and shared[0]["world_size"] == 2 and shared[0]["backend"] == "gloo"
    assert (shared[0]["batch_per_process"], shared[0]["effective_batch"]) == (4, 8)
    losses_one = [e["loss"] for e in log_one if e["kind"] == "step"]
    losses_two = [e["loss"] for e in log_two if e["kind"] == "step"]
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-4)  # the loss of the whole batch, every step
    torch.manual_seed(0)
    untrained = NoBatchNorm(6).state_dict()  # the worker's model before training: training did move it
    assert min(float((one.weights[k] - v).abs().max()) for k, v in untrained.items()) > 1e-3
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoint.pt", "log.jsonl"]


def test_a_partial_torchrun_environment_is_refused_clearly():
    assert Distributed.from_environment({}) == Distributed()
    with pytest.raises(
        ConfigError, match="RANK set but WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT missing"
    ):
        Distributed.from_environment({"RANK": "0"})
    full = {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"}
    with pytest.raises(ConfigError, match="rank 2 of world size 2"):
        Distributed.from_environment(full)
    with pytest.raises(ConfigError, match="must be integers"):
        Distributed.from_environment({**full, "RANK": "first"})
    assert Distributed.from_environment({**full, "RANK": "1"}) == Distributed(1, 2, 0)


def test_train_launched_with_half_a_torchrun_environment_exits_with_a_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--out", str(tmp_path), "--quiet"]) == 2
    assert "launch with `torchrun --nproc-per-node N -m reidkit train" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_trains_a_recipe_from_the_cli(tiny_overrides, synthetic_root, tmp_path):
    sets = [*tiny_overrides, "model.pretrained=null", f"data.root={synthetic_root}", "train.epochs=1"]
    sets += ["data.workers=0", "train.device=cpu", "train.log_every=1", "eval.batch_size=64"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2"]
    launcher += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    argv = ["-m", "reidkit", "train", "--out", str(tmp_path / "run"), "--quiet"]
    argv += sum((["--set", item] for item in sets), [])
    done = subprocess.run(
        [*launcher, *argv], env=_environment(OMP_NUM_THREADS=1), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("checkpoint:") == 1  # rank 0 alone reports, writes and evaluates
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["checkpoint.pt", "config.yaml", "log.jsonl", "metrics.json"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    shared = next(entry for entry in log if entry["kind"] == "distributed")
    assert (shared["world_size"], shared["batch_per_process"], shared["effective_batch"]) == (2, 4, 8)
    steps = [entry["step"] for entry in log if entry["kind"] == "step"]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 2  # one log, every step once
    saved = load(tmp_path / "run" / CHECKPOINT_NAME)
    assert saved.training.global_step == len(steps) and saved.training.epoch == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["after"]
    assert metrics == saved.metrics and 0 <= metrics["mAP"] <= 1  # rank 0 evaluated after the epoch


def test_sync_bn_outside_a_distributed_cuda_run_is_refused(tiny_overrides, synthetic_root, tmp_path, capsys):
    sets = [*tiny_overrides, "model.pretrained=null", f"data.root={synthetic_root}", "train.device=cpu"]
    sets += ["data.workers=0", "train.sync_bn=true"]
    assert main(["train", "--out", str(tmp_path), "--quiet", *sum((["--set", s] for s in sets), [])]) == 2
    assert "train.sync_bn: SyncBatchNorm needs a distributed run on CUDA" in capsys.readouterr().err
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_shard_bounds_are_contiguous_in_order_on_batch_boundaries():
    assert [shard_bounds(78, 64, r, 2) for r in range(2)] == [(0, 64), (64, 78)]
    assert [shard_bounds(300, 64, r, 2) for r in range(2)] == [(0, 192), (192, 300)]
    assert [shard_bounds(10, 4, r, 4) for r in range(4)] == [(0, 4), (4, 8), (8, 10), (10, 10)]
    for count, batch, world in [(0, 8, 3), (1, 8, 3), (65, 64, 2), (1000, 7, 5)]:
        bounds = [shard_bounds(count, batch, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == count
        assert all(
            a[1] == b[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )  # contiguous, in rank order
        assert all(start % batch == 0 or start == count for start, _ in bounds)


@pytest.mark.slow
def test_torchrun_extract_equals_a_single_process_extract(untrained_checkpoint, synthetic_root, tmp_path):
    argv = [
        "extract",
        "--checkpoint",
        str(untrained_checkpoint),
        "--images",
        str(synthetic_root / "bounding_box_test"),
    ]
    argv += ["--workers", "0", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "one.npz")]) == 0
    done = _torchrun([*argv, "--out", str(tmp_path / "two.npz")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote") == 1
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert len(one["paths"]) > 64  # both processes had a share (64 and the rest)
    assert sorted(one.files) == sorted(two.files)
    for key in one.files:
        if key == "features":  # the same batches, on other thread counts: equal to rounding
            np.testing.assert_allclose(two[key], one[key], rtol=0, atol=1e-6)
        else:
            assert np.array_equal(two[key], one[key]), key


def _torchrun(argv: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(processes),
    ]
    launcher += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "reidkit"]
    env = _environment(OMP_NUM_THREADS=1)
    return subprocess.run([*launcher, *argv], env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_torchrun_index_build_equals_a_single_process_build(untrained_checkpoint, synthetic_root, tmp_path):
    from reidkit.index import Index

    gallery = synthetic_root / "bounding_box_test"
    build = ["index", "build", "--checkpoint", str(untrained_checkpoint), "--images", str(gallery)]
    build += ["--batch-size", "16", "--quiet"]
    assert main([*build, "--out", str(tmp_path / "one")]) == 0
    done = _torchrun([*build, "--out", str(tmp_path / "two")], processes=3)  # 78 images: 5 chunks over 3
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("indexed 78 images") == 1
    with (
        Index.open(tmp_path / "one", readonly=True) as one,
        Index.open(tmp_path / "two", readonly=True) as two,
    ):
        ids = one.ids()
        assert np.array_equal(two.ids(), ids) and len(ids) == 78
        assert [one.get(i).path for i in ids] == [two.get(i).path for i in ids]  # same entries, same order
        np.testing.assert_allclose(two.vectors(ids), one.vectors(ids), rtol=0, atol=1e-6)
        assert two.fingerprint == one.fingerprint
    again = _torchrun(["index", "add", str(tmp_path / "two"), *build[2:]])
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        "indexed 0 images into" in again.stdout and "(78 already there, skipped; 78 in all)" in again.stdout
    )
    refused = _torchrun([*build, "--out", str(tmp_path / "t"), "--tracks", str(tmp_path)])
    assert refused.returncode != 0 and "add tracks or tracklets as one process" in refused.stderr


@pytest.mark.slow
def test_a_two_process_run_resumes_exactly_as_one_process_and_back(tmp_path):
    images = _images(tmp_path / "images")
    straight = _worker(images, tmp_path / "straight")
    assert straight.wait(timeout=300) == 0
    # 2 processes stop after 3 steps; 1 process goes on to 6; 2 processes finish the run
    assert _ranks(images, tmp_path / "a", "3") == [0, 0]
    middle = _worker(images, tmp_path / "b", "6", str(tmp_path / "a" / CHECKPOINT_NAME))
    assert middle.wait(timeout=300) == 0
    assert _ranks(images, tmp_path / "c", "", str(tmp_path / "b" / CHECKPOINT_NAME)) == [0, 0]
    done, resumed = load(tmp_path / "straight" / CHECKPOINT_NAME), load(tmp_path / "c" / CHECKPOINT_NAME)
    assert load(tmp_path / "a" / CHECKPOINT_NAME).training.global_step == 3
    assert load(tmp_path / "b" / CHECKPOINT_NAME).training.global_step == 6
    assert resumed.training.global_step == done.training.global_step > 6
    for name, weight in done.weights.items():
        torch.testing.assert_close(resumed.weights[name], weight, rtol=1e-4, atol=1e-5, msg=name)
