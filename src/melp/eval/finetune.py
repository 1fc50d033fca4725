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

import copy
import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from melp.data.preprocess import preprocess
from melp.eval.cli_common import add_model_and_data
from melp.eval.data import as_eval_set, load_eval_set
from melp.eval.probe import KeepBestOnValidation, probe_split, seed_result, summarize_seeds, write_seeded


class Classifier(torch.nn.Module):
    """ECG encoder (from a MELP model) + one linear layer on its probe features."""

    def __init__(self, model, n_classes: int):
        super().__init__()
        self.model = model
        cfg = model.config.preprocess
        with torch.no_grad():
            width = model.encode_ecg(torch.zeros(1, 12, cfg.n_samples, device=model.device))["features"].shape[1]
        self.head = torch.nn.Linear(width, n_classes).to(model.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.model.encode_ecg(x)["features"])


def model_inputs(model, data, idx: np.ndarray) -> torch.Tensor:
    """Records -> the model's preprocessed first windows (B, 12, n) on its device."""
    cfg = model.config.preprocess
    windows = [preprocess(s, data.fs, cfg)[0] for s in data.signals(idx)]
    return torch.from_numpy(np.stack(windows)).to(model.device)


def predict(net: Classifier, data, idx: np.ndarray, batch_size: int) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(idx), batch_size):
            out.append(net(model_inputs(net.model, data, idx[start:start + batch_size])).float().cpu())
    return torch.cat(out).numpy()


def finetune_one(model, data, split: dict, seed: int, *, epochs: int, patience: int, lr: float, head_lr: float,
                 weight_decay: float, batch_size: int, desc: str) -> tuple[Classifier, list]:
    torch.manual_seed(seed)
    net = Classifier(copy.deepcopy(model), len(data.classes))
    head_params = set(map(id, net.head.parameters()))
    optimizer = torch.optim.AdamW([
        {"params": [p for p in net.model.parameters() if id(p) not in head_params], "lr": lr},
        {"params": list(net.head.parameters()), "lr": head_lr},
    ], weight_decay=weight_decay)
    train = split["train"]
    steps = epochs * max(1, math.ceil(len(train) / batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    labels = torch.from_numpy(data.labels)
    rng = np.random.default_rng(seed)
    stopper = KeepBestOnValidation(net, patience)
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch"):
        net.train()
        order = rng.permutation(train)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = loss_fn(net(model_inputs(net.model, data, idx)), labels[idx].to(net.model.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        val_logits = predict(net, data, split["val"], batch_size)
        val_loss = float(loss_fn(torch.from_numpy(val_logits), labels[split["val"]]))
        if stopper.update(epoch, data.labels[split["val"]], val_logits, val_loss):
            break
    return net, stopper.restore()


def evaluate_finetune(model, data, task: str, fraction: float = 1.0, seeds=1, *, epochs: int = 10,
                      patience: int = 3, lr: float = 1e-4, head_lr: float = 1e-3, weight_decay: float = 1e-4,
                      batch_size: int = 32, n_boot: int = 1000) -> dict:
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

    model = load_model(args.model)
    data = load_eval_set(args.root, args.dataset, model.config.preprocess, n=args.n, seed=args.seed,
                         allow_missing_leads=args.allow_missing_leads)
    result = evaluate_finetune(model, data, args.dataset, args.fraction, args.seeds, epochs=args.epochs,
                               patience=args.patience, lr=args.lr, head_lr=10 * args.lr,
                               batch_size=args.batch_size, n_boot=args.bootstrap)
    result["model"] = str(args.model)
    write_seeded(args.out, result, f"fine-tuning {args.dataset}, {args.fraction:g} of train")
    print((Path(args.out) / "results.md").read_text())
    print(f"written to {args.out}")
    return 0
