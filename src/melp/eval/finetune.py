"""Fine-tuning (DESIGN 4): the probe's splits and protocol, but the whole ECG encoder is trained.

A linear head on ``model.encode_ecg(x)["features"]``; BCE with logits; AdamW with a small learning
rate for the encoder (1e-4) and 1e-3 for the head; cosine schedule; early stopping on validation
macro AUROC; test scored with sigmoid outputs. The caller's model is not modified (each seed
trains a copy).

Python API::

    from melp.eval.finetune import evaluate_finetune
    r = evaluate_finetune(model, data, "ptbxl-super", fraction=0.1, seeds=1, epochs=10)
    r["macro_auroc_mean"], r["per_seed"][0]["per_class"]

Command: ``melp finetune --model DIR --dataset TASK --root DATA_OR_CACHE --fraction 0.1 --out DIR``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from melp.eval import outputs
from melp.eval.cli_common import add_model_and_data
from melp.eval.data import as_eval_set, load_eval_set
from melp.eval.probe import probe_split, seed_result, summarize_seeds, write_seeded


def evaluate_finetune(model, data, task: str, fraction: float = 1.0, seeds=1, *, epochs: int = 10,
                      patience: int = 3, lr: float = 1e-4, head_lr: float = 1e-3, weight_decay: float = 1e-4,
                      batch_size: int = 32, n_boot: int = 1000) -> dict:
    from melp.eval.finetune_loop import finetune_one, predict  # torch loads here, not with --help

    data = as_eval_set(data, task, model.config.preprocess)
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    per_seed = []
    for s in seeds:
        split = probe_split(data, fraction, s)
        net, history = finetune_one(model, data, split, s, epochs=epochs, patience=patience, lr=lr,
                                    head_lr=head_lr, weight_decay=weight_decay, batch_size=batch_size,
                                    desc=f"finetune {task} {fraction:g} seed {s}")
        scores = 1.0 / (1.0 + np.exp(-predict(net, data, split["test"], batch_size)))
        per_seed.append(seed_result(data, split, scores, history, s, n_boot))
        del net
    return summarize_seeds("finetune", task, fraction, seeds, data, per_seed)


def add_arguments(parser) -> None:
    add_model_and_data(parser)
    parser.add_argument("--fraction", type=float, default=1.0, choices=[0.01, 0.1, 1.0],
                        help="share of the train split used for training (default 1.0)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0..K-1)")
    parser.add_argument("--epochs", type=int, default=10, help="most training epochs (default 10)")
    parser.add_argument("--patience", type=int, default=3,
                        help="epochs without a better validation score before stopping (default 3)")
    parser.add_argument("--lr", type=float, default=1e-4, help="encoder learning rate (head: 10x)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap resamples for the 95%% CI (default 1000)")


def run(args) -> int:
    from melp.eval.embed import load_model

    outputs.check_output(args.out)
    model = load_model(args.model)
    data = load_eval_set(args.root, args.dataset, model.config.preprocess, n=args.n, seed=args.seed,
                         allow_missing_leads=args.allow_missing_leads)
    result = evaluate_finetune(model, data, args.dataset, args.fraction, args.seeds, epochs=args.epochs,
                               patience=args.patience, lr=args.lr, head_lr=10 * args.lr,
                               batch_size=args.batch_size, n_boot=args.bootstrap)
    result["model"] = str(args.model)
    with outputs.output_folder(args.out) as out:
        write_seeded(out, result, f"fine-tuning {args.dataset}, {args.fraction:g} of train")
    print((Path(args.out) / "results.md").read_text())
    print(f"written to {args.out}")
    return 0
