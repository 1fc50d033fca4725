"""The training loop of fine-tuning (``melp.eval.finetune``): the ECG encoder plus a linear head,
trained end to end with early stopping. Kept apart from ``finetune.py`` because it needs torch at
import time (``Classifier`` subclasses ``torch.nn.Module``), and ``melp finetune --help`` must not."""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from melp.data.preprocess import preprocess
from melp.eval.probe import KeepBestOnValidation


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
