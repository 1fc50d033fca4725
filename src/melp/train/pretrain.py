"""`melp pretrain`: stage 2, multi-scale ECG-language pretraining on Lightning.

    melp pretrain --config tiny --set data.cache=caches/mimic --set optim.lr=5e-4
    melp pretrain --config paper --devices 4 --strategy ddp --precision bf16-mixed
    melp pretrain --config tiny --set output.dir=runs/x --resume        # continue from last.ckpt

The run folder (``output.dir``) receives ``config.yaml`` (the resolved config), ``checkpoints/``
(``last.ckpt`` after every epoch, with or without validation, and every ``checkpoint.every_n_train_steps``
steps when set; ``best.ckpt`` on the held-out pretraining pairs; all written atomically, see
checkpoints.py), ``logs/`` (CSV and
TensorBoard, one ``version_N`` per invocation, so a resumed run continues in the next one) and ``model/``, the final weights as a model folder that ``melp.load`` opens
(``model_best/`` too when a best checkpoint exists).
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

from melp.train.config import add_set_argument, apply_overrides, apply_values, load_config, save_config

# command-line flags that are shortcuts for trainer.* keys of the config
TRAINER_FLAGS = {"devices": "devices", "strategy": "strategy", "num_nodes": "num_nodes",
                 "accelerator": "accelerator", "precision": "precision"}


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AMX or AVX512-BF16; read from
    /proc/cpuinfo, so Linux only). Elsewhere bf16 autocast is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 mixed precision where the hardware runs it natively (a bf16 GPU, or a CPU with
    AMX/AVX512-BF16: the demo's step is 1.2x faster there), else full fp32."""
    if precision != "auto":
        return precision
    import torch

    on_gpu = accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if native_bf16_cpu() else "32-true"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="tiny", help="training preset name (tiny, paper) or YAML path")
    add_set_argument(parser, "override a config value by dotted path, e.g. optim.lr=2e-4 (repeatable)")
    parser.add_argument("--out", help="run folder (same as --set output.dir=...)")
    parser.add_argument("--cache", help="pretraining cache (same as --set data.cache=...)")
    parser.add_argument("--devices", help="devices per node (int, or 'auto')")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    parser.add_argument("--num-nodes", dest="num_nodes", type=int, help="number of nodes")
    parser.add_argument("--accelerator", help="cpu, gpu, auto, ...")
    parser.add_argument("--precision", help="32-true, bf16-mixed, 16-mixed, ..., or auto (bf16-mixed where the "
                        "GPU or CPU runs bf16 natively, else 32-true)")
    parser.add_argument("--resume", nargs="?", const="last", default=None, metavar="CKPT",
                        help="resume from the run's checkpoints/last.ckpt (or the given checkpoint)")


def resolve_config(args: argparse.Namespace) -> dict:
    cfg = apply_overrides(load_config(args.config), args.overrides)
    for flag, key in TRAINER_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            cfg["trainer"][key] = int(value) if flag == "devices" and str(value).isdigit() else value
    if getattr(args, "out", None):
        cfg["output"]["dir"] = args.out
    if getattr(args, "cache", None):
        cfg["data"]["cache"] = args.cache
    return cfg


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def model_config(cfg: dict):
    """The MELPConfig of a training config: a model preset (or YAML) plus ``model_overrides``."""
    from melp.models.config import MELPConfig

    base = MELPConfig.from_preset(str(cfg["model"])).to_dict()
    return MELPConfig.from_dict(_deep_merge(base, cfg.get("model_overrides") or {}))


def build_model(cfg: dict):
    from melp.models.melp import MELP

    return MELP(model_config(cfg))


def with_corpus_caption_vocab(cfg: dict, reports: list[str] | None = None) -> dict:
    """``caption_vocab: corpus``: ``cfg`` with the caption decoder's output vocabulary
    (``model_overrides.decoder.output_tokens``) set to the tokens of the training reports, [SEP]
    (which ends each) and [UNK] (which stands for a held-out report's token the training reports
    lack). Its softmax then spans those alone: a few hundred tokens in the demo instead of MiniLM's
    30,523, whose projection was about a third of the demo's CPU step (docs/speed.md). ``full`` (the
    default, the paper's): ``cfg`` unchanged. ``reports``: these instead of the cache's training reports."""
    from melp.data.cache import ECGCache
    from melp.models.text_encoder import load_tokenizer, report_pieces, resolve_text_model
    from melp.train.datamodule import pairs

    mode = cfg.get("caption_vocab", "full")
    if mode not in ("full", "corpus"):
        raise ValueError(f"caption_vocab must be 'full' or 'corpus', got {mode!r}")
    if mode == "full":
        return cfg
    text = model_config(cfg).text
    if text is None:
        raise ValueError("caption_vocab: corpus needs a model with a text tower")
    tokenizer = load_tokenizer(resolve_text_model(text.source))
    if reports is None:
        data = cfg["data"]
        reports = pairs(ECGCache(data["cache"]), data.get("train_split", "train")).reports
    ids = set().union(*report_pieces(tokenizer, reports, text.max_length))
    ids |= {tokenizer.sep_token_id, tokenizer.unk_token_id}
    return apply_values(cfg, {"model_overrides.decoder.output_tokens": sorted(ids)})


