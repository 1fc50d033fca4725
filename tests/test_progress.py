"""Stage 2's one-line progress off a terminal: at most one line per interval, with what a reader needs."""
import io
from types import SimpleNamespace

import torch

from melp.train.progress import LineProgress, duration, progress_callbacks


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_at_most_every_interval_with_step_epoch_loss_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    progress = LineProgress(every_s=30, stream=out, clock=clock)
    trainer = SimpleNamespace(global_step=0, estimated_stepping_batches=700, max_epochs=7, current_epoch=0,
                              is_global_zero=True)
    progress.on_train_start(trainer, None)
    for step in range(1, 101):  # 100 steps of 1 s, loss 2.0
        clock.now, trainer.global_step, trainer.current_epoch = float(step), step, step // 100
        progress.on_train_batch_end(trainer, None, {"loss": torch.tensor(2.0)}, None, step)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 30, 60 and 90 s
    assert lines[0] == "stage 2: step 30/700 (4%) | epoch 1/7 | loss 2.000 | 1.00 steps/s | ETA 11 min 10 s"
    progress.on_train_end(trainer, None)
    assert out.getvalue().splitlines()[-1].endswith("| done in 1 min 40 s") and "epoch 2/7" in out.getvalue()


def test_unbounded_runs_and_other_ranks():
    out = io.StringIO()
    progress = LineProgress(every_s=0, stream=out, clock=Clock())
    trainer = SimpleNamespace(global_step=5, estimated_stepping_batches=float("inf"), max_epochs=-1,
                              current_epoch=0, is_global_zero=True)
    progress.on_train_start(trainer, None)
    progress.on_train_batch_end(trainer, None, torch.tensor(1.5), None, 0)
    assert out.getvalue() == "stage 2: step 5 | loss 1.500\n"
    trainer.is_global_zero = False
    progress.on_train_batch_end(trainer, None, torch.tensor(1.5), None, 1)
    assert out.getvalue().count("\n") == 1


def test_the_bar_on_a_terminal_lines_elsewhere(monkeypatch):
    monkeypatch.setattr("sys.stdout", SimpleNamespace(isatty=lambda: True))
    assert progress_callbacks(True) == (True, [])
    monkeypatch.setattr("sys.stdout", io.StringIO())
    bar, callbacks = progress_callbacks(True)
    assert bar is False and isinstance(callbacks[0], LineProgress)
    assert progress_callbacks(False) == (False, [])


def test_duration():
    assert [duration(s) for s in (42, 245, 7620)] == ["42 s", "4 min 05 s", "2 h 07 min"]
