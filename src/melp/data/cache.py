"""The on-disk cache: every record of a dataset read once, preprocessed, stored as sharded memmaps.

Layout of a cache folder::

    plan.json            what is being built (dataset, preprocessing, shard size, table digest)
    table.parquet        the adapter's table, as planned
    shards/shard_00000.npy   (windows, 12, n) int16 (1 unit = ``scale`` mV) or float16 mV
    shards/shard_00000.json  which table rows/windows the shard holds, its rejects and its sha256
    manifest.json        shards completed so far (a restart skips them)
    index.parquet        the table, one row per stored window, + window, shard, offset, clipped,
                         missing_leads (zero-filled leads, with --allow-missing-leads), quality
                         (the signal-quality gate's verdict: ok, warn: FLAGS, fail: FLAGS, unchecked)
    meta.json            dataset, tasks and class lists, storage dtype/scale, counts, and the sha256
                         of every shard and table (written last; ``verify_cache`` checks them)
    preprocess.json      the PreprocessConfig (mV windows are stored; normalisation is at load time)
    rejects.csv          record, reason for every record that could not be used
    splits.csv           record_id, subject_id, split -- where the split was made by us

Every file is written to a temporary name, fsync'd, then renamed, so a ``kill -9`` never
leaves a half-written shard that looks whole. Workers process one shard (a contiguous chunk of
the table) at a time, so memory does not grow with the dataset.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from melp.atomic import atomic_write, sha256
from melp.data.preprocess import PreprocessConfig, prepare_signal

DTYPES = ("int16", "float16")
TABLES = ("index.parquet", "table.parquet", "rejects.csv", "splits.csv", "preprocess.json")
LOCK_FILE = ".lock"
QUICK_SHARDS = 4  # shards whose content `--verify --quick` checks, drawn at random
INT16_SCALE_MV = 0.001  # int16 storage: 1 unit = 1 uV, so +-32.767 mV fit
DEFAULT_SHARD_SIZE = 256  # records per shard: ~30 MB of int16 at 12 x 5000
# Test hook only: seconds each shard sleeps before it is written, so a test can kill mid-run.
_SLOW_ENV = "MELP_PREPARE_SLOW_SHARD_S"
# A path in a reject's reason: a run of non-blanks holding a '/' or '\' (it may hold ':' too),
# without the punctuation that ends its clause ("…/1.dat: truncated", "in /r/meta.csv, …").
_PATH = re.compile(r"\S*[/\\]\S*?(?=[:,;.)]?(?:\s|$))")


# ----------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(fileobj)`` on a temporary sibling of ``path`` (a name of its own, so two writers
    never share it), fsync it, rename it to ``path``."""
    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    atomic_write(path, to_file)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


# ----------------------------------------------------------------------------- building
def _shard_name(shard: int) -> str:
    return f"shard_{shard:05d}"


