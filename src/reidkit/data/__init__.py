"""Datasets, records, transforms and samplers."""

from __future__ import annotations

from reidkit.data.datasets import DATASETS, load_dataset
from reidkit.data.records import Sample, Split, Tracklet

__all__ = ["DATASETS", "Sample", "Split", "Tracklet", "load_dataset"]
