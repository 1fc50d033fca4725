"""Linear probing on frozen ECG features (DESIGN 4).

Protocol: the model's linear-probe features (``model.ecg_features``) of every record, frozen; one
linear layer trained with BCE-with-logits, AdamW (lr 1e-3, weight decay 1e-4), a cosine schedule,
early stopping on the validation macro AUROC; the test split scored with sigmoid outputs.
The training subset (1%, 10% or 100% of the train split) is drawn by *subject* with a generator
seeded by the seed, from train subjects that never occur in the test split (patient-disjoint).

Python API::

    from melp.eval.probe import evaluate_probe, probe_split
    result = evaluate_probe(model, data, "ptbxl-super", fraction=0.01, seeds=3)
    result["macro_auroc_mean"], result["macro_auroc_std"], result["per_seed"][0]["per_class"]

``data`` as for ``melp.eval.zeroshot.evaluate_zeroshot`` (it needs train/val/test splits).
``probe_split(data, fraction, seed)`` returns the index arrays ``train``, ``val``, ``test``.

Command: ``melp probe --model DIR --dataset TASK --root DATA_OR_CACHE --fraction 0.01 --seeds 3 --out DIR``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from melp.eval import outputs
from melp.eval.cli_common import add_model_and_data, add_precision, write_classification
from melp.eval.data import EvalSet, as_eval_set, load_eval_set
from melp.eval.embed import embed_set
from melp.eval.metrics import classification_summary, mean_std, per_class_auroc

if TYPE_CHECKING:  # torch loads inside the training functions, so `melp probe --help` stays light
    import torch


def probe_split(data: EvalSet, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Indices of the training subset, the validation split and the test split.

    The subset takes whole subjects, in an order fixed by ``seed``, until it holds at least
    ``ceil(fraction * n_train)`` records; subjects that also occur in the test split are excluded.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    test = np.flatnonzero(data.splits == "test")
    val = np.flatnonzero(data.splits == "val")
    pool = np.flatnonzero(data.splits == "train")
    for name, idx in (("train", pool), ("val", val), ("test", test)):
        if idx.size == 0:
            raise ValueError(f"{data.name}: the {name} split is empty; the probe needs train, val and test")
    test_subjects = set(data.subjects[test])
    pool = pool[[s not in test_subjects for s in data.subjects[pool]]]
    if pool.size == 0:
        raise ValueError(f"{data.name}: every train subject also occurs in the test split")
    subjects = np.unique(data.subjects[pool])  # sorted: the order depends on the seed only
    order = np.random.default_rng(seed).permutation(subjects)
    wanted = max(1, math.ceil(fraction * pool.size))
    by_subject: dict[str, list[int]] = {}
    for i in pool:
        by_subject.setdefault(data.subjects[i], []).append(int(i))
    chosen: list[int] = []
    for s in order:
        if len(chosen) >= wanted:
            break
        chosen.extend(by_subject[s])
    return {"train": np.sort(np.asarray(chosen, dtype=np.int64)), "val": val, "test": test}


def _macro(labels: np.ndarray, scores: np.ndarray) -> float:
    auc = per_class_auroc(labels, scores)
    return float(np.nanmean(auc)) if not np.isnan(auc).all() else float("nan")


class KeepBestOnValidation:
    """Early stopping shared by the probe and fine-tuning: scores each epoch by validation macro
    AUROC (minus the validation loss where no class is scorable), keeps the best weights of
    ``module`` and says when ``patience`` epochs passed without improvement."""

    def __init__(self, module: torch.nn.Module, patience: int):
        self.module, self.patience = module, patience
        self.best, self.best_state, self.since, self.history = -math.inf, None, 0, []

    def update(self, epoch: int, val_labels: np.ndarray, val_logits: np.ndarray, val_loss: float) -> bool:
        """Record one epoch; True when training should stop."""
        val_auc = _macro(val_labels, val_logits)
        self.history.append({"epoch": epoch, "val_macro_auroc": val_auc, "val_loss": val_loss})
        score = val_auc if not math.isnan(val_auc) else -val_loss
        if score > self.best:
            self.best, self.since = score, 0
            self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            return False
        self.since += 1
        return self.since >= self.patience

    def restore(self) -> list[dict]:
        """Load the best weights back; returns the per-epoch history."""
        self.module.load_state_dict(self.best_state)
        return self.history


def train_head(head: torch.nn.Module, forward, train_x, train_y, val_x, val_y, *, lr: float, weight_decay: float,
               epochs: int, patience: int, batch_size: int, seed: int, params=None, desc: str = "probe"):
    """Train ``forward(x) -> logits`` with BCE, AdamW and a cosine schedule, keeping the state of the
    best validation macro AUROC (validation loss where no class is scorable). Returns the history."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    params = list(params if params is not None else head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_x) / batch_size))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    stopper = KeepBestOnValidation(head, patience)
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", leave=False):
        head.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = loss_fn(forward(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        head.eval()
        with torch.no_grad():
            val_logits = forward(val_x)
            val_loss = float(loss_fn(val_logits, val_y))
        if stopper.update(epoch, val_y.numpy(), val_logits.float().numpy(), val_loss):
            break
    history = stopper.restore()
    head.eval()
    return history


def evaluate_probe(model, data, task: str, fraction: float = 1.0, seeds=1, *, epochs: int = 100,
                   patience: int = 10, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 256,
                   n_boot: int = 1000, features: np.ndarray | None = None, embed_batch_size: int = 64) -> dict:
    """Linear probe over ``seeds`` (an int K -> seeds 0..K-1, or a list). ``features`` (N, D) may be
    passed precomputed for every record of ``data``; otherwise they are computed ``embed_batch_size``
    ECGs at a time. ``batch_size`` is the probe's own training batch."""
    import torch

    data = as_eval_set(data, task, getattr(getattr(model, "config", None), "preprocess", None))
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    splits = {s: probe_split(data, fraction, s) for s in seeds}
    if features is None:
        needed = np.unique(np.concatenate([np.concatenate(list(sp.values())) for sp in splits.values()]))
        computed = embed_set(model, data.subset(needed), "features", embed_batch_size, desc=f"features {task}")
        feats = np.zeros((len(data), computed.shape[1]), dtype=np.float32)
        feats[needed] = computed
    else:
        feats = np.asarray(features, dtype=np.float32)
        if len(feats) != len(data):
            raise ValueError(f"features have {len(feats)} rows for {len(data)} records")
    x = torch.from_numpy(feats)
    y = torch.from_numpy(data.labels.astype(np.float32))
    per_seed = []
    for s in seeds:
        sp = splits[s]
        torch.manual_seed(s)
        head = torch.nn.Linear(x.shape[1], y.shape[1])
        history = train_head(head, head, x[sp["train"]], y[sp["train"]], x[sp["val"]], y[sp["val"]], lr=lr,
                             weight_decay=weight_decay, epochs=epochs, patience=patience,
                             batch_size=batch_size, seed=s, desc=f"probe {task} {fraction:g} seed {s}")
        with torch.no_grad():
            scores = torch.sigmoid(head(x[sp["test"]])).numpy()
        per_seed.append(seed_result(data, sp, scores, history, s, n_boot))
    return summarize_seeds("probe", task, fraction, seeds, data, per_seed)


def seed_result(data: EvalSet, split: dict, scores: np.ndarray, history: list, seed: int, n_boot: int) -> dict:
    """One seed's test-split scores (sigmoid outputs) -> its metrics and the arrays to save."""
    test, train = split["test"], split["train"]
    summary = classification_summary(data.labels[test], scores, data.classes, n_boot=n_boot, seed=seed)
    return {"seed": seed, "n_train": int(train.size), "n_val": int(split["val"].size),
            "epochs_run": len(history), **summary, "scores": scores, "labels": data.labels[test],
            "record_ids": data.record_ids[test], "train_record_ids": data.record_ids[train].tolist()}


def summarize_seeds(protocol: str, task: str, fraction: float, seeds, data: EvalSet, per_seed: list) -> dict:
    """Mean and spread over seeds of the macro AUROC and max-F1 (shared by the probe and fine-tuning)."""
    auc = mean_std([r["macro_auroc"] for r in per_seed])
    f1 = mean_std([r["macro_max_f1"] for r in per_seed])
    return {"protocol": protocol, "task": task, "fraction": fraction, "seeds": seeds, "classes": data.classes,
            "macro_auroc_mean": auc["mean"], "macro_auroc_std": auc["std"],
            "macro_max_f1_mean": f1["mean"], "macro_max_f1_std": f1["std"],
            "rejects": [list(r) for r in data.rejects], "per_seed": per_seed}


def write_seeded(out_dir, result: dict, title: str) -> None:
    """scores_seedK.csv + plots per seed, results.json (without arrays) and results.md."""
    out_dir = Path(out_dir)
    clean = dict(result)
    clean["per_seed"] = []
    md = [f"# {title}\n", f"Macro AUROC over {len(result['seeds'])} seed(s): "
          f"**{outputs.fmt(result['macro_auroc_mean'])} ± {outputs.fmt(result['macro_auroc_std'])}**; "
          f"macro max-F1 {outputs.fmt(result['macro_max_f1_mean'])} ± {outputs.fmt(result['macro_max_f1_std'])}.\n"]
    for r in result["per_seed"]:
        prefix = f"seed{r['seed']}_"
        write_classification(out_dir, {**r, "classes": result["classes"]}, f"{title}, seed {r['seed']}", prefix)
        clean["per_seed"].append({k: v for k, v in r.items() if k not in ("scores", "labels", "record_ids")})
        md.append(outputs.summary_markdown(f"seed {r['seed']} (train records: {r['n_train']})", r))
    outputs.write_json(out_dir / "results.json", clean)
    (out_dir / "results.md").write_text("\n".join(md))


def add_arguments(parser) -> None:
    add_model_and_data(parser)
    add_precision(parser)
    parser.add_argument("--fraction", type=float, default=1.0, choices=[0.01, 0.1, 1.0],
                        help="share of the train split used for training (default 1.0)")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0..K-1) to average over")
    parser.add_argument("--epochs", type=int, default=100, help="most training epochs of the probe (default 100)")
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CI")


def run(args) -> int:
    from melp.eval.embed import load_model

    outputs.check_output(args.out)
    model = load_model(args.model, precision=args.precision, compile=args.compile)
    data = load_eval_set(args.root, args.dataset, model.config.preprocess, n=args.n, seed=args.seed,
                         allow_missing_leads=args.allow_missing_leads)
    result = evaluate_probe(model, data, args.dataset, args.fraction, args.seeds, epochs=args.epochs,
                            patience=args.patience, n_boot=args.bootstrap, embed_batch_size=args.batch_size)
    result["model"] = str(args.model)
    title = f"linear probe {args.dataset}, {args.fraction:g} of train"
    with outputs.output_folder(args.out) as out:
        write_seeded(out, result, title)
    print((Path(args.out) / "results.md").read_text())
    print(f"written to {args.out}")
    return 0
