"""Stage 1 at the demo's scale: time, held-out masked-LM loss before/after, and the masked-only head.

    python bench/text_pretrain.py [--records 3000] [--steps 60] [--threads N] [--lr LR]

1. Simulates the demo's pretraining reports (``melp.synth.simulate``), lower-cased as the MIMIC
   adapter stores them, into a text file.
2. Times one optimisation step (forward + backward) of the default text model (MiniLM) at the
   preset's batch size with the vocabulary head on the masked tokens only (``masked_lm_loss``)
   against Hugging Face's own loss over every position (the baseline), interleaved in this run;
   prints the ratio.
3. Runs ``pretrain_text`` with the ``text_tiny`` preset (what ``melp demo`` runs) and prints its wall
   time and the held-out MLM loss before and after (a seeded 5% of the unique reports).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch


def _step_seconds(fn, model, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        model.zero_grad(set_to_none=True)
        fn().backward()
    return (time.perf_counter() - start) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=60, help="stage-1 steps (melp demo: 60)")
    parser.add_argument("--reps", type=int, default=3, help="timed steps per variant and round")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is faster on busy cores)")
    parser.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from melp.models.text_encoder import quiet_hf
    from melp.synth import simulate
    from melp.train import text_pretrain as tp
    from melp.train.config import load_config

    work = Path(tempfile.mkdtemp(prefix="melp-bench-text-"))
    reports = [r.lower() for r in simulate(args.records, seed=1).reports]
    corpus = work / "reports.txt"
    corpus.write_text("\n".join(reports) + "\n")
    print(f"{args.records} simulated reports, {len(set(reports))} unique; torch threads {torch.get_num_threads()}")

    cfg = load_config("text_tiny")
    batch_size, max_length = int(cfg["train"]["batch_size"]), int(cfg["data"]["max_length"])
    source = tp.resolve_model_source(cfg["model"])
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    with quiet_hf():
        model = AutoModelForMaskedLM.from_pretrained(source, local_files_only=True)
    batch = tp.masked_eval_batches(tokenizer, reports[:batch_size], max_length, batch_size, seed=0)[0]
    full = lambda: model(**batch).loss  # noqa: E731 - the baseline: logits at every position
    masked = lambda: tp.masked_lm_loss(model, batch)  # noqa: E731
    with torch.no_grad():  # same number without dropout
        assert math.isclose(float(model.eval() and full()), float(masked()), rel_tol=1e-5)
    model.train()
    _step_seconds(masked, model, 1)  # warm-up
    timings = {"full": [], "masked": []}
    for _ in range(2):  # interleaved rounds: both variants see the same machine load
        for name, fn in (("full", full), ("masked", masked)):
            timings[name].append(_step_seconds(fn, model, args.reps))
    t_full, t_masked = min(timings["full"]), min(timings["masked"])
    print(f"step (batch {batch_size}, {tuple(batch['input_ids'].shape)} tokens): HF full-vocab loss "
          f"{t_full:.3f} s, masked-only head {t_masked:.3f} s -> {t_full / t_masked:.2f}x faster")

    cfg["data"]["texts"] = [str(corpus)]
    cfg["train"]["steps"] = args.steps
    if args.lr:
        cfg["optim"]["lr"] = args.lr
    cfg["output"]["dir"] = str(work / "text_model")
    log = tp.pretrain_text(cfg)
    before, after = log["heldout_mlm_loss_before"], log["heldout_mlm_loss_after"]
    print(f"stage 1 (text_tiny, {log['steps']} steps, {log['train_texts']} train / {log['heldout_texts']} "
          f"held-out texts): {log['elapsed_seconds']:.1f} s in all")
    print(f"held-out MLM loss {before:.3f} -> {after:.3f} (perplexity {math.exp(before):.1f} -> "
          f"{math.exp(after):.1f}); model folder {cfg['output']['dir']}")


if __name__ == "__main__":
    main()
