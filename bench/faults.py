"""Fault injection: damaged inputs x commands, each run as a user would (a `melp` process), and a table
of outcomes: clear error / correct / traceback / silently wrong / corrupted / hang.

    MELP_REAL_DATA=../shared/data python bench/faults.py [--only GROUP ...]

Groups: records, models (damaged copies of a real LUDB record (tests/damage.py) and of a model
folder, through classify/report), prepare (`melp prepare` on damaged records, `--verify` of damaged
caches), kill (kill -9 of a micro `melp pretrain` during a training step, a checkpoint write and the
model-folder write, then `--resume`: the kill points of tests/trainfixtures.py).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]  # this checkout's melp, and the damage helpers
from damage import DAMAGE, damaged_copy, intact_copy  # noqa: E402
from trainfixtures import KILL_POINTS, KILL_RUN, killed_run, micro_setup, weights, write_config  # noqa: E402

TIMEOUT_S = 300
OUTCOMES = ("clear error", "correct", "traceback", "silently wrong", "corrupted", "hang")
GROUPS = ("records", "models", "prepare", "kill")


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=GROUPS, help="run these groups only")
    groups = parser.parse_args().only
    real = Path(os.environ.get("MELP_REAL_DATA", REPO.parent / "shared" / "data"))
    src = real / "ludb" / "data" / "1.hea"
    if not src.is_file() and set(groups) - {"kill"}:
        print(f"needs the shared records: set MELP_REAL_DATA (no {src})", file=sys.stderr)
        return 2
    # the killed runs' environment (trainfixtures.run_env) as run_melp's: this checkout, one thread
    os.environ.update(PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if {"records", "models"} & set(groups):
            rows += input_rows(src, work, groups)
        if "prepare" in groups:
            rows += prepare_rows(src, work)
        if "kill" in groups:
            rows += kill_rows(work / "kill")
    width, cwidth = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'case':<{width}}  {'command':<{cwidth}}  outcome")
    for case, command, result in rows:
        print(f"{case:<{width}}  {command:<{cwidth}}  {result}")
    totals = Counter(r[2] for r in rows)
    print("\n" + ", ".join(f"{totals.get(o, 0)} {o}" for o in OUTCOMES))
    return 0 if all(totals.get(o, 0) == 0 for o in OUTCOMES[2:]) else 1


def input_rows(src: Path, work: Path, groups) -> list[tuple[str, str, str]]:
    """classify/report over damaged records, damaged model folders and bad labels."""
    import torch

    import melp

    for name, seed in (("model", 0), ("other", 1)):
        torch.manual_seed(seed)
        melp.MELP.from_preset("tiny").save_pretrained(work / name)
    model = work / "model"
    records = record_cases(src, work / "records")
    rows = []
    for name, (record, should_fail) in records.items() if "records" in groups else ():
        for command in (["classify", str(record), "--labels", "atrial fibrillation", "sinus rhythm"],
                        ["report", str(record), "--beams", "1", "--max-len", "4"]):
            code, err = run_melp(*command, "--model", str(model))
            rows.append((f"record: {name}", command[0], outcome(code, err, should_fail)))
    if "models" not in groups:
        return rows
    intact = records["intact"][0]
    for name, folder in model_cases(model, work / "other", work / "models").items():
        code, err = run_melp("classify", str(intact), "--model", str(folder), "--labels", "a", "b")
        rows.append((f"model: {name}", "classify", outcome(code, err, True)))
    for labels, name in ((["a", ""], "empty label"), (["a", "a"], "repeated label")):
        code, err = run_melp("classify", str(intact), "--model", str(model), "--labels", *labels)
        rows.append((f"labels: {name}", "classify", outcome(code, err, True)))
    return rows


def kill_rows(work: Path) -> list[tuple[str, str, str]]:
    """kill -9 of a micro `melp pretrain` at each kill point, then `--resume`; compared with an
    uninterrupted run of the same config."""
    config = write_config(micro_setup(work), work / "cfg.yaml", **KILL_RUN)
    code, err = run_melp("pretrain", "--config", str(config), "--out", str(work / "straight"))
    if code != 0:
        return [("kill: uninterrupted run", "pretrain", outcome(code, err, False))]
    rows = []
    for point in KILL_POINTS:
        out = work / f"killed-{point}"
        try:
            killed = killed_run(config, out, point, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rows.append((f"kill -9: {point}", "pretrain", "hang"))
            continue
        if killed.returncode != -signal.SIGKILL:  # the kill point was never reached: nothing was tested
            rows.append((f"kill -9: {point}", "pretrain", outcome(killed.returncode, killed.stderr, True)))
            continue
        # what the kill left must not pass as a finished model
        rows.append((f"kill -9: {point}", "pretrain (killed)", "corrupted" if loads(out / "model") else "correct"))
        code, err = run_melp("pretrain", "--config", str(config), "--out", str(out), "--resume")
        rows.append((f"kill -9: {point}", "pretrain --resume", resumed_outcome(code, err, out, work / "straight")))
    return rows


def loads(model_dir: Path) -> bool:
    """Whether melp.load accepts the folder (its manifest and files check out)."""
    import melp

    try:
        melp.load(model_dir)
    except (OSError, ValueError):
        return False
    return True


def resumed_outcome(code: int | None, err: str, out: Path, straight: Path) -> str:
    """correct: the resumed run's weights are the uninterrupted run's; corrupted: melp.load accepts a
    model with other weights; silently wrong: a success exit over a folder melp.load refuses."""
    import torch

    if code != 0 or "Traceback" in err:
        return outcome(code, err, False)
    if not loads(out / "model"):
        return "silently wrong"
    a, b = weights(straight / "model"), weights(out / "model")
    same = a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)
    return "correct" if same else "corrupted"


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
