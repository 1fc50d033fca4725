"""Run a model over an ``EvalSet`` in batches (with a progress bar), and load a model folder."""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

# torch is imported inside the functions: the evaluation commands import this module to build
# their parsers, and `melp COMMAND --help` must not load torch.


def load_model(model_dir: str, needs_text: str | None = None, precision: str = "fp32", compile: bool = False):
    """``melp.load`` in evaluation mode on CPU/GPU as available. ``needs_text``: the command's name
    when it needs the text tower (an ECG-only model then stops it before any work, with the CLI's
    one-line error). ``precision``, ``compile``: of the ECG embeddings (``MELP.set_precision``)."""
    import torch

    import melp

    model = melp.load(model_dir, precision=precision, compile=compile)
    if needs_text:
        model.require_text(f"{needs_text} with {model_dir}")
    model.eval()
    if torch.cuda.is_available():
        model.cuda()
    return model


def embed_set(model, data, what: str = "embedding", batch_size: int = 64, desc: str | None = None) -> np.ndarray:
    """(N, D) ECG vectors of every record: ``what`` = ``embedding`` (global, L2-normalised; zero-shot
    and retrieval) or ``features`` (the linear-probe features)."""
    import torch

    if what not in ("embedding", "features"):
        raise ValueError(f"what must be 'embedding' or 'features', got {what!r}")
    fn = model.embed_ecg if what == "embedding" else model.ecg_features
    out = []
    n = len(data)
    with torch.no_grad():
        for start in tqdm(range(0, n, batch_size), desc=desc or f"ECG {what}", unit="batch",
                          disable=n <= batch_size):
            idx = np.arange(start, min(n, start + batch_size))
            out.append(np.asarray(fn(data.signals(idx), fs=data.fs), dtype=np.float32))
    if not out:
        raise ValueError(f"{data.name}: no record to embed")
    return np.concatenate(out)


def embed_texts(model, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """(N, D) L2-normalised text embeddings, batched."""
    import torch

    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(texts), batch_size), desc="text embedding", unit="batch",
                          disable=len(texts) <= batch_size):
            out.append(np.asarray(model.embed_text(list(texts[start:start + batch_size])), dtype=np.float32))
    return l2_normalize(np.concatenate(out))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
