"""ECG-report batches for stage 2, from a `melp prepare` cache.

Items come from ``ECGTextDataset`` (normalised ECG, report text, index); the collate function stacks
the ECGs and tokenizes the reports with the model's own tokenizer (``model.tokenize``), so workers do
the tokenization. Sampling uses ``DistributedSampler`` in every case (one replica on one device): its
shuffle order depends only on (seed, epoch), which makes a resumed run see the batches an
uninterrupted one would, and it shards the data across DDP ranks.

Lead masking is not done here but in the LightningModule (see ``mask_leads`` there): it needs the
batch position to be reproducible after a resume, which only the training loop knows.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import lightning as L
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from melp.train.lightning_module import report_ids


class TextCollate:
    """A batch read whole from the cache (``ECGTextDataset.batch``) -> the training batch, its reports
    tokenized (a class, not a closure, so worker processes can pickle it)."""

    def __init__(self, tokenize: Callable[[list[str]], dict]):
        self.tokenize = tokenize

    def __call__(self, batch: dict) -> dict:
        return {"ecg": batch["ecg"], "tokens": dict(self.tokenize(batch["report"])),
                "report_id": report_ids(batch["report"]), "index": batch["index"]}


class WholeBatches(Dataset):
    """A cache dataset read a batch at a time: the DataLoader passes what ``__getitems__`` returns, the
    batch read from the memmaps in one go, straight to the collate (no split into items and re-stacking)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> dict:
        return self.dataset.batch(indices)


def pairs(cache, splits: str | list[str]):
    """ECG-report pairs of one split, or of several (e.g. ``[val, test]`` for a larger held-out set)."""
    from melp.data.datasets import ECGTextDataset

    return ECGTextDataset(cache, split=splits)


class ECGTextDataModule(L.LightningDataModule):
    def __init__(self, cache: str | Path, tokenize: Callable[[list[str]], dict], batch_size: int = 32,
                 num_workers: int = 0, train_split: str | list[str] = "train",
                 val_split: str | list[str] | None = "val",
                 seed: int = 0):
        super().__init__()
        self.cache_path = Path(cache)
        self.collate = TextCollate(tokenize)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.train_split = train_split
        self.val_split = val_split
        self.seed = int(seed)
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from melp.data.cache import ECGCache

        if not self.cache_path.exists():
            raise FileNotFoundError(f"pretraining cache {self.cache_path} does not exist (run `melp prepare` first)")
        cache = ECGCache(self.cache_path)
        self.train_set = pairs(cache, self.train_split)
        if len(self.train_set) == 0:
            raise ValueError(f"cache {self.cache_path} has no {self.train_split!r} pairs to train on")
        if self.val_split:
            self.val_set = pairs(cache, self.val_split)
            if len(self.val_set) == 0:  # a small cache (e.g. `melp synth --n 64`) may hold none
                print(f"melp pretrain: cache {self.cache_path} has no {self.val_split!r} pairs: training without "
                      "validation (last.ckpt is still written every epoch; no best.ckpt)", file=sys.stderr)
                self.val_set = None

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        trainer = self.trainer
        replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = DistributedSampler(dataset, num_replicas=replicas, rank=rank, shuffle=shuffle,
                                     seed=self.seed, drop_last=shuffle)
        # batch_sampler (not sampler=): Lightning finds the DistributedSampler inside and sets its epoch
        return DataLoader(WholeBatches(dataset), batch_sampler=BatchSampler(sampler, self.batch_size, drop_last=shuffle),
                          collate_fn=self.collate, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        # drop_last keeps contrastive batches full (a batch of 1 has no negatives)
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []
