"""Stage-2 progress when stdout is not a terminal (a log file, a pipe, a batch job).

Lightning's progress bar redraws one terminal line: sent to a file it shows nothing until training
ends, so a long run looks hung. Off a terminal the bar gives way to a plain line such as

    stage 2: step 240/732 (33%) | epoch 2/6 | loss 3.412 | 1.93 steps/s | ETA 4 min 15 s

at most every 30 s, and a last one when training ends. On a terminal the bar stays.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping

from lightning.pytorch.callbacks import Callback


def progress_callbacks(enabled: bool = True) -> tuple[bool, list[Callback]]:
    """(enable_progress_bar, extra callbacks) for a Trainer: the bar on a terminal, lines elsewhere."""
    if not enabled:
        return False, []
    if sys.stdout.isatty():
        return True, []
    return False, [LineProgress()]


def duration(seconds: float) -> str:
    """42 s, 4 min 05 s, 2 h 07 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class LineProgress(Callback):
    """Prints step/total, epoch, mean training loss since the last line, steps/s and ETA."""

    def __init__(self, every_s: float = 30.0, prefix: str = "stage 2", stream=None, clock=time.monotonic):
        self.every_s, self.prefix, self.stream, self.clock = every_s, prefix, stream, clock

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = self._last = self.clock()
        self._first_step = trainer.global_step  # a resumed run's rate counts only its own steps
        self._total = trainer.estimated_stepping_batches  # inf when neither epochs nor steps bound it
        self._loss_sum, self._loss_n = 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None:
            self._loss_sum = self._loss_sum + loss.detach()  # stays on the device until a line is printed
            self._loss_n += 1
        if self.clock() - self._last >= self.every_s:
            self._report(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._report(trainer, done=True)

    def _report(self, trainer, done: bool = False) -> None:
        now = self.clock()
        self._last = now
        step, total = trainer.global_step, self._total
        parts = [f"step {step}/{total} ({100 * step / max(total, 1):.0f}%)" if math.isfinite(total) else f"step {step}"]
        if trainer.max_epochs and trainer.max_epochs > 0:
            parts.append(f"epoch {min(trainer.current_epoch + 1, trainer.max_epochs)}/{trainer.max_epochs}")
        if self._loss_n:
            parts.append(f"loss {float(self._loss_sum) / self._loss_n:.3f}")
            self._loss_sum, self._loss_n = 0.0, 0
        elapsed = now - self._start
        rate = (step - self._first_step) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            parts.append(f"{rate:.2f} steps/s")
        if done:
            parts.append(f"done in {duration(elapsed)}")
        elif rate > 0 and math.isfinite(total):
            parts.append(f"ETA {duration((total - step) / rate)}")
        if trainer.is_global_zero:
            print(f"{self.prefix}: " + " | ".join(parts), file=self.stream or sys.stdout, flush=True)
