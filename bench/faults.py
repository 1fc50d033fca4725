"""Fault injection: damaged inputs x commands, each run as a user would (a `melp` process), and a table
of outcomes: clear error / correct / traceback / silently wrong / corrupted / hang.

    MELP_REAL_DATA=../shared/data python bench/faults.py

Damaged copies of a real LUDB record (tests/damage.py), damaged copies of a model folder and of a
`melp prepare` cache, and `melp prepare` on a folder of damaged records. kill -9 at each point of a
training run (a step, a checkpoint write, the model-folder write) is covered by
tests/test_train.py::test_kill_9_at_each_point_then_resume_gives_the_same_weights.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]  # this checkout's melp, and the damage helpers
from damage import DAMAGE, damaged_copy, intact_copy  # noqa: E402

TIMEOUT_S = 300
OUTCOMES = ("clear error", "correct", "traceback", "silently wrong", "corrupted", "hang")


def run_melp(*args: str) -> tuple[int | None, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    try:
        p = subprocess.run([sys.executable, "-m", "melp.cli", *args], capture_output=True, text=True,
                           timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return None, ""
    return p.returncode, p.stderr


def outcome(code: int | None, err: str, should_fail: bool, wrote_damage: bool = False) -> str:
    """A refused input counts as a clear error whether or not it should have been refused (the
    table's case names say which should)."""
    if code is None:
        return "hang"
    if "Traceback" in err:
        return "traceback"
    if wrote_damage:
        return "corrupted"
    if code == 0:
        return "silently wrong" if should_fail else "correct"
    return "clear error"


def flip(path: Path, at: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def record_cases(src: Path, work: Path) -> dict[str, tuple[Path, bool]]:
    """name -> (record path, whether a command must refuse it)."""
    cases = {"intact": (intact_copy(src, work / "intact"), False)}
    cases.update({kind: (damaged_copy(src, work / kind, kind), True) for kind in DAMAGE})
    trunc = intact_copy(src, work / "truncated")
    dat = trunc.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:5000])
    nodat = intact_copy(src, work / "no-dat")
    nodat.with_suffix(".dat").unlink()
    cases.update({"truncated .dat": (trunc, True), "missing .dat": (nodat, True), "a folder": (work, True)})
    return cases


def model_cases(model: Path, other: Path, work: Path) -> dict[str, Path]:
    """Damaged copies of a model folder (every one must be refused)."""
    cases = {}
    for name, damage in {
        "flipped weight byte": lambda d: flip(d / "model.safetensors"),
        "truncated text weights": lambda d: (d / "text_model" / "model.safetensors").write_bytes(
            (d / "text_model" / "model.safetensors").read_bytes()[:2000]),
        "mixed text tower": lambda d: shutil.copy(other / "text_model" / "model.safetensors",
                                                  d / "text_model" / "model.safetensors"),
        "no manifest": lambda d: (d / "manifest.json").unlink(),
        "missing config": lambda d: (d / "config.json").unlink(),
    }.items():
        d = work / name.replace(" ", "-")
        shutil.copytree(model, d)
        damage(d)
        cases[name] = d
    cases["no such folder"] = work / "nowhere"
    return cases


def main() -> int:
    real = Path(os.environ.get("MELP_REAL_DATA", REPO.parent / "shared" / "data"))
    src = real / "ludb" / "data" / "1.hea"
    if not src.is_file():
        print(f"needs the shared records: set MELP_REAL_DATA (no {src})", file=sys.stderr)
        return 2
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        import torch

        import melp

        for name, seed in (("model", 0), ("other", 1)):
            torch.manual_seed(seed)
            melp.MELP.from_preset("tiny").save_pretrained(work / name)
        model = work / "model"
        records = record_cases(src, work / "records")
        for name, (record, should_fail) in records.items():
            for command in (["classify", str(record), "--labels", "atrial fibrillation", "sinus rhythm"],
                            ["report", str(record), "--beams", "1", "--max-len", "4"]):
                code, err = run_melp(*command, "--model", str(model))
                rows.append((f"record: {name}", command[0], outcome(code, err, should_fail)))
        intact = records["intact"][0]
        for name, folder in model_cases(model, work / "other", work / "models").items():
            code, err = run_melp("classify", str(intact), "--model", str(folder), "--labels", "a", "b")
            rows.append((f"model: {name}", "classify", outcome(code, err, True)))
        for labels, name in ((["a", ""], "empty label"), (["a", "a"], "repeated label")):
            code, err = run_melp("classify", str(intact), "--model", str(model), "--labels", *labels)
            rows.append((f"labels: {name}", "classify", outcome(code, err, True)))
        rows += prepare_rows(src, work)
    width, cwidth = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'case':<{width}}  {'command':<{cwidth}}  outcome")
    for case, command, result in rows:
        print(f"{case:<{width}}  {command:<{cwidth}}  {result}")
    totals = Counter(r[2] for r in rows)
    print("\n" + ", ".join(f"{totals.get(o, 0)} {o}" for o in OUTCOMES))
    return 0 if all(totals.get(o, 0) == 0 for o in OUTCOMES[2:]) else 1


def prepare_rows(src: Path, work: Path) -> list[tuple[str, str, str]]:
    """`melp prepare --quality reject` over damaged records, then `--verify` over damaged caches."""
    import pandas as pd

    folder = work / "cinc"
    records = [intact_copy(src, folder)] + [damaged_copy(src, folder, kind) for kind in DAMAGE]
    for hea in records:  # a CinC-style diagnosis line, so that the cinc adapter lists them
        hea.write_text(hea.read_text() + "# Dx: 426783006\n")
    cache = work / "cache"
    code, err = run_melp("prepare", "cinc", "--root", str(folder), "--out", str(cache), "--quality", "reject", "--quiet")
    kept = set(pd.read_parquet(cache / "index.parquet")["record_id"]) if code == 0 else set()
    rows = [("records: damaged x4 + intact", "prepare", outcome(code, err, False, wrote_damage=kept != {"1"}))]
    code, err = run_melp("prepare", "--verify", str(cache))
    rows.append(("cache: intact", "prepare --verify", outcome(code, err, False)))
    for name, damage in {
        "flipped shard byte": lambda d: flip(d / "shards" / "shard_00000.npy"),
        "flipped index byte": lambda d: flip(d / "index.parquet", len((d / "index.parquet").read_bytes()) // 2),
        "truncated shard": lambda d: (d / "shards" / "shard_00000.npy").write_bytes(
            (d / "shards" / "shard_00000.npy").read_bytes()[:300]),
        "missing meta.json": lambda d: (d / "meta.json").unlink(),
    }.items():
        copy = work / f"cache-{name.replace(' ', '-')}"
        shutil.copytree(cache, copy)
        damage(copy)
        for args in (["--verify", str(copy)], ["--verify", str(copy), "--quick"]):
            code, err = run_melp("prepare", *args)
            rows.append((f"cache: {name}", "prepare " + " ".join(a for a in args if a.startswith("--")),
                         outcome(code, err, True)))
    return rows


if __name__ == "__main__":
    sys.exit(main())
