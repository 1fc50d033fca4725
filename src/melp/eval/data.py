"""Labelled ECG sets for evaluation, whatever their source.

An ``EvalSet`` is N records as fixed-length windows in millivolts (12 leads, canonical order, at
``fs``) with multi-hot labels over ``classes``, subject ids, splits, record ids and reports.
It comes from
- arrays: ``EvalSet.from_arrays(signals, labels, classes, fs=...)``;
- a cache built by ``melp prepare``: ``EvalSet.from_cache(ECGCache(path), task)`` (each record's
  first window; records without a label are left out where the benchmark requires one);
- a dataset folder as distributed: ``EvalSet.from_folder(root, dataset, task)`` reads every record
  through the dataset's adapter and the shared preprocessing into a temporary memmap (records that
  cannot be read are listed in ``rejects``, never dropped silently);
- the simulator: ``EvalSet.simulated(n, seed)`` (task ``synth``: the simulator's findings).
``load_eval_set(root, task)`` picks the right one for a command-line ``--root``.
"""
from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from melp.data.preprocess import PreprocessConfig, prepare_signal

# command-line task -> (adapter name, task name inside the adapter's table / the cache)
TASKS: dict[str, tuple[str | None, str]] = {
    "ptbxl-super": ("ptbxl", "super"),
    "ptbxl-sub": ("ptbxl", "sub"),
    "ptbxl-form": ("ptbxl", "form"),
    "ptbxl-rhythm": ("ptbxl", "rhythm"),
    "cpsc2018": ("cpsc2018", "cpsc2018"),
    "csn": ("csn", "csn"),
    "code15": ("code15", "code15"),
    "ludb": ("ludb", "ludb"),
    "cinc": ("cinc", "cinc"),
    "synth": (None, "synth"),
}
# Zero-shot uses the test split of the paper's benchmarks and every record of the others.
PAPER_BENCHMARKS = {"ptbxl-super", "ptbxl-sub", "ptbxl-form", "ptbxl-rhythm", "cpsc2018", "csn", "code15"}


