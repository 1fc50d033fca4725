"""The server's work on a record, outside HTTP: read it, run the model on batches of windows, draw it.

Reading and windowing are ``melp classify``'s (``melp.eval.single.checked_windows``); the model
calls are the model's own ``embed_ecg`` / ``embed_text`` / ``generate``, so the server's numbers are
the command line's. These functions are synchronous; the app runs them off the event loop.
"""
from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

import numpy as np

# The page's starting class list: the PTB-XL superclasses and common rhythms, each as the shipped
# description (melp/eval/class_descriptions.yaml); the page lets the user edit it.
DEFAULT_LABELS_FROM = (("ptbxl-super", ("NORM", "MI", "STTC", "CD", "HYP")),
                       ("ptbxl-rhythm", ("SR", "AFIB", "AFLT", "STACH", "SBRAD", "PACE")))
MAX_LABELS = 100
MAX_LABEL_CHARS = 300


def default_labels() -> list[str]:
    from melp.eval.descriptions import default_descriptions

    shipped = default_descriptions()
    labels = []
    for section, names in DEFAULT_LABELS_FROM:
        for name in names:
            entry = shipped[section][name]
            labels.append(entry if isinstance(entry, str) else entry[0])  # the first paraphrase
    return labels


def check_labels(labels) -> list[str]:
    """A ValueError naming what is wrong with a label list (empty, not text, blank, repeated, too many)."""
    if not isinstance(labels, list) or not labels:
        raise ValueError("labels is empty: give at least one label (free text, e.g. \"atrial fibrillation\")")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"{len(labels)} labels: at most {MAX_LABELS} per request")
    for label in labels:
        if not isinstance(label, str):
            raise ValueError(f"label {label!r} is not text: labels are free-text strings")
        if not label.strip():
            raise ValueError(f"labels must not be blank: {labels}")
        if len(label) > MAX_LABEL_CHARS:
            raise ValueError(f"label {label[:40]!r}... is longer than {MAX_LABEL_CHARS} characters")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"labels given twice: {repeated}")
    return labels


@dataclass
class Loaded:
    """One uploaded record, read and cut into the model's windows."""
    name: str
    windows: np.ndarray  # (W, 12, n) at the model's rate
    record: object  # melp Record
    quality: object  # melp.data.quality.Quality
    warnings: list[str]

    def info(self, window_s: float) -> dict:
        meta = self.record.meta
        return {"name": self.name, "fs": float(self.record.fs),
                "duration_s": round(self.record.signal.shape[1] / self.record.fs, 3),
                "leads": [lead for lead in self.record.leads if lead not in meta.get("missing_leads", [])],
                "missing_leads": list(meta.get("missing_leads", [])),
                "windows": int(len(self.windows)), "window_s": float(window_s),
                "quality": {"passed": bool(self.quality.passed),
                            "flags": [{"name": f.name, "detail": f.detail, "fails": f.fails}
                                      for f in self.quality.flags]},
                "warnings": self.warnings}


def load_record(path, name: str, cfg, force: bool, fs: float | None = None) -> Loaded:
    """Read one record with ``melp classify``'s reader, quality gate and windowing (``fs``: the
    sampling rate of a CSV that carries none). The reader's warnings (zero-filled leads, quality
    flags) are returned, not printed."""
    from melp.eval.single import checked_windows

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        windows, record, quality = checked_windows(str(path), cfg, force, fs)
    notes = [str(w.message).replace(str(path), name) for w in caught]
    return Loaded(name, windows, record, quality, notes)


class ModelWork:
    """The batched model calls; all run on the one model thread (torch calls never overlap)."""

    def __init__(self, model):
        self.model = model
        self.fs = model.config.preprocess.fs
        self._label_vectors: dict[str, np.ndarray] = {}  # text embeddings of labels seen before

    def embed_windows(self, items: list[np.ndarray], key=None) -> list[np.ndarray]:
        """Per request, its windows' L2-normalised embeddings (W_i, D): one forward for all."""
        counts = [len(w) for w in items]
        vectors = self.model.embed_ecg(np.concatenate(items), fs=self.fs)
        return np.split(vectors, np.cumsum(counts)[:-1])

    def generate(self, items: list[np.ndarray], key) -> list[list[str]]:
        """Per request, a report per window (beam search); ``key`` = (beams, max_len)."""
        beams, max_len = key
        counts = [len(w) for w in items]
        texts = self.model.generate(np.concatenate(items), fs=self.fs, beams=beams, max_len=max_len)
        bounds = np.cumsum([0, *counts])
        return [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def label_vectors(self, labels: list[str]) -> np.ndarray:
        """(C, D) text embeddings, cached: a page sends the same class list with every record."""
        new = [label for label in dict.fromkeys(labels) if label not in self._label_vectors]
        if new:
            if len(self._label_vectors) > 4096:  # bounded memory for a long-running server
                self._label_vectors.clear()
            self._label_vectors.update(zip(new, self.model.embed_text(new)))
        return np.stack([self._label_vectors[label] for label in labels])


def rank(window_vectors: np.ndarray, labels: list[str], label_vectors: np.ndarray) -> list[dict]:
    """``melp classify``'s ranking: cosine of each window with each label, averaged over windows."""
    scores = (window_vectors @ label_vectors.T).mean(axis=0)
    order = np.argsort(-scores, kind="stable")
    return [{"label": labels[i], "score": float(scores[i])} for i in order]


def record_embedding(window_vectors: np.ndarray) -> np.ndarray:
    """The record's embedding: its windows' embeddings averaged and normalised (as ``embed_ecg``)."""
    mean = window_vectors.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


_PLOT_LOCK = threading.Lock()  # pyplot keeps global state: one figure at a time


def plot_png(loaded: Loaded, dpi: int = 100) -> bytes:
    """The 12-lead paper-style plot (``melp plot``'s) of the record's first 10 s, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from melp.synth.plot import plot_12lead

    record = loaded.record
    title = f"{loaded.name} | {record.fs:g} Hz | {record.signal.shape[1] / record.fs:g} s"
    with _PLOT_LOCK:
        fig = plot_12lead(record.signal, record.fs, list(record.leads), title=title)
        try:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=dpi)
        finally:
            plt.close(fig)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()
