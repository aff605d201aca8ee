"""PseudoLabelSampler: labels per epoch into the records, P x K over clustered images only, saved for resuming."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from reidkit.adapt.sampler import PseudoLabelSampler
from reidkit.data.image_dataset import ImageDataset
from reidkit.data.records import Sample
from reidkit.data.sampler import PKSampler
from reidkit.errors import CheckpointError, ReidkitError


def _dataset(count: int = 12) -> ImageDataset:
    return ImageDataset([Sample(f"img{i}.jpg", -1, i % 3) for i in range(count)], transform=None)


class Labels:
    """relabel(epoch): a different labelling each epoch, counting the calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, epoch: int) -> np.ndarray:
        self.calls.append(epoch)
        labels = (np.arange(12) + epoch) % 4
        labels[[1, 5]] = -1  # two outliers
        return labels


def test_each_epoch_is_labelled_once_and_batches_hold_only_clustered_images(tmp_path):
    dataset, relabel = _dataset(), Labels()
    sampler = PseudoLabelSampler(dataset, relabel, tmp_path, p=2, k=2, seed=3)
    sampler.set_epoch(0)
    batches = sampler.batches(0)
    assert relabel.calls == [0] and len(sampler) == len(batches)
    used = {i for batch in batches for i in batch}
    assert used == set(range(12)) - {1, 5}
    labels = relabel(0)
    relabel.calls.pop()
    assert [r.pid for r in dataset.records] == labels.tolist()
    for batch in batches:  # P x K over the pseudo-identities
        assert sorted(Counter(int(labels[i]) for i in batch).values()) == [2, 2]
    # the same batches as a PKSampler over the clustered images, mapped back to dataset indices
    kept = np.flatnonzero(labels >= 0)
    inner = PKSampler(labels[kept], p=2, k=2, seed=3).batches(0)
    assert batches == [[int(kept[i]) for i in batch] for batch in inner]
    sampler.set_epoch(0, start_batch=1)
    assert relabel.calls == [0] and list(sampler) == batches[1:]
    sampler.set_epoch(1)
    assert relabel.calls == [0, 1] and [r.pid for r in dataset.records] == Labels()(1).tolist()
    assert np.load(sampler.labels_path(1)).tolist() == Labels()(1).tolist()


def test_an_epoch_resumed_part_way_reads_its_saved_labels(tmp_path):
    first = PseudoLabelSampler(_dataset(), Labels(), tmp_path, p=2, k=2)
    first.set_epoch(2)
    expected = first.batches(2)
    relabel = Labels()
    resumed = PseudoLabelSampler(_dataset(), relabel, tmp_path, p=2, k=2)
    resumed.set_epoch(2, start_batch=2)
    assert relabel.calls == []  # the model moved since epoch 2 was clustered: its labels are read back
    assert list(resumed) == expected[2:]
    with pytest.raises(CheckpointError, match="pseudo-labels .* are gone"):
        PseudoLabelSampler(_dataset(), Labels(), tmp_path / "empty", p=2, k=2).set_epoch(3, start_batch=1)


def test_too_few_pseudo_identities_or_wrong_label_count_is_a_clear_error(tmp_path):
    sampler = PseudoLabelSampler(_dataset(), lambda epoch: np.zeros(12, np.int64), tmp_path, p=2, k=2)
    with pytest.raises(ReidkitError, match="1 pseudo-identities, fewer than data.p = 2"):
        sampler.set_epoch(0)
    sampler = PseudoLabelSampler(_dataset(), lambda epoch: np.zeros(5, np.int64), tmp_path / "b", p=2, k=2)
    with pytest.raises(ReidkitError, match="5 pseudo-labels for 12 images"):
        sampler.set_epoch(0)
