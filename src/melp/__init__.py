"""MELP: multi-scale (token, beat, rhythm) ECG-language pretraining.

Public API (imported lazily so that `import melp` is cheap):
    melp.read_record(path)      -> Record (signal in mV, fs, canonical leads, metadata)
    melp.MELP(config)           the model; melp.MELP.from_preset("tiny" | "paper" | "base" | "large")
    melp.load(model_dir)        a saved model folder, ready for embed_ecg / embed_text / zero_shot / generate
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "read_record": ("melp.data.readers", "read_record"),
    "Record": ("melp.data.readers", "Record"),
    "PreprocessConfig": ("melp.data.preprocess", "PreprocessConfig"),
    "preprocess": ("melp.data.preprocess", "preprocess"),
    "MELP": ("melp.models.melp", "MELP"),
    "MELPConfig": ("melp.models.config", "MELPConfig"),
    "load": ("melp.models.melp", "load"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'melp' has no attribute {name!r}")
