"""Stage 2 as a LightningModule: the MELP model, its optimiser and schedule, training and validation.

- AdamW (betas 0.9/0.95, weight decay 0.2) with no decay on norms, biases and the logit scale
  (``optim.decay_all: true``: on every parameter, as the reference), and optionally a smaller learning
  rate for the pretrained text model (``optim.pretrained_lr_scale``).
- ``optim.schedule``: ``warmup_cosine`` (melp's presets: linear warm-up from 0, then cosine decay to
  ``min_lr``) or ``cosine_restarts`` (the reference: no warm-up, cosine from ``lr`` to ``min_lr``
  restarting every ``restart_epochs`` epochs, i.e. torch's CosineAnnealingWarmRestarts); both stepped
  every optimiser step.
- After every optimiser step the learnable logit scale is clamped (open_clip habit, DESIGN 1.5).
- Lead masking (each lead zeroed with probability ``lead_mask_prob``) is drawn from a generator keyed
  by (seed, epoch, batch, rank) rather than the global RNG, so that a resumed run sees exactly the
  masks an uninterrupted run would have seen.
- Validation runs on held-out *pretraining* pairs: the loss terms and ECG->report recall@1/5/10
  within the validation set (a retrieved report counts when its text equals the ECG's own report,
  since simulated and machine reports repeat verbatim).
- Each training step reseeds torch's generator from (seed, epoch, batch, rank), so dropout too is the
  same in a resumed run as in an uninterrupted one.
"""
from __future__ import annotations

import math
import zlib

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

RECALL_KS = (1, 5, 10)


def mask_leads(ecg: Tensor, p: float, key: tuple[int, ...]) -> Tensor:
    """Zero each lead of each ECG with probability ``p``, reproducibly from ``key``."""
    if p <= 0:
        return ecg
    rng = np.random.default_rng([int(k) for k in key])
    keep = torch.from_numpy(rng.random(ecg.shape[:2]) >= p).to(device=ecg.device, dtype=ecg.dtype)
    return ecg * keep.unsqueeze(-1)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear from 0 to 1 over ``warmup_steps``, then cosine down to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return _cosine(min(1.0, (step - warmup_steps) / span), min_ratio)


def cosine_restarts(step: int, period: int, min_ratio: float) -> float:
    """LR multiplier of torch's CosineAnnealingWarmRestarts (T_mult 1): cosine from 1 to
    ``min_ratio`` over ``period`` steps, then again from 1."""
    period = max(1, period)
    return _cosine((step % period) / period, min_ratio)


def _cosine(progress: float, min_ratio: float) -> float:
    """Half a cosine from 1 (progress 0) down to ``min_ratio`` (progress 1)."""
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES = ("warmup_cosine", "cosine_restarts")


PRETRAINED_PREFIX = "text_encoder.model."  # the Hugging Face text model inside MELP


def param_groups(model: nn.Module, weight_decay: float, lr: float, pretrained_lr_scale: float = 1.0,
                 decay_all: bool = False) -> list[dict]:
    """Trainable parameters split into decayed (matrices; with ``decay_all`` every parameter) and not
    decayed (norms, biases, scales), and into the pretrained text model (at ``lr * pretrained_lr_scale``)
    and everything else (at ``lr``)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decays = decay_all or not (p.ndim < 2 or "logit_scale" in name or "log_scale" in name)
        groups.setdefault((decays, name.startswith(PRETRAINED_PREFIX)), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0,
             "lr": lr * (pretrained_lr_scale if pretrained else 1.0)}
            for (decays, pretrained), params in sorted(groups.items())]


def recall_at_k(ecg_emb: Tensor, text_emb: Tensor, text_ids: Tensor, ks=RECALL_KS) -> dict[str, float]:
    """ECG->report recall@k: the ECG's own report text is among the top-k reports by cosine."""
    sims = ecg_emb.float() @ text_emb.float().T  # (N, N), both L2-normalised
    k_max = min(max(ks), sims.shape[1])
    top = sims.topk(k_max, dim=1).indices  # (N, k_max)
    hits = text_ids[top] == text_ids.unsqueeze(1)  # identical report text counts as a hit
    return {f"ecg2report_r{k}": hits[:, : min(k, k_max)].any(dim=1).float().mean().item() for k in ks}


def report_ids(reports: list[str]) -> Tensor:
    """A stable integer per report text (so identical reports can be recognised after a gather)."""
    return torch.tensor([zlib.crc32(r.encode("utf-8")) for r in reports], dtype=torch.int64)


def clamp_logit_scales(model: nn.Module) -> None:
    """Call ``clamp_()`` on every sub-module that offers it (the losses' LogitScale)."""
    for module in model.modules():
        if module is not model and hasattr(module, "clamp_") and callable(module.clamp_):
            module.clamp_()


