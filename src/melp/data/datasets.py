"""Torch datasets on a prepared cache: ECG-report pairs and ECG-labels.

Items are normalised with the cache's ``preprocess.normalize`` (per window); random lead
masking (each lead zeroed with probability p, after normalisation) is the pretraining
augmentation. Its randomness comes from torch's generator, which a DataLoader seeds
differently in every worker, so workers never repeat each other's masks.

Reads are batched: ``dataset.batch(indices)`` returns a whole batch as stacked tensors (one
sorted memmap read per shard), and ``__getitems__`` (which a DataLoader calls with the batch's
indices) splits it into the per-item dicts of the contract. ``batch_loader`` builds a DataLoader
that hands out ``dataset.batch`` directly, skipping the per-item split and re-stack.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from melp.data.cache import ECGCache
from melp.data.preprocess import normalize


def _open(cache) -> ECGCache:
    return cache if isinstance(cache, ECGCache) else ECGCache(Path(cache))


def normalize_stored(raw: np.ndarray, scale: float, mode: str) -> np.ndarray:
    """``normalize(raw * scale, mode)`` computed in fewer passes over the batch.

    Min-max does not depend on the unit, so it runs on the stored int16 values directly
    (half the bytes of float32, no separate conversion pass); the other modes convert first.
    """
    if mode != "minmax":
        return normalize(np.multiply(raw, np.float32(scale), dtype=np.float32), mode)
    lo = raw.min(axis=(-2, -1), keepdims=True).astype(np.float32)
    span = raw.max(axis=(-2, -1), keepdims=True).astype(np.float32) - lo
    out = np.subtract(raw, lo, dtype=np.float32)
    out *= 1.0 / np.maximum(span, np.float32(1e-6 / scale))  # the 1e-6 mV floor of normalize()
    return out


def lead_mask(x: torch.Tensor, p: float, generator: torch.Generator | None = None,
              inplace: bool = False) -> torch.Tensor:
    """Zero each lead of (..., leads, n) independently with probability ``p``."""
    if p <= 0:
        return x
    keep = (torch.rand(x.shape[:-1], generator=generator) >= p).unsqueeze(-1).to(x.dtype)
    return x.mul_(keep) if inplace else x * keep


class _CacheDataset(Dataset):
    def __init__(self, cache, split: str | None, lead_mask_prob: float):
        self.cache = _open(cache)
        splits = [split] if isinstance(split, str) else split
        if splits is not None and (not splits or any(s not in ("train", "val", "test") for s in splits)):
            raise ValueError(f"split must be train, val, test, a list of them or None, got {split!r}")
        if not 0.0 <= lead_mask_prob < 1.0:
            raise ValueError(f"lead_mask_prob must be in [0, 1), got {lead_mask_prob}")
        self.lead_mask_prob = lead_mask_prob
        rows = np.ones(len(self.cache), dtype=bool)
        if splits is not None:
            rows &= np.isin(self.cache.index["split"].to_numpy(), list(splits))
        self.rows = np.nonzero(rows)[0]  # positions in the cache index

    def __len__(self) -> int:
        return len(self.rows)

    def _ecg(self, items: list[int]) -> torch.Tensor:
        rows = self.rows[np.asarray(items, dtype=np.int64)]
        x = normalize_stored(self.cache.raw(rows), self.cache.scale, self.cache.preprocess.normalize)
        return lead_mask(torch.from_numpy(x), self.lead_mask_prob, inplace=True)  # x is our own copy

    def batch(self, items) -> dict:
        raise NotImplementedError

    def __getitems__(self, items: list[int]) -> list[dict]:
        batch = self.batch(items)
        keys = list(batch)
        return [{key: _item(batch[key], k) for key in keys} for k in range(len(items))]

    def __getitem__(self, i):
        """One item for an int; a whole batch (as ``batch``) for a list of ints."""
        if isinstance(i, (list, tuple, np.ndarray, torch.Tensor)):
            return self.batch(i)
        return self.__getitems__([i])[0]


def _item(value, k: int):
    if isinstance(value, torch.Tensor) and value.ndim == 1 and value.dtype == torch.int64:
        return int(value[k])  # the "index" field is a plain int per item
    return value[k]


def batch_loader(dataset: _CacheDataset, batch_size: int = 64, shuffle: bool = False, drop_last: bool = False,
                 generator: torch.Generator | None = None, **loader_kwargs) -> DataLoader:
    """A DataLoader yielding ``dataset.batch(indices)`` dicts (what default collation would give,
    without splitting a batch into items and stacking them again)."""
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                      **loader_kwargs)


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

    @property
    def reports(self) -> list[str]:
        """The report of every pair, in order."""
        return [str(self._reports[r]) for r in self.rows]

    def batch(self, items) -> dict:
        """``{"ecg": (B, 12, n), "report": list[str], "index": LongTensor(B)}``."""
        rows = self.rows[np.asarray(items, dtype=np.int64)]
        return {"ecg": self._ecg(items), "report": [str(self._reports[r]) for r in rows],
                "index": torch.from_numpy(rows.astype(np.int64))}


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

    def batch(self, items) -> dict:
        """``{"ecg": (B, 12, n), "labels": (B, C), "index": LongTensor(B)}``."""
        rows = self.rows[np.asarray(items, dtype=np.int64)]
        return {"ecg": self._ecg(items), "labels": torch.from_numpy(self.y[rows]),
                "index": torch.from_numpy(rows.astype(np.int64))}
