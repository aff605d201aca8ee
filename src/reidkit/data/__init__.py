"""Datasets, records, transforms and samplers."""
