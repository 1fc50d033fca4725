"""The authors'-format checkpoint of ``shared/fixtures/official-melp``, built from its skeleton.json.

Each key's value follows the rule in the fixture's README (seeded by the CRC-32 of the key), so the
checkpoint is exactly the one the authors' own code computed ``outputs.npz`` with.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch

FIXTURE_ENV = "MELP_OFFICIAL_FIXTURE"


def fixture_dir() -> Path | None:
    """The official-melp fixture folder: $MELP_OFFICIAL_FIXTURE, or beside the real-data folder, or
    ../shared/fixtures/official-melp from the checkout."""
    candidates = [os.environ.get(FIXTURE_ENV)]
    if os.environ.get("MELP_REAL_DATA"):
        candidates.append(str(Path(os.environ["MELP_REAL_DATA"]).parent / "fixtures" / "official-melp"))
    candidates.append(str(Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official-melp"))
    for c in candidates:
        if c and (Path(c) / "skeleton.json").is_file():
            return Path(c)
    return None


def _value(entry: dict, salt: str) -> torch.Tensor:
    shape, rule = tuple(entry["shape"]), entry["rule"]
    if rule in ("0.02*normal", "1+0.02*normal"):
        rng = np.random.default_rng(zlib.crc32((salt + entry["key"]).encode("utf-8")))
        x = rng.standard_normal(size=shape).astype(np.float32) * np.float32(0.02)
        if rule.startswith("1+"):
            x += np.float32(1.0)
        return torch.from_numpy(x)
    if rule == "log(1/0.07)":
        return torch.tensor(math.log(1 / 0.07), dtype=torch.float32)
    if rule == "ones":
        return torch.ones(shape, dtype=torch.float32)
    if rule in ("zeros", "keep"):  # "keep" here is only num_batches_tracked, 0 in a fresh model
        dtype = torch.int64 if entry["dtype"] == "int64" else torch.float32
        return torch.zeros(shape, dtype=dtype)
    raise ValueError(f"unknown rule {rule!r} for {entry['key']}")


def build_state_dict(fixture: Path) -> dict[str, torch.Tensor]:
    skeleton = json.loads((fixture / "skeleton.json").read_text())
    salt = skeleton.get("salt", "")
    state: dict[str, torch.Tensor] = {}
    for entry in skeleton["keys"]:
        if entry["rule"] == "tied":
            state[entry["key"]] = state[entry["tied_to"]]
        else:
            state[entry["key"]] = _value(entry, salt)
    return state


def write_lightning_checkpoint(fixture: Path, path: Path) -> Path:
    """``{"state_dict": ..., "hyper_parameters": ...}`` as Lightning saves the authors' model."""
    skeleton = json.loads((fixture / "skeleton.json").read_text())
    torch.save({"state_dict": build_state_dict(fixture), "hyper_parameters": skeleton.get("hparams", {}),
                "epoch": 0, "global_step": 0}, path)
    return path