def pretrain(cfg: dict, resume: str | None = None, progress: bool = True) -> Path:
    """Train per ``cfg`` and return the run folder (which holds ``model/``)."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from melp.models.fast_inference import require_compiler
    from melp.train.checkpoints import AtomicCheckpointIO, LastCheckpoint, resume_checkpoint
    from melp.train.datamodule import ECGTextDataModule
    from melp.train.host_memory import keep_freed_host_memory
    from melp.train.lightning_module import MELPLightning
    from melp.train.progress import progress_callbacks
    from melp.train.quiet import quiet_lightning

    if cfg["trainer"].get("keep_host_memory", True):
        keep_freed_host_memory()  # before the model's first tensor: torch reads its huge-page setting once
    quiet_lightning()
    run_dir = Path(cfg["output"]["dir"])
    ckpt_dir = run_dir / "checkpoints"
    seed = int(cfg.get("seed", 0))
    ckpt_path = resume_checkpoint(ckpt_dir, resume) if resume else None  # a bad one fails before any work
    L.seed_everything(seed, workers=True, verbose=False)

    cfg = with_corpus_caption_vocab(cfg)
    model = build_model(cfg)
    model.train()  # Hugging Face loads the text model in eval mode; Lightning keeps modes as it finds them
    if cfg["trainer"].get("compile_ecg_encoder"):
        # static shapes (fixed-length windows); the state dict keeps its keys (Module.compile)
        require_compiler()
        model.ecg_encoder.compile(dynamic=False)
    data = cfg["data"]
    module = MELPLightning(model, cfg["optim"], lead_mask_prob=float(data.get("lead_mask_prob", 0.0)),
                           seed=seed, config=cfg)
    datamodule = ECGTextDataModule(data["cache"], model.tokenize, batch_size=data["batch_size"],
                                   num_workers=data.get("num_workers", 0),
                                   train_split=data.get("train_split", "train"),
                                   val_split=data.get("val_split"), seed=seed)

    ck = cfg.get("checkpoint") or {}
    datamodule.setup("fit")
    has_val = datamodule.val_set is not None  # none asked for, or none in the cache
    show_bar, progress_lines = progress_callbacks(progress)  # off a terminal: a line every 30 s
    callbacks = [LastCheckpoint(ckpt_dir, ck.get("every_n_train_steps")), LearningRateMonitor(logging_interval="step"),
                 *progress_lines]
    best = None
    if has_val:
        best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=ck.get("monitor"), mode=ck.get("mode", "max"),
                               save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False)
        callbacks.append(best)
    t = cfg["trainer"]
    precision = resolve_precision(str(t.get("precision", "32-true")), str(t.get("accelerator", "auto")))
    if precision != t.get("precision", "32-true"):
        print(f"precision auto -> {precision}")
    trainer = L.Trainer(
        accelerator=t.get("accelerator", "auto"), devices=t.get("devices", 1), num_nodes=t.get("num_nodes", 1),
        strategy=t.get("strategy", "auto"), precision=precision,
        max_epochs=t.get("max_epochs"), max_steps=t.get("max_steps", -1),
        max_time=t.get("max_time"),  # e.g. "00:00:30:00" (DD:HH:MM:SS): stop at a wall-time budget
        accumulate_grad_batches=t.get("accumulate_grad_batches", 1),
        gradient_clip_val=t.get("gradient_clip_val"), log_every_n_steps=t.get("log_every_n_steps", 50),
        check_val_every_n_epoch=t.get("check_val_every_n_epoch", 1),
        # None = all, like 1.0 but without Lightning's notice that it "was configured so 100% ... will be used"
        limit_val_batches=(None if t.get("limit_val_batches", 1.0) == 1.0 else t["limit_val_batches"]) if has_val else 0,
        deterministic=t.get("deterministic", False),
        num_sanity_val_steps=0,  # the first validation comes at the end of epoch 1
        use_distributed_sampler=False,  # the datamodule builds its own DistributedSampler
        callbacks=callbacks, plugins=[AtomicCheckpointIO()], enable_progress_bar=show_bar,
        # Lightning's summary table prints "Total FLOPs: 0" and a warning under bf16: one line of our own instead
        enable_model_summary=False,
        enable_checkpointing=best is not None,  # else Lightning adds its own ModelCheckpoint under logs/
        # one version_N folder per invocation: a resumed run adds its own instead of replacing the log
        logger=[CSVLogger(run_dir / "logs", name="csv", flush_logs_every_n_steps=t.get("log_every_n_steps", 50)),
                TensorBoardLogger(run_dir / "logs", name="tensorboard")],
        default_root_dir=run_dir,
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"model: {total / 1e6:.1f} M parameters, {trainable / 1e6:.1f} M trainable")

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)

    if trainer.is_global_zero:
        model.save_pretrained(run_dir / "model")
        if best is not None and best.best_model_path and Path(best.best_model_path).is_file():
            save_from_checkpoint(cfg, best.best_model_path, run_dir / "model_best")
    trainer.strategy.barrier()
    return run_dir


def read_metrics(run_dir: str | Path):
    """The run's CSV log as one DataFrame, every invocation (first run and resumes) in order."""
    import pandas as pd

    folders = sorted((Path(run_dir) / "logs" / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    parts = [pd.read_csv(f / "metrics.csv") for f in folders if (f / "metrics.csv").is_file()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def save_from_checkpoint(cfg: dict, ckpt_path: str | Path, out_dir: str | Path) -> None:
    """Write the weights of a Lightning checkpoint as a model folder (loaded without unpickling)."""
    import torch

    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    model = build_model(cfg)
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    model.save_pretrained(out_dir)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    run_dir = pretrain(cfg, resume=args.resume)
    print(f"model written to {run_dir / 'model'} (open it with melp.load)")
    return 0