def quantize(x: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(W, 12, n) mV float32 -> storage dtype, and the number of clipped samples per window."""
    if dtype == "float16":
        limit = float(np.finfo(np.float16).max)
        clipped = np.count_nonzero(np.abs(x) > limit, axis=(1, 2))
        return np.clip(x, -limit, limit).astype(np.float16), clipped
    units = np.rint(x / INT16_SCALE_MV)
    clipped = np.count_nonzero(np.abs(units) > 32767, axis=(1, 2))
    return np.clip(units, -32767, 32767).astype(np.int16), clipped


def build_shard(task: dict) -> dict:
    """Read, preprocess and store one chunk of records (runs in a worker process).

    ``task``: shard id, cache dir, records [(table position, record_id, path)], preprocess dict,
    dtype. Returns the shard's summary (also written next to it as JSON).
    """
    from melp.data.readers import read_record  # imported in the worker, after the fork

    from melp.data.quality import assess

    cfg = PreprocessConfig.from_dict(task["preprocess"])
    policy = task.get("quality", "off")
    arrays, rows, rejects, missing, quality = [], [], [], {}, {}
    for pos, record_id, path in task["records"]:
        try:
            record = read_record(path, allow_missing_leads=task["allow_missing_leads"])
            if policy != "off":
                verdict = assess(record)
                if policy == "reject" and not verdict.passed:
                    raise ValueError(f"{path}: fails the signal-quality gate: {verdict.failures()}")
                quality[str(pos)] = verdict.label()
            windows = prepare_signal(record.signal, record.fs, cfg)
            if windows.shape[1] != 12:
                raise ValueError(f"{path}: expected 12 leads, got {windows.shape[1]}")
            if not np.any(windows):
                raise ValueError(f"{path}: no signal (every lead is flat zero)")
        except Exception as e:  # any unreadable record becomes a reject with its reason
            rejects.append([record_id, f"{type(e).__name__}: {e}"])
            continue
        stored, clipped = quantize(windows, task["dtype"])
        rows += [[pos, w, int(c)] for w, c in enumerate(clipped)]
        arrays.append(stored)
        if record.meta.get("missing_leads"):  # zero-filled leads (allow_missing_leads only)
            missing[str(pos)] = ",".join(record.meta["missing_leads"])
    delay = float(os.environ.get(_SLOW_ENV, "0") or 0)
    if delay:
        time.sleep(delay)
    n = cfg.n_samples
    data = np.concatenate(arrays) if arrays else np.zeros((0, 12, n), dtype=task["dtype"])
    shard_dir = Path(task["out"]) / "shards"
    name = _shard_name(task["shard"])
    atomic_write_bytes(shard_dir / f"{name}.npy", lambda f: np.save(f, data))
    summary = {"shard": task["shard"], "rows": rows, "rejects": rejects, "missing_leads": missing,
               "quality": quality, "records": len(task["records"]), "sha256": sha256(shard_dir / f"{name}.npy")}
    _write_json(shard_dir / f"{name}.json", summary)
    return summary


def _table_digest(table: pd.DataFrame) -> str:
    h = hashlib.sha1()
    for rid, path in zip(table["record_id"], table["path"]):
        h.update(f"{rid}\t{path}\n".encode())
    return h.hexdigest()


def _shard_complete(out: Path, shard: int, n_records: int) -> bool:
    """A shard counts as done when both files exist and agree with each other."""
    name = _shard_name(shard)
    try:
        summary = json.loads((out / "shards" / f"{name}.json").read_text())
        arr = np.load(out / "shards" / f"{name}.npy", mmap_mode="r")
    except (OSError, ValueError):
        return False
    return summary.get("records") == n_records and arr.shape[0] == len(summary["rows"])


class CacheBusyError(FileExistsError):
    """Another `melp prepare` holds the cache folder: a user error (one line, exit 2) like any --out clash."""


@contextlib.contextmanager
def writer_lock(out: Path):
    """Hold ``out/.lock`` for the build: a second writer stops with a clear error instead of racing
    (the OS drops the lock when the holder dies, even by kill -9)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBusyError(f"{out}: another `melp prepare` is writing this cache (it holds "
                               f"{out / LOCK_FILE}); wait for it to finish or use another --out") from None
        yield


def reason_group(reason: str) -> str:
    """The kind of a reject, to count them: each path becomes ``<path>``, and of a reader error
    ("Type: path: problem: details") only the type and the problem's first clause are kept.
    The full reason stays in rejects.csv; this is only the key of the printed counts."""
    parts = [p for p in _PATH.sub("<path>", reason).split(": ") if p != "<path>"]
    return ": ".join(parts[:2])[:80]


def build_cache(
    adapter,
    root: str | Path,
    out: str | Path,
    cfg: PreprocessConfig = PreprocessConfig(),
    workers: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    dtype: str = "int16",
    overwrite: bool = False,
    progress: bool = True,
    allow_missing_leads: bool = False,
    quality: str = "flag",
) -> dict:
    """Build (or resume building) the cache of one dataset; returns the counts of meta.json.

    ``allow_missing_leads`` keeps records that lack some of the 12 leads, zero-filled (the
    reader's option); by default they are rejected. ``quality`` (melp.data.quality): ``reject``
    records failing the signal-quality gate, ``flag`` them in the index's ``quality`` column, or
    ``off`` (no check; the column says ``unchecked``).
    """
    from melp.data.quality import POLICIES

    if quality not in POLICIES:
        raise ValueError(f"quality must be one of {POLICIES}, got {quality!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    out = Path(out)
    table, tasks, table_rejects = adapter.load_table(root)
    plan = {
        "dataset": adapter.name,
        "root": str(Path(root).resolve()),
        "preprocess": cfg.to_dict(),
        "shard_size": shard_size,
        "dtype": dtype,
        "allow_missing_leads": bool(allow_missing_leads),
        "quality": quality,
        "records": len(table),
        "table_digest": _table_digest(table),
    }
    with writer_lock(out):  # one writer per cache folder
        plan_path = out / "plan.json"
        if plan_path.exists() and not overwrite:
            old = json.loads(plan_path.read_text())
            if old != json.loads(json.dumps(plan)):
                raise RuntimeError(
                    f"{out}: holds a cache built with other settings or another table "
                    f"(plan.json differs); use a new --out or --overwrite"
                )
        elif any(p.name != LOCK_FILE for p in out.iterdir()) and not overwrite and not plan_path.exists():
            raise RuntimeError(f"{out}: exists and is not a melp cache; use a new --out or --overwrite")
        if overwrite and out.exists():
            for child in ("meta.json", "manifest.json", "index.parquet"):
                (out / child).unlink(missing_ok=True)
            for f in (out / "shards").glob("*") if (out / "shards").exists() else []:
                f.unlink()
        (out / "shards").mkdir(parents=True, exist_ok=True)
        (out / "meta.json").unlink(missing_ok=True)  # not finished until meta.json is back
        _write_json(plan_path, plan)
        atomic_write_bytes(out / "table.parquet", lambda f: table.to_parquet(f, index=False))

        n_shards = (len(table) + shard_size - 1) // shard_size
        chunks = [(s, range(s * shard_size, min(len(table), (s + 1) * shard_size))) for s in range(n_shards)]
        manifest_path = out / "manifest.json"
        listed = set(json.loads(manifest_path.read_text())["completed"]) if manifest_path.exists() else set()
        done = {s for s, rows in chunks if s in listed and _shard_complete(out, s, len(rows))}
        ids, paths = table["record_id"].tolist(), table["path"].tolist()
        pending = [
            {
                "shard": s,
                "out": str(out),
                "records": [(i, ids[i], paths[i]) for i in rows],
                "preprocess": cfg.to_dict(),
                "dtype": dtype,
                "allow_missing_leads": bool(allow_missing_leads),
                "quality": quality,
            }
            for s, rows in chunks
            if s not in done
        ]
        # Workers are forked before the progress bar exists (tqdm runs a monitor thread).
        pool = get_context("fork").Pool(workers) if workers > 1 and len(pending) > 1 else None
        bar = tqdm(total=len(table), initial=len(table) - sum(len(t["records"]) for t in pending),
                   unit="rec", desc=f"prepare {adapter.name}", disable=not progress)
        try:
            results = pool.imap_unordered(build_shard, pending) if pool else map(build_shard, pending)
            for summary in results:
                done.add(summary["shard"])
                _write_json(manifest_path, {"completed": sorted(done)})
                bar.update(summary["records"])
        finally:
            bar.close()
            if pool:  # every result is in by now, or an error stops the build: nothing left to wait for
                pool.terminate()
                pool.join()
        return _finalise(out, adapter, table, tasks, table_rejects, cfg, dtype, chunks)


def _finalise(out, adapter, table, tasks, table_rejects, cfg, dtype, chunks) -> dict:
    """Assemble index, rejects and splits from the shard summaries; write meta.json last."""
    parts, rejects, checksums = [], [(r, reason) for r, reason in table_rejects], {}
    for s, _ in chunks:
        summary = json.loads((out / "shards" / f"{_shard_name(s)}.json").read_text())
        shard = f"shards/{_shard_name(s)}.npy"
        checksums[shard] = summary.get("sha256") or sha256(out / shard)  # a shard of an older build
        rows = np.asarray(summary["rows"], dtype=np.int64).reshape(-1, 3)
        part = table.iloc[rows[:, 0]].reset_index(drop=True)
        part["window"] = rows[:, 1]
        part["shard"] = s
        part["offset"] = np.arange(len(rows))
        part["clipped"] = rows[:, 2]
        part["missing_leads"] = [summary["missing_leads"].get(str(pos), "") for pos in rows[:, 0]]
        part["quality"] = [summary.get("quality", {}).get(str(pos), "unchecked") for pos in rows[:, 0]]
        parts.append(part)
        rejects += [tuple(r) for r in summary["rejects"]]
    index = pd.concat(parts, ignore_index=True) if parts else table.iloc[:0].assign(
        window=0, shard=0, offset=0, clipped=0, missing_leads="", quality="")
    atomic_write_bytes(out / "index.parquet", lambda f: index.to_parquet(f, index=False))
    rejects_df = pd.DataFrame(rejects, columns=["record", "reason"])
    atomic_write_text(out / "rejects.csv", rejects_df.to_csv(index=False))
    if getattr(adapter, "SPLIT_IS_OURS", True):
        splits = table[["record_id", "subject_id", "split"]]
        atomic_write_text(out / "splits.csv", splits.to_csv(index=False))
    atomic_write_text(out / "preprocess.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    for name in TABLES:
        if (out / name).is_file():
            checksums[name] = sha256(out / name)
    written = int(index["record_id"].nunique()) if len(index) else 0
    counts = {
        "records_in_table": len(table),
        "records_written": written,
        "windows_written": len(index),
        "rejected": len(rejects_df),
        "rejected_by_reason": dict(Counter(reason_group(r) for r in rejects_df["reason"]).most_common()),
        "clipped_windows": int((index["clipped"] > 0).sum()) if len(index) else 0,
        "quality_flagged": int(index.loc[index["quality"].str.startswith(("warn", "fail")), "record_id"].nunique()),
    }
    meta = {
        "dataset": adapter.name,
        "tasks": tasks,
        "require_label": dict(getattr(adapter, "REQUIRE_LABEL", {})),
        "dtype": dtype,
        "scale_mv": INT16_SCALE_MV if dtype == "int16" else 1.0,
        "n_leads": 12,
        "n_samples": cfg.n_samples,
        "shards": len(chunks),
        "counts": counts,
        "checksums": checksums,  # sha256 of every shard and table: `melp prepare --verify` checks them
    }
    _write_json(out / "meta.json", meta)
    return counts


# ----------------------------------------------------------------------------- reading
class ECGCache:
    """A finished cache folder: ``cache.signal(i)`` / ``cache.signals(idx)`` give mV float32."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            hint = " (an unfinished build: run the same `melp prepare` again to resume)" if (
                self.path / "plan.json").exists() else ""
            raise FileNotFoundError(f"{self.path}: not a finished melp cache, no meta.json{hint}")
        self.meta = json.loads(meta_path.read_text())
        problem = checksum_problem(self.path, self.meta, "index.parquet")
        if problem:
            raise ValueError(f"{problem}; run `melp prepare --verify {self.path}`")
        self.index = pd.read_parquet(self.path / "index.parquet")
        for task in self.meta["tasks"]:  # Parquet gives numpy arrays back; the contract says lists
            col = f"labels_{task}"
            self.index[col] = [list(v) for v in self.index[col]]
        self.preprocess = PreprocessConfig.load(self.path / "preprocess.json")
        self.tasks: dict[str, list[str]] = self.meta["tasks"]
        self.dataset: str = self.meta["dataset"]
        self.scale = float(self.meta["scale_mv"])
        self._shard = self.index["shard"].to_numpy(np.int64)
        self._offset = self.index["offset"].to_numpy(np.int64)
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # memmaps are reopened in each DataLoader worker, not pickled
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    def _shard_array(self, shard: int) -> np.ndarray:
        arr = self._maps.get(shard)
        if arr is None:
            arr = np.load(self.path / "shards" / f"{_shard_name(shard)}.npy", mmap_mode="r")
            self._maps[shard] = arr
        return arr

    def signal(self, i: int) -> np.ndarray:
        """Window ``i`` as (12, n) float32 mV (not normalised)."""
        raw = self._shard_array(int(self._shard[i]))[int(self._offset[i])]
        return np.multiply(raw, np.float32(self.scale), dtype=np.float32)

    def raw(self, idx) -> np.ndarray:
        """Windows ``idx`` as stored, (k, 12, n) int16 units of ``self.scale`` mV (or float16 mV),
        one sorted memmap read per shard."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), 12, self.meta["n_samples"]), dtype=self.meta["dtype"])
        shards = self._shard[idx]
        for shard in np.unique(shards):
            where = np.nonzero(shards == shard)[0]
            offsets = self._offset[idx[where]]
            order = np.argsort(offsets, kind="stable")
            out[where[order]] = self._shard_array(int(shard))[offsets[order]]
        return out

    def signals(self, idx) -> np.ndarray:
        """Windows ``idx`` as (k, 12, n) float32 mV."""
        return np.multiply(self.raw(idx), np.float32(self.scale), dtype=np.float32)

    def labels(self, task: str) -> np.ndarray:
        """(len, C) float32 multi-hot of one task, columns in ``self.tasks[task]`` order."""
        if task not in self.tasks:
            raise KeyError(f"{self.path}: no task {task!r}; tasks are {list(self.tasks)}")
        classes = {c: j for j, c in enumerate(self.tasks[task])}
        y = np.zeros((len(self), len(classes)), dtype=np.float32)
        for i, labels in enumerate(self.index[f"labels_{task}"]):
            for lab in labels:
                y[i, classes[lab]] = 1.0
        return y


def checksum_problem(path: Path, meta: dict, name: str) -> str | None:
    """Why ``path / name`` does not match its checksum in meta.json (None when it does)."""
    expected = meta.get("checksums", {}).get(name)
    if expected is None:  # a cache built before checksums, or a table this dataset has not
        return None
    if not (path / name).is_file():
        return f"{path / name}: missing"
    if sha256(path / name) != expected:
        return f"{path / name}: content does not match its checksum in meta.json (damaged or altered)"
    return None


def _checksum_problems(path: Path, meta: dict, quick: bool) -> list[str]:
    """Every table's checksum and every shard's (``quick``: a random sample of ``QUICK_SHARDS``)."""
    names = list(meta["checksums"])
    shards = [n for n in names if n.startswith("shards/")]
    if quick:
        keep = set(random.sample(shards, min(QUICK_SHARDS, len(shards))))
        names = [n for n in names if n in keep or not n.startswith("shards/")]
    return [p for p in (checksum_problem(path, meta, n) for n in names) if p]


def verify_cache(path: str | Path, chunk: int = 256, quick: bool = False) -> list[str]:
    """Problems found in a cache (empty list: it is sound): each damaged file by its checksum, then the
    structure. Reads every shard (``quick``: every table, and a random sample of shards)."""
    path = Path(path)
    problems: list[str] = []
    for name in ("meta.json", "index.parquet", "preprocess.json", "rejects.csv"):
        if not (path / name).is_file():
            problems.append(f"{path / name}: missing")
    if problems:
        return problems
    try:
        meta = json.loads((path / "meta.json").read_text())
    except ValueError as e:
        return [f"{path / 'meta.json'}: unreadable ({e})"]
    if "checksums" in meta:
        damaged = _checksum_problems(path, meta, quick)
        if damaged:  # each damaged file is named; the structure of damaged files says no more
            return damaged
        return _structure_problems(path, chunk)
    return [f"{path / 'meta.json'}: lists no checksums (a cache built by an older melp): its content "
            "cannot be verified; rebuild it with --overwrite"] + _structure_problems(path, chunk)


def _structure_problems(path: Path, chunk: int) -> list[str]:
    """Index columns, labels, splits and slots against meta.json; shard shapes; float shards finite."""
    problems: list[str] = []
    try:
        cache = ECGCache(path)
    except Exception as e:
        return [f"{path}: cannot open: {type(e).__name__}: {e}"]
    meta, index = cache.meta, cache.index
    n = meta["n_samples"]
    for col in ("record_id", "subject_id", "path", "report", "split", "window", "shard", "offset"):
        if col not in index.columns:
            problems.append(f"{path / 'index.parquet'}: missing column {col!r}")
    if problems:
        return problems
    if index.duplicated(["record_id", "window"]).any():
        problems.append(f"{path / 'index.parquet'}: duplicate (record_id, window) rows")
    if index.duplicated(["shard", "offset"]).any():
        problems.append(f"{path / 'index.parquet'}: two rows point at the same shard slot")
    bad_split = set(index["split"]) - {"train", "val", "test"}
    if bad_split:
        problems.append(f"{path / 'index.parquet'}: unknown splits {sorted(bad_split)}")
    for task, classes in meta["tasks"].items():
        col = f"labels_{task}"
        if col not in index.columns:
            problems.append(f"{path / 'index.parquet'}: missing column {col!r}")
            continue
        unknown = {lab for labels in index[col] for lab in labels} - set(classes)
        if unknown:
            problems.append(f"{path / 'index.parquet'}: {col} has labels outside meta.json: {sorted(unknown)[:5]}")
    counts = index.groupby("shard").size().to_dict()
    for shard in range(meta["shards"]):
        f = path / "shards" / f"{_shard_name(shard)}.npy"
        try:
            arr = np.load(f, mmap_mode="r")
        except (OSError, ValueError) as e:
            problems.append(f"{f}: unreadable ({e})")
            continue
        expected = counts.get(shard, 0)
        if arr.shape != (expected, 12, n) or arr.dtype != np.dtype(meta["dtype"]):
            problems.append(f"{f}: shape {arr.shape} {arr.dtype}, index expects ({expected}, 12, {n}) {meta['dtype']}")
            continue
        offs = index.loc[index["shard"] == shard, "offset"].to_numpy()
        if len(offs) and (offs.min() < 0 or offs.max() >= expected):
            problems.append(f"{f}: index offsets outside 0..{expected - 1}")
        if arr.dtype.kind == "f":
            for start in range(0, expected, chunk):
                block = np.asarray(arr[start : start + chunk])
                if not np.isfinite(block).all():
                    bad = start + int(np.nonzero(~np.isfinite(block).all(axis=(1, 2)))[0][0])
                    problems.append(f"{f}: NaN/inf in row {bad}")
                    break
    extra = sorted(set(counts) - set(range(meta["shards"])))
    if extra:
        problems.append(f"{path / 'index.parquet'}: rows point at shards {extra} that meta.json does not list")
    return problems
