"""Datasets: record readers, per-dataset adapters, preprocessing, the memmap cache, torch datasets."""
