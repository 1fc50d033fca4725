"""The paper-size model on an accelerator: the authors' outputs reproduced there, and its training speed.

1. Converts the official-melp fixture checkpoint (tests/official_checkpoint.py) and prints, per output,
   the largest absolute difference from what the authors' code computed (fp32 on CPU), with the model
   run in fp32 on the chosen device (TF32 off).
2. Times the paper recipe's training step (bf16 autocast, AdamW with weight decay on every
   parameter) at the paper's per-GPU batch of 64 ECGs, against the same step in fp32 in the same run,
   alternating the two; prints each round and the losses (finite, and the bf16 and fp32 losses of the
   first step close).

    MELP_OFFICIAL_FIXTURE=../shared/fixtures/official-melp python bench/paper_gpu.py [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from official_checkpoint import fixture_dir, write_lightning_checkpoint  # noqa: E402

import melp  # noqa: E402
from melp.models.official import convert_official  # noqa: E402
from melp.train.lightning_module import param_groups  # noqa: E402

CANONICAL_FROM_MIMIC = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]


def compare(model, fixture: Path, device: str) -> None:
    inputs, out = np.load(fixture / "inputs.npz"), np.load(fixture / "outputs.npz")
    texts = json.loads((fixture / "reports.json").read_text())
    ecg = torch.from_numpy(inputs["ecg_mimic_order"][:, CANONICAL_FROM_MIMIC].copy()).to(device)
    n = inputs["attention_mask"].sum(axis=1)
    with torch.no_grad():
        e = model.encode_ecg(ecg)
        tokens = model.tokenize(texts["reports"])
        t = model.encode_text(tokens)
        logits = model.decoder.vocab(model.decoder.hidden(t["states"][:, :-1], e["tokens"]))
        losses = model(ecg, {k: v.to(device) for k, v in tokens.items()})
        prompts = model.embed_text(texts["prompts"])

    def err(name, ours, theirs):
        ours = ours.detach().float().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
        print(f"  {name:<26} {np.abs(ours - theirs).max():.1e}")

    print(f"largest absolute difference from the authors' outputs, fp32 on {device}:")
    err("global ECG embedding", e["embedding"], out["ecg_global"])
    err("beat embeddings", e["beats"], out["ecg_beats"])
    err("ECG tokens", e["tokens"], out["ecg_tokens"])
    err("probe features", e["features"], out["ecg_features"])
    err("report embedding", t["embedding"], out["text_global"])
    err("prompt embeddings", prompts, out["prompt_global"])
    err("caption logits (first 5)", logits[:, :5], out["caption_logits_first5"])
    logp = logits.float().log_softmax(-1).cpu()
    target = logp.gather(-1, torch.from_numpy(out["caption_labels"])[:, : logp.shape[1], None])[..., 0]
    real = np.concatenate([target[b, : k - 1].numpy() - out["caption_target_logprob"][b, : k - 1] for b, k in enumerate(n)])
    print(f"  {'caption target log-probs':<26} {np.abs(real).max():.1e}")
    for name, theirs in (("loss_global", out["loss_clip_w1"]), ("loss_caption", out["loss_caption_w2"] / 2),
                         ("loss_local", out["loss_local_w02"] / 0.2)):
        err(name, losses[name], theirs)


def train_steps(model, device: str, batch: int, rounds: int) -> None:
    reports = json.loads((fixture_dir() / "reports.json").read_text())["reports"]
    rng = np.random.default_rng(0)
    ecg = torch.from_numpy(rng.random((batch, 12, 5000), dtype=np.float32)).to(device)
    tokens = {k: v.to(device) for k, v in model.tokenize([reports[i % 3] for i in range(batch)]).items()}
    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, 0.2, 2e-4, decay_all=True), lr=2e-4, betas=(0.9, 0.95))

    def step(bf16: bool) -> tuple[float, float]:
        torch.cuda.synchronize() if device == "cuda" else None
        start = time.perf_counter()
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss = model(ecg, tokens)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize() if device == "cuda" else None
        return time.perf_counter() - start, float(loss.detach())

    for bf16 in (True, False):  # warm-up (kernels, allocator)
        step(bf16)
    print(f"training step, batch {batch}, AdamW (the paper recipe), alternating bf16 autocast and fp32:")
    for r in range(rounds):
        (tb, lb), (tf, lf) = step(True), step(False)
        print(f"  round {r + 1}: bf16 {tb * 1e3:7.1f} ms ({batch / tb:6.1f} ECG/s, loss {lb:.3f}) | "
              f"fp32 {tf * 1e3:7.1f} ms ({batch / tf:6.1f} ECG/s, loss {lf:.3f}) | ratio {tf / tb:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    fixture = fixture_dir()
    if fixture is None:
        raise SystemExit("set MELP_OFFICIAL_FIXTURE to shared/fixtures/official-melp")
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ckpt = write_lightning_checkpoint(fixture, Path(tmp) / "melp.ckpt")
        model_dir = convert_official(ckpt, Path(tmp) / "model", fixture / "text_model")
        print(f"checkpoint built and converted in {time.perf_counter() - start:.1f} s")
        model = melp.load(model_dir, device=args.device)
    compare(model, fixture, args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    train_steps(model, args.device, args.batch, args.rounds)


if __name__ == "__main__":
    main()