class MELPLightning(L.LightningModule):
    def __init__(self, model: nn.Module, optim: dict, lead_mask_prob: float = 0.5, seed: int = 0,
                 config: dict | None = None):
        super().__init__()
        self.model = model
        self.optim = dict(optim)
        self.lead_mask_prob = float(lead_mask_prob)
        self.seed = int(seed)
        self.run_config = config or {}  # saved in every checkpoint (plain data)
        self._val_outputs: list[dict[str, Tensor]] = []

    # ------------------------------------------------------------------ training

    def forward(self, ecg: Tensor, tokens: dict) -> dict:
        return self.model(ecg, tokens)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        key = (self.seed, self.current_epoch, batch_idx, self.global_rank)
        ecg = mask_leads(batch["ecg"], self.lead_mask_prob, key)
        out = self.model(ecg, batch["tokens"])
        bs = ecg.shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({"train/global": out["loss_global"], "train/caption": out["loss_caption"],
                       "train/local": out["loss_local"]}, prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", out["logit_scale"], prog_bar=True, batch_size=bs)
        self.log("train/lr", max(g["lr"] for g in self.trainer.optimizers[0].param_groups), batch_size=bs)
        return out["loss"]

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip for a fused optimiser, for fear of a
        # gradient scaler; bf16 and fp32 have none (and fp16 runs get the unfused AdamW), so clip here.
        if not optimizer.defaults.get("fused"):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if not gradient_clip_val:
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def on_before_zero_grad(self, optimizer) -> None:
        # runs right after each optimiser step: keep the temperature parameter within its clamp
        clamp_logit_scales(self.model)

    def configure_optimizers(self):
        o = self.optim
        groups = param_groups(self.model, float(o["weight_decay"]), float(o["lr"]),
                              float(o.get("pretrained_lr_scale", 1.0)), bool(o.get("decay_all", False)))
        # fused: one kernel over all parameters instead of a dozen tensor ops each (CPU and CUDA).
        # Not under fp16, whose gradient scaler must unscale before configure_gradient_clipping clips,
        # nor under sharding strategies (FSDP, DeepSpeed), which clip their own way.
        from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

        fused = (self.trainer.precision not in ("16-mixed", "16")
                 and type(self.trainer.strategy) in (SingleDeviceStrategy, DDPStrategy)
                 and all(p.device.type in ("cpu", "cuda") for g in groups for p in g["params"]))
        optimizer = torch.optim.AdamW(groups, lr=float(o["lr"]), betas=tuple(float(b) for b in o["betas"]),
                                      eps=float(o.get("eps", 1e-8)), fused=fused)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(o.get("warmup_steps", 0))
        min_ratio = float(o.get("min_lr", 0.0)) / float(o["lr"])
        kind = o.get("schedule", "warmup_cosine")
        if kind not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {kind!r}")
        if kind == "cosine_restarts":
            if warmup:
                raise ValueError("optim.schedule cosine_restarts has no warm-up: set optim.warmup_steps to 0")
            epochs = max(1, int(self.trainer.max_epochs or 1))
            period = max(1, total // epochs) * int(o.get("restart_epochs", 50))

        def schedule(step: int) -> float:  # a plain function: LambdaLR does not save it in checkpoints
            if kind == "cosine_restarts":
                return cosine_restarts(step, period, min_ratio)
            return warmup_cosine(step, warmup, total, min_ratio)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.model(batch["ecg"], batch["tokens"])
        bs = batch["ecg"].shape[0]
        self.log_dict({"val/loss": out["loss"], "val/global": out["loss_global"],
                       "val/caption": out["loss_caption"], "val/local": out["loss_local"]},
                      batch_size=bs, sync_dist=True)
        ecg_emb, text_emb = self._embeddings(batch, out)
        self._val_outputs.append({"ecg": ecg_emb.detach(), "text": text_emb.detach(),
                                  "text_id": batch["report_id"], "index": batch["index"]})

    def _embeddings(self, batch: dict, out: dict) -> tuple[Tensor, Tensor]:
        """Global ECG and report embeddings, reusing the forward's when it returned them."""
        if "ecg_embedding" in out and "text_embedding" in out:
            return out["ecg_embedding"], out["text_embedding"]
        return (self.model.encode_ecg(batch["ecg"])["embedding"],
                self.model.encode_text(batch["tokens"])["embedding"])

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        local = {k: torch.cat([o[k] for o in self._val_outputs]) for k in self._val_outputs[0]}
        self._val_outputs.clear()
        if self.trainer.world_size > 1:  # every rank holds the same count (DistributedSampler pads)
            local = {k: v.flatten(0, 1) for k, v in self.all_gather(local).items()}
        # drop the sampler's padding duplicates so each held-out pair counts once
        _, first = np.unique(local["index"].cpu().numpy(), return_index=True)
        first = torch.from_numpy(first).to(local["index"].device)
        rec = recall_at_k(local["ecg"][first], local["text"][first], local["text_id"][first])
        self.log_dict({f"val/{k}": v for k, v in rec.items()}, prog_bar=True, rank_zero_only=False)

    # ------------------------------------------------------------------ exact resume

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Every step draws its dropout from a generator seeded by its position, not from a stream that
        # Lightning's own set-up work consumes differently in a fresh and in a resumed run.
        torch.manual_seed(step_seed(self.seed, self.current_epoch, batch_idx, self.global_rank))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["melp"] = {"config": self.run_config}


def step_seed(*key: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence mixes them well)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)[0] >> np.uint64(1))
