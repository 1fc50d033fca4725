"""Stage-2 step time of `melp demo`'s model on this machine: the shipped demo settings against the
settings the demo shipped before (25 ECG frames, 3 of 6 text layers frozen, dropout, fp32), and
against the shipped settings without the frozen text layers' cache, with the caption softmax over
the whole vocabulary, and with the reports in one length group (padded to the batch's longest).

    python bench/demo_step.py [--rounds 2] [--steps 4]

One step = forward (the three losses), backward and AdamW at the demo's batch of 32 reports (the
8 reports of bench/common.py, repeated) and random 100 Hz ECGs; the settings alternate, every
round is printed. The batch repeats, so the cache's figure is that of every epoch after the first
(in the first, each report runs through the frozen layers once, as without the cache). The shipped
caption vocabulary (`caption_vocab: corpus`) is that of these 8 reports: 94 tokens where the demo's
corpus has about 200, against 30,523 in the whole vocabulary.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from melp.models.melp import MELP
from melp.train.config import apply_values, load_config
from melp.train.demo import demo_settings
from melp.train.pretrain import build_model, resolve_precision, with_corpus_caption_vocab

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPORTS  # noqa: E402

BEFORE = {"model_overrides.ecg.conv_kernels": [5, 2, 2, 2], "model_overrides.ecg.conv_strides": [5, 2, 2, 2],
          "model_overrides.text.freeze_fraction": 0.5, "model_overrides.text.dropout": None,
          "model_overrides.ecg.attention_dropout": 0.1, "trainer.precision": "32-true",
          "model_overrides.text.cache_frozen_states": False, "caption_vocab": "full",
          "model_overrides.text.length_groups": 1}


def build(stage2: dict) -> tuple[MELP, torch.optim.Optimizer, bool, int]:
    """The demo's stage-2 model for these overrides, its optimiser, bf16 or not, and ECG samples."""
    cfg = with_corpus_caption_vocab(apply_values(load_config("tiny"), stage2), REPORTS)
    torch.manual_seed(0)
    model = build_model(cfg).train()  # as `melp pretrain` builds it
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    bf16 = resolve_precision(str(cfg["trainer"]["precision"]), "cpu") == "bf16-mixed"
    return model, opt, bf16, model.config.preprocess.n_samples


def timed_steps(model, opt, bf16: bool, n: int, steps: int) -> list[float]:
    """Seconds of ``steps`` training steps (sorted) on one demo-sized batch, after one warm-up step."""
    batch = load_config("tiny")["data"]["batch_size"]
    ecg, tokens = torch.rand(batch, 12, n), model.tokenize([REPORTS[i % len(REPORTS)] for i in range(batch)])
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(ecg, tokens)["loss"]
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement (after one warm-up)")
    args = parser.parse_args()

    shipped = demo_settings(quick=False)["stage2"]
    settings = {"before": {**shipped, **BEFORE},
                "no text cache": {**shipped, "model_overrides.text.cache_frozen_states": False},
                "full vocab": {**shipped, "caption_vocab": "full"},
                "one length group": {**shipped, "model_overrides.text.length_groups": 1}, "shipped": shipped}
    built = {name: build(values) for name, values in settings.items()}
    for name, (model, _, bf16, n) in built.items():
        print(f"{name}: bf16 autocast {bf16}, {n} samples -> {model.ecg_encoder.n_frames(n)} frames, "
              f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.1f} M trainable")

    medians = {name: [] for name in built}
    for r in range(args.rounds):
        for name, (model, opt, bf16, n) in built.items():
            times = timed_steps(model, opt, bf16, n, args.steps)
            medians[name].append(times[len(times) // 2])
            print(f"round {r + 1} {name:<13} s/step: {' '.join(f'{t:.3f}' for t in times)} (median {medians[name][-1]:.3f})")
    for name in ("before", "no text cache", "full vocab", "one length group"):
        for r, (b, s) in enumerate(zip(medians[name], medians["shipped"])):
            print(f"round {r + 1}: shipped step {b / s:.2f}x faster than {name}")


if __name__ == "__main__":
    main()
