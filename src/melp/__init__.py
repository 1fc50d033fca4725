"""MELP: multi-scale (token, beat, rhythm) ECG-language pretraining.

Public API (imported lazily so that `import melp` is cheap):
    melp.read_record(path)      -> Record (signal in mV, fs, canonical leads, metadata)
    melp.MELP(config)           the model; melp.MELP.from_preset("tiny" | "paper" | "base" | "large")
    melp.load(model_dir)        a saved model folder, ready for embed_ecg / embed_text / zero_shot / generate
    melp.keep_freed_host_memory()  keep freed memory for reuse (faster CPU training and inference;
                                the `melp` commands do it): call it first, before any tensor exists
"""
from __future__ import annotations

import os

# torch's CPU threads are GNU OpenMP's, which spin 300,000 times before an idle one sleeps. On a
# small or shared CPU a spinning thread holds the core that the thread it waits for needs: beside one
# busy process on the 2-core machine the demo's training step took 1.0-5.9 s instead of 0.7 s (threads
# sleeping at once), while sleeping at once costs 1.36x on an idle machine. 10,000 spins keep the
# idle step within 5% of the default and the busy one at 1.0 s (bench/openmp_spin.py). libgomp
# reads this once, when torch loads; a value set by the user is kept.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"

_LAZY = {
    "read_record": ("melp.data.readers", "read_record"),
    "Record": ("melp.data.readers", "Record"),
    "PreprocessConfig": ("melp.data.preprocess", "PreprocessConfig"),
    "preprocess": ("melp.data.preprocess", "preprocess"),
    "MELP": ("melp.models.melp", "MELP"),
    "MELPConfig": ("melp.models.config", "MELPConfig"),
    "load": ("melp.models.melp", "load"),
    "keep_freed_host_memory": ("melp.train.host_memory", "keep_freed_host_memory"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'melp' has no attribute {name!r}")