@dataclasses.dataclass
class EvalSet:
    name: str
    classes: list[str]
    labels: np.ndarray  # (N, C) float32 multi-hot
    fs: float
    record_ids: np.ndarray  # (N,) str
    subjects: np.ndarray  # (N,) str
    splits: np.ndarray  # (N,) str: train / val / test
    reports: list[str]
    load: Callable[[np.ndarray], np.ndarray]  # indices -> (k, 12, n) float32 mV
    rejects: list = dataclasses.field(default_factory=list)  # (record, reason) not in the set

    def __len__(self) -> int:
        return len(self.labels)

    def signals(self, idx) -> np.ndarray:
        return np.asarray(self.load(np.asarray(idx, dtype=np.int64)), dtype=np.float32)

    def subset(self, idx) -> "EvalSet":
        idx = np.asarray(idx, dtype=np.int64)
        parent = self.load
        return dataclasses.replace(
            self, labels=self.labels[idx], record_ids=self.record_ids[idx], subjects=self.subjects[idx],
            splits=self.splits[idx], reports=[self.reports[i] for i in idx],
            load=lambda j: parent(idx[np.asarray(j, dtype=np.int64)]))

    def split(self, name: str | None) -> "EvalSet":
        """The records of one split (``None`` or ``"all"``: everything)."""
        if name in (None, "all"):
            return self
        keep = np.flatnonzero(self.splits == name)
        if keep.size == 0:
            raise ValueError(f"{self.name}: no record in split {name!r} "
                             f"(splits present: {sorted(set(self.splits))})")
        return self.subset(keep)

    @classmethod
    def from_arrays(cls, signals, labels, classes, fs: float = 500, subjects=None, splits=None,
                    record_ids=None, reports=None, name: str = "arrays") -> "EvalSet":
        signals = np.asarray(signals, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.float32)
        n = len(signals)
        if signals.ndim != 3 or signals.shape[1] != 12:
            raise ValueError(f"signals must be (N, 12, T) in mV, got {signals.shape}")
        if labels.shape != (n, len(classes)):
            raise ValueError(f"labels must be (N={n}, C={len(classes)}), got {labels.shape}")
        ids = np.asarray(record_ids if record_ids is not None else [str(i) for i in range(n)], dtype=str)
        return cls(name=name, classes=list(classes), labels=labels, fs=float(fs), record_ids=ids,
                   subjects=np.asarray(subjects if subjects is not None else ids, dtype=str),
                   splits=np.asarray(splits if splits is not None else ["test"] * n, dtype=str),
                   reports=list(reports) if reports is not None else [""] * n,
                   load=lambda idx: signals[idx])

    @classmethod
    def from_table(cls, table, task: str, classes: list[str], fs: float, load, name: str,
                   rejects=()) -> "EvalSet":
        """From an adapter/cache table with a ``labels_<task>`` column of class-name lists."""
        column = f"labels_{task}"
        if column not in table.columns:
            raise ValueError(f"{name}: no column {column!r}; tasks present: "
                             f"{[c[7:] for c in table.columns if c.startswith('labels_')]}")
        position = {c: i for i, c in enumerate(classes)}
        labels = np.zeros((len(table), len(classes)), dtype=np.float32)
        for r, names in enumerate(table[column]):
            for c in ([] if names is None else list(names)):
                if c not in position:
                    raise ValueError(f"{name}: record {table['record_id'].iloc[r]} has label {c!r} "
                                     f"outside the task's classes")
                labels[r, position[c]] = 1.0
        reports = table["report"].fillna("").astype(str).tolist() if "report" in table else [""] * len(table)
        return cls(name=name, classes=list(classes), labels=labels, fs=float(fs),
                   record_ids=table["record_id"].astype(str).to_numpy(),
                   subjects=table["subject_id"].astype(str).to_numpy(),
                   splits=table["split"].astype(str).to_numpy(), reports=reports, load=load,
                   rejects=list(rejects))

    @classmethod
    def from_cache(cls, cache, task: str | None, name: str | None = None) -> "EvalSet":
        """``task=None`` gives a set without labels (retrieval, generation)."""
        table = cache.index.reset_index(drop=True)
        rows = np.arange(len(table))
        if "window" in table.columns:  # caches built with windows="all": a record's first window
            rows = np.flatnonzero(table["window"].to_numpy() == 0)
        if task is None:
            table = table.assign(labels_none=[[] for _ in range(len(table))])
            task, classes = "none", []
        else:
            if task not in cache.tasks:
                raise ValueError(f"cache {getattr(cache, 'path', '')} has no task {task!r}; "
                                 f"it has {sorted(cache.tasks)}")
            classes = list(cache.tasks[task])
            if getattr(cache, "meta", {}).get("require_label", {}).get(task, False):
                labelled = np.asarray([len(v) > 0 for v in table[f"labels_{task}"]])
                rows = rows[labelled[rows]]  # the benchmark keeps records with at least one label
        table = table.iloc[rows].reset_index(drop=True)
        return cls.from_table(table, task, classes, cache.preprocess.fs,
                              load=lambda idx: cache.signals(rows[idx]), name=name or task)

    @classmethod
    def from_folder(cls, root: str | Path, dataset: str, task: str | None, cfg: PreprocessConfig,
                    name: str | None = None, allow_missing_leads: bool = False,
                    only_split: str | None = None) -> "EvalSet":
        """Read a dataset folder as distributed via its adapter, preprocessing each record once
        (``only_split``: read just that split's records, e.g. the test split for zero-shot)."""
        from tqdm.auto import tqdm

        from melp.data.adapters import get_adapter
        from melp.data.readers import read_record

        adapter = get_adapter(dataset)
        table, tasks, rejects = adapter.load_table(str(root))
        rejects = list(rejects)
        if task is not None and task not in tasks:
            raise ValueError(f"{dataset} at {root}: no task {task!r}; tasks: {sorted(tasks)}")
        if task is not None and getattr(adapter, "REQUIRE_LABEL", {}).get(task, False):
            table = table[[len(v) > 0 for v in table[f"labels_{task}"]]].reset_index(drop=True)
        if only_split not in (None, "all"):
            table = table[table["split"] == only_split].reset_index(drop=True)
            if table.empty:
                raise ValueError(f"{dataset} at {root}: no record in split {only_split!r}")
        window = dataclasses.replace(cfg, windows="first")
        tmp = tempfile.TemporaryDirectory(prefix="melp-eval-")
        store = np.lib.format.open_memmap(Path(tmp.name) / "signals.npy", mode="w+", dtype=np.float32,
                                          shape=(len(table), 12, window.n_samples))
        ok = np.zeros(len(table), dtype=bool)
        zero_filled = []
        for r, path in enumerate(tqdm(table["path"].tolist(), desc=f"reading {dataset}", unit="rec")):
            try:
                record = read_record(path, allow_missing_leads=allow_missing_leads)
                store[r] = prepare_signal(record.signal, record.fs, window)[0]
                ok[r] = True
            except Exception as err:  # a damaged record is reported with its reason, not hidden
                rejects.append((str(path), f"{type(err).__name__}: {err}"))
                continue
            if record.meta.get("missing_leads"):
                zero_filled.append(f"{path} ({', '.join(record.meta['missing_leads'])})")
        if zero_filled:
            warnings.warn(f"{dataset}: {len(zero_filled)} record(s) with zero-filled missing leads, e.g. {zero_filled[0]}")
        if rejects:
            warnings.warn(f"{dataset}: {len(rejects)} record(s) left out, e.g. {rejects[0][0]}: {rejects[0][1]}")
        keep = np.flatnonzero(ok)
        table = table.iloc[keep].reset_index(drop=True)

        def load(idx, _store=store, _keep=keep, _tmp=tmp):  # the closure keeps the temp folder alive
            return _store[_keep[idx]]

        if task is None:
            table = table.assign(labels_none=[[] for _ in range(len(table))])
            return cls.from_table(table, "none", [], window.fs, load, name or dataset, rejects)
        return cls.from_table(table, task, list(tasks[task]), window.fs, load, name or task, rejects)

    @classmethod
    def simulated(cls, n: int = 400, seed: int = 0, splits=(0.6, 0.1, 0.3)) -> "EvalSet":
        """The simulator's findings on ``n`` fresh records; splits drawn by subject."""
        from melp import synth

        batch = synth.simulate(n, seed)
        subjects = np.asarray(batch.subject_ids, dtype=str)
        return cls(name="synth", classes=list(synth.FINDINGS),
                   labels=np.asarray(batch.findings, dtype=np.float32), fs=500.0,
                   record_ids=np.asarray([f"sim{seed}-{i}" for i in range(n)]), subjects=subjects,
                   splits=subject_splits(subjects, splits, seed), reports=list(batch.reports),
                   load=lambda idx, s=batch.signals: np.asarray(s)[idx])


