"""One adapter per dataset: its original layout on disk -> one table (docs/architecture.md).

An adapter is a module with ``name``, ``load_table(root) -> (table, tasks, rejects)``,
``SPLIT_IS_OURS`` (True when the split was made here, so the cache publishes splits.csv) and
``REQUIRE_LABEL`` (tasks whose evaluation keeps only records with at least one label).
"""
from __future__ import annotations

import importlib
from types import ModuleType

ADAPTERS: dict[str, str] = {
    "mimic-iv-ecg": "melp.data.adapters.mimic",
    "ptbxl": "melp.data.adapters.ptbxl",
    "cpsc2018": "melp.data.adapters.cpsc2018",
    "csn": "melp.data.adapters.csn",
    "code15": "melp.data.adapters.code15",
    "ludb": "melp.data.adapters.ludb",
    "cinc": "melp.data.adapters.cinc",
    "folder": "melp.data.adapters.folder",
}


def get_adapter(name: str) -> ModuleType:
    if name not in ADAPTERS:
        raise KeyError(f"unknown dataset {name!r}; choose one of: {', '.join(ADAPTERS)}")
    return importlib.import_module(ADAPTERS[name])


__all__ = ["ADAPTERS", "get_adapter"]
