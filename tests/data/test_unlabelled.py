"""Extra unlabelled images (pid -1) mixed into P x K batches, and the LSRO recipe from the command line."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from reidkit.data.image_dataset import ImageDataset, unlabelled_samples
from reidkit.data.records import Sample
from reidkit.data.sampler import PKSampler, SeededBatches, UnlabelledMixSampler
from reidkit.errors import DatasetError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _mixed(seed: int = 5, per_batch: int = 3):
    pids = [pid for pid, count in {0: 5, 1: 3, 2: 4, 3: 6}.items() for _ in range(count)]
    labelled = len(pids)
    extra = list(range(labelled, labelled + 7))  # 7 unlabelled images after the labelled ones
    all_pids = pids + [-1] * len(extra)
    sampler = UnlabelledMixSampler(PKSampler(pids, p=2, k=2, seed=seed), extra, per_batch=per_batch)
    return sampler, all_pids, pids, extra


def test_every_batch_is_pk_labelled_then_n_unlabelled():
    sampler, all_pids, pids, extra = _mixed()
    plain = PKSampler(pids, p=2, k=2, seed=5)
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(batches) == len(plain.batches(epoch))
        for batch, labelled in zip(batches, plain.batches(epoch), strict=True):
            assert len(batch) == 2 * 2 + 3
            assert batch[:4] == labelled  # the labelled part is exactly PKSampler's batch
            head = Counter(all_pids[i] for i in batch[:4])
            assert len(head) == 2 and set(head.values()) == {2} and -1 not in head
            assert all(all_pids[i] == -1 for i in batch[4:])
        # the extra images are used in turn: every one before any repeats
        stream = [i for batch in batches for i in batch[4:]]
        for start in range(0, len(stream) - len(extra) + 1, len(extra)):
            assert sorted(stream[start : start + len(extra)]) == extra


def test_mixing_is_seeded_and_resumes_at_a_batch():
    sampler, *_ = _mixed(seed=5)
    again, *_ = _mixed(seed=5)
    other, *_ = _mixed(seed=6)
    assert sampler.batches(1) == again.batches(1)
    assert sampler.batches(0) != sampler.batches(1)
    assert [b[4:] for b in sampler.batches(0)] != [b[4:] for b in other.batches(0)]
    sampler.set_epoch(2, start_batch=2)
    assert list(sampler) == sampler.batches(2)[2:]
    assert len(sampler) == len(sampler.batches(2)) - 2
    # the augmentation seeds follow the position in the epoch, as for PKSampler
    fresh, *_ = _mixed(seed=5)
    fresh.set_epoch(2)
    assert list(SeededBatches(fresh))[2:] == list(SeededBatches(sampler))


def test_bad_arguments():
    sampler, _, pids, extra = _mixed()
    with pytest.raises(ValueError, match="per_batch"):
        UnlabelledMixSampler(PKSampler(pids, p=2, k=2), extra, per_batch=0)
    with pytest.raises(ValueError, match="at least one"):
        UnlabelledMixSampler(PKSampler(pids, p=2, k=2), [], per_batch=1)


def _extra_folder(synthetic_root: Path, target: Path, count: int = 10) -> Path:
    """Images of the synthetic test identities (not in the train set) used as extra unlabelled images."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted((synthetic_root / "bounding_box_test").glob("*.jpg"))[:count]:
        shutil.copy(path, target / path.name)
    return target


def test_unlabelled_folder_reads_as_pid_minus_one(synthetic_root, tmp_path):
    folder = _extra_folder(synthetic_root, tmp_path / "extra", count=4)
    samples = unlabelled_samples(folder)
    assert len(samples) == 4 and {s.pid for s in samples} == {-1}
    dataset = ImageDataset(samples, lambda image, rng: image)
    assert dataset[0].pid == -1 and dataset[0].attributes is None
    with pytest.raises(DatasetError, match="not a folder"):
        unlabelled_samples(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        unlabelled_samples(tmp_path / "empty")
    assert isinstance(samples[0], Sample)


def test_lsro_recipe_trains_from_the_command_line(synthetic_root, tmp_path):
    from reidkit.cli import main

    extra = _extra_folder(synthetic_root, tmp_path / "extra")
    out = tmp_path / "run"
    overrides = [
        f"data.root={synthetic_root}",
        "data.dataset=synthetic",
        f"data.unlabelled.root={extra}",
        "data.unlabelled.per_batch=4",
        "model.backbone=resnet18",
        "model.pretrained=null",
        "model.last_stride=2",
        "data.height=64",
        "data.width=32",
        "data.p=4",
        "data.k=4",
        "data.workers=0",
        "data.random_erasing=0",
        "optim.lr=1e-3",
        "schedule.warmup_epochs=0",
        "train.epochs=2",
        "train.log_every=1",
        "train.device=cpu",
        "eval.batch_size=64",
    ]
    argv = ["train", "--config", str(CONFIGS / "lsro.yaml"), "--out", str(out), "--quiet"]
    assert main([*argv, *sum((["--set", item] for item in overrides), [])]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [entry for entry in log if entry["kind"] == "epoch"]
    assert len(epochs) == 2 and "lsro@logits" in epochs[0]
    assert epochs[-1]["lsro@logits"] < epochs[0]["lsro@logits"]
    metrics = json.loads((out / "metrics.json").read_text())["after"]
    assert 0.0 <= metrics["mAP"] <= 1.0
    # a missing extra-image folder is a clear error
    code = main([*argv, "--set", f"data.root={synthetic_root}", "--set", "data.unlabelled.root=/no/such/dir"])
    assert code == 2


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"root": "x"}, "data.unlabelled.per_batch must be an integer >= 1"),
        ({"root": "x", "per_batch": 0}, "data.unlabelled.per_batch must be an integer >= 1"),
        ({"root": "x", "per_batch": True}, "data.unlabelled.per_batch must be an integer >= 1"),
        ({"root": "", "per_batch": 2}, "data.unlabelled.root must name a folder"),
        ({"root": "x", "per_batch": 2, "count": 1}, "unknown config key data.unlabelled.count"),
        ("x", "data.unlabelled expects dict or null"),
    ],
)
def test_config_section_is_validated(section, message):
    from reidkit.config import from_dict
    from reidkit.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        from_dict({"data": {"unlabelled": section}})
    config = from_dict({"data": {"unlabelled": {"root": "extra", "per_batch": 2}, "attributes": "a.csv"}})
    assert config.data.unlabelled == {"root": "extra", "per_batch": 2} and config.data.attributes == "a.csv"
    with pytest.raises(ConfigError, match="data.attributes must name a CSV"):
        from_dict({"data": {"attributes": " "}})
