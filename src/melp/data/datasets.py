"""Torch datasets on a prepared cache: ECG-report pairs and ECG-labels.

Items are normalised with the cache's ``preprocess.normalize`` (per window); random lead
masking (each lead zeroed with probability p, after normalisation) is the pretraining
augmentation. Its randomness comes from torch's generator, which a DataLoader seeds
differently in every worker, so workers never repeat each other's masks.

Both datasets define ``__getitems__``, which a DataLoader calls with the whole batch of
indices: one memmap read per shard instead of one per item.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from melp.data.cache import ECGCache
from melp.data.preprocess import normalize


def _open(cache) -> ECGCache:
    return cache if isinstance(cache, ECGCache) else ECGCache(Path(cache))


def lead_mask(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each lead of (..., leads, n) independently with probability ``p``."""
    if p <= 0:
        return x
    keep = torch.rand(x.shape[:-1], generator=generator) >= p
    return x * keep.unsqueeze(-1).to(x.dtype)


class _CacheDataset(Dataset):
    def __init__(self, cache, split: str | None, lead_mask_prob: float):
        self.cache = _open(cache)
        if split is not None and split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val, test or None, got {split!r}")
        if not 0.0 <= lead_mask_prob < 1.0:
            raise ValueError(f"lead_mask_prob must be in [0, 1), got {lead_mask_prob}")
        self.lead_mask_prob = lead_mask_prob
        rows = np.ones(len(self.cache), dtype=bool)
        if split is not None:
            rows &= self.cache.index["split"].to_numpy() == split
        self.rows = np.nonzero(rows)[0]  # positions in the cache index

    def __len__(self) -> int:
        return len(self.rows)

    def _ecg(self, items: list[int]) -> torch.Tensor:
        rows = self.rows[np.asarray(items, dtype=np.int64)]
        x = normalize(self.cache.signals(rows), self.cache.preprocess.normalize)
        return lead_mask(torch.from_numpy(x), self.lead_mask_prob)

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])[0]


class ECGTextDataset(_CacheDataset):
    """``{"ecg": FloatTensor(12, n) normalised, "report": str, "index": int}``.

    ``index`` is the row in ``cache.index``. Rows with an empty report are left out (there is
    nothing to align them with); ``self.rows`` lists the rows used.
    """

    def __init__(self, cache, split: str | None = None, lead_mask_prob: float = 0.0):
        super().__init__(cache, split, lead_mask_prob)
        reports = self.cache.index["report"].to_numpy()
        self.rows = self.rows[np.array([bool(str(reports[r]).strip()) for r in self.rows], dtype=bool)]
        self._reports = reports

    def __getitems__(self, items: list[int]) -> list[dict]:
        ecg = self._ecg(items)
        rows = self.rows[np.asarray(items, dtype=np.int64)]
        return [{"ecg": ecg[k], "report": str(self._reports[r]), "index": int(r)} for k, r in enumerate(rows)]


class ECGLabelDataset(_CacheDataset):
    """``{"ecg": FloatTensor(12, n), "labels": FloatTensor(C) multi-hot, "index": int}``.

    ``classes`` gives the label columns. For tasks whose benchmark keeps only labelled records
    (PTB-XL, CPSC2018, CSN: ``require_label`` in meta.json) unlabelled rows are left out;
    ``require_label`` overrides that.
    """

    def __init__(self, cache, task: str, split: str | None = None, lead_mask_prob: float = 0.0,
                 require_label: bool | None = None):
        super().__init__(cache, split, lead_mask_prob)
        self.task = task
        self.classes: list[str] = list(self.cache.tasks[task]) if task in self.cache.tasks else []
        self.y = self.cache.labels(task)  # raises a clear KeyError for an unknown task
        if require_label is None:
            require_label = bool(self.cache.meta.get("require_label", {}).get(task, False))
        if require_label:
            self.rows = self.rows[self.y[self.rows].any(axis=1)]

    def __getitems__(self, items: list[int]) -> list[dict]:
        ecg = self._ecg(items)
        rows = self.rows[np.asarray(items, dtype=np.int64)]
        labels = torch.from_numpy(self.y[rows])
        return [{"ecg": ecg[k], "labels": labels[k], "index": int(r)} for k, r in enumerate(rows)]
