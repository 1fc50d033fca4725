"""Checkpoints a killed run can trust.

- ``AtomicCheckpointIO``: every checkpoint file is written beside its destination and renamed into
  place, so a kill mid-write leaves the previous file; the previous ``last.ckpt`` is kept as
  ``last.prev.ckpt``, a fallback should ``last.ckpt`` itself be damaged later.
- ``LastCheckpoint``: ``last.ckpt`` at the end of every epoch (validated or not) and, when asked, every
  N optimiser steps.
- ``resume_checkpoint``: the checkpoint ``--resume`` starts from; a damaged one is reported and the
  newest readable one in the folder is used instead.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from melp.atomic import atomic_write

LAST, PREVIOUS = "last.ckpt", "last.prev.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            torch.save(checkpoint, tmp)
            if path.name == LAST and path.is_file():
                os.replace(path, path.with_name(PREVIOUS))

        atomic_write(path, write)


class LastCheckpoint(Callback):
    """``last.ckpt`` in ``dirpath`` after every training epoch and every ``every_n_steps`` steps."""

    def __init__(self, dirpath: Path, every_n_steps: int | None = None):
        self.path = Path(dirpath) / LAST
        self.every_n_steps = int(every_n_steps or 0)
        self._saved_step = -1  # with gradient accumulation several batches end on one step

    def on_train_batch_end(self, trainer, *args) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # the full state: resumable
            self._saved_step = step

    def on_train_epoch_end(self, trainer, module) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: resumable


def damage(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be used, or None when it reads as a Lightning checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds (zip, pickle, EOF) for a damaged file
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'}"
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "loops" not in ckpt:
        return "not a training checkpoint (no state_dict or loop state)"
    return None


def resume_checkpoint(ckpt_dir: Path, resume: str) -> Path:
    """``resume="last"``: ``last.ckpt``, or when it is missing or damaged the newest readable checkpoint
    of ``ckpt_dir`` (said on stderr); otherwise the given file, which must be readable."""
    if resume != "last":
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: checkpoint {path} does not exist")
        problem = damage(path)
        if problem:
            raise ValueError(f"cannot resume: checkpoint {path} is damaged ({problem})")
        return path
    last = ckpt_dir / LAST
    others = sorted((p for p in ckpt_dir.glob("*.ckpt") if p != last), key=lambda p: p.stat().st_mtime, reverse=True)
    skipped = [] if last.is_file() else [f"{last} is missing"]
    for path in [last, *others] if last.is_file() else others:
        problem = damage(path)
        if problem is None:
            if skipped:
                print(f"melp pretrain: {'; '.join(skipped)}; resuming from {path}", file=sys.stderr)
            return path
        skipped.append(f"{path} is damaged ({problem})")
    raise FileNotFoundError(f"cannot resume: {'; '.join(skipped)} and no other checkpoint in {ckpt_dir} is usable")