def subject_splits(subjects: np.ndarray, fractions=(0.6, 0.1, 0.3), seed: int = 0) -> np.ndarray:
    """train/val/test by subject (every record of a subject in one split), fixed by ``seed``."""
    unique = np.unique(subjects)
    rng = np.random.default_rng(seed)
    order = rng.permutation(unique)
    cut1 = int(round(fractions[0] * len(order)))
    cut2 = cut1 + int(round(fractions[1] * len(order)))
    name = {s: "train" for s in order[:cut1]} | {s: "val" for s in order[cut1:cut2]} | \
           {s: "test" for s in order[cut2:]}
    return np.asarray([name[s] for s in subjects])


def is_cache(root: str | Path) -> bool:
    return (Path(root) / "index.parquet").is_file()


def load_eval_set(root: str | Path | None, task: str, cfg: PreprocessConfig | None = None,
                  n: int = 400, seed: int = 0, allow_missing_leads: bool = False,
                  only_split: str | None = None) -> EvalSet:
    """What a command's ``--dataset TASK --root DATA_OR_CACHE`` names.

    ``task`` is one of ``TASKS`` (or, for a cache, any of its own task names). ``root`` is a cache
    folder (``index.parquet``), a dataset folder as distributed (needs ``cfg``, the model's
    preprocessing), or, for ``synth``, ``None`` to simulate ``n`` records with ``seed``.
    ``only_split`` spares reading the other splits of a dataset folder (caches are read lazily).
    """
    adapter, inner = TASKS.get(task, (None, task))
    if root is None:
        if task != "synth":
            raise ValueError(f"task {task!r} needs --root (a dataset folder or a cache)")
        return EvalSet.simulated(n, seed)
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"--root {root} does not exist")
    if is_cache(root):
        from melp.data.cache import ECGCache

        return EvalSet.from_cache(ECGCache(root), inner, name=task)
    if adapter is None:
        raise ValueError(f"{root} is not a cache (no index.parquet) and task {task!r} has no adapter "
                         f"to read a dataset folder; tasks: {sorted(TASKS)}")
    if cfg is None:
        cfg = PreprocessConfig()
    return EvalSet.from_folder(root, adapter, inner, cfg, name=task, allow_missing_leads=allow_missing_leads,
                               only_split=only_split)


def as_eval_set(data, task: str, cfg: PreprocessConfig | None = None) -> EvalSet:
    """Accept what the Python API promises: an ``EvalSet``, an ``ECGCache``, a path (cache or
    dataset folder), or arrays ``(signals, labels, classes)`` / ``(signals, labels, classes, fs)``."""
    if isinstance(data, EvalSet):
        return data
    if isinstance(data, (tuple, list)):
        if len(data) not in (3, 4):
            raise ValueError("arrays must be (signals, labels, classes) or (signals, labels, classes, fs)")
        return EvalSet.from_arrays(*data[:3], fs=data[3] if len(data) == 4 else 500, name=task)
    if isinstance(data, (str, Path)):
        return load_eval_set(data, task, cfg)
    if hasattr(data, "index") and hasattr(data, "tasks") and hasattr(data, "signals"):
        inner = TASKS.get(task, (None, task))[1]
        return EvalSet.from_cache(data, inner if inner in data.tasks else task, name=task)
    raise TypeError(f"cannot evaluate on a {type(data).__name__}; pass an EvalSet, an ECGCache, a path "
                    f"or (signals, labels, classes)")


def default_split(task: str, data: EvalSet | None = None) -> str:
    """Zero-shot reads the test split of the paper's benchmarks, every record elsewhere."""
    if task not in PAPER_BENCHMARKS:
        return "all"
    return "test" if data is None or "test" in set(data.splits) else "all"
