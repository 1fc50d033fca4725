"""Micro training runs for tests and bench/faults.py: a simulated MIMIC-IV-ECG-layout cache, a micro
model (the tiny preset's structure, narrower; a small random BERT as text model) so that each `melp
pretrain` takes seconds, and kill -9 points injected into such a run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from melp.train.config import apply_overrides, load_config


def micro_model_yaml(path: Path, text_dir: Path) -> Path:
    """The tiny preset's structure at a width that trains in milliseconds per step."""
    from melp.models.config import MELPConfig

    cfg = MELPConfig.from_preset("tiny").to_dict()
    cfg["name"] = "micro"
    cfg["embed_dim"] = 32
    cfg["ecg"].update(conv_dim=16, conv_kernels=[5, 2, 2], conv_strides=[5, 2, 2], width=32, layers=1,
                      heads=2, ffn_dim=64, pos_conv_kernel=8, pos_conv_groups=4)
    cfg["poolers"].update(caption_queries=8, caption_heads=2, n_beats=4, beat_heads=2)
    cfg["decoder"].update(width=32, layers=1, heads=2)
    cfg["text"].update(source=str(text_dir), max_length=48)
    cfg["preprocess"].update(fs=100)
    path.write_text(yaml.safe_dump(cfg))
    return path


def micro_setup(root: Path) -> dict:
    """The micro training config, on a 96-record simulated MIMIC-IV-ECG-layout cache under ``root``."""
    from melp import synth
    from melp.data.adapters import get_adapter
    from melp.data.cache import build_cache
    from melp.data.preprocess import PreprocessConfig
    from melp.models.text_encoder import build_random_text_model

    synth.export("mimic-iv-ecg", root / "mimic", n=96, seed=3)
    build_cache(get_adapter("mimic-iv-ecg"), root / "mimic", root / "cache", PreprocessConfig(fs=100),
                progress=False)
    text = build_random_text_model(root / "text", hidden_size=32, layers=2, heads=2, intermediate_size=64)
    model_yaml = micro_model_yaml(root / "micro_model.yaml", text)
    return apply_overrides(load_config("tiny"), [
        f"model={model_yaml}", f"data.cache={root / 'cache'}", "data.batch_size=8",
        # 96 records split 98/1/1 by subject leave (almost) no val pairs: validate on train pairs here
        "data.val_split=train", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "optim.warmup_steps=3",
    ])


def write_config(cfg: dict, path: Path, **sets) -> Path:
    cfg = apply_overrides(cfg, [f"{k}={v}" for k, v in sets.items()])
    path.write_text(yaml.safe_dump(cfg))
    return path


def melp_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "melp.cli", *args]


def run_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")  # the same thread count in every run: same float results
    return env


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


# Kill points, injected into a `melp pretrain` process: SIGKILL itself at an exact place.
KILL_POINTS = {
    # the 14th optimiser step, in the second epoch (11 steps per epoch)
    "step": """
from melp.train.lightning_module import MELPLightning
step = MELPLightning.training_step
def killing_step(self, batch, i):
    if self.global_step == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, batch, i)
MELPLightning.training_step = killing_step
""",
    # half-way through writing the second epoch-end checkpoint
    "checkpoint": """
import torch, melp.train.checkpoints as ck
save, calls = torch.save, []
def killing_save(obj, path, *a, **k):
    calls.append(path)
    save(obj, path, *a, **k)
    if len(calls) == 2:
        os.truncate(path, os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
ck.torch.save = killing_save
""",
    # in the final model-folder write, after the ECG weights and before the rename
    "model-folder": """
import melp.models.melp as m
save_file = m.save_file
def killing_save_file(*a, **k):
    save_file(*a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
m.save_file = killing_save_file
""",
}


KILL_RUN = {"data.val_split": "null", "trainer.max_epochs": 2}  # the run the kill points are placed in


def killed_run(config: Path, out: Path, point: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`melp pretrain` with ``config`` (written with KILL_RUN) that kill -9s itself at ``point``."""
    code = f"import os, signal, sys\n{KILL_POINTS[point]}\nfrom melp.cli import main\n" \
           f"sys.exit(main(['pretrain', '--config', {str(config)!r}, '--out', {str(out)!r}]))"
    return subprocess.run([sys.executable, "-c", code], env=run_env(), capture_output=True, text=True,
                          timeout=timeout)
