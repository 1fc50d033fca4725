"""`melp demo [--out DIR]`: the whole method, offline, on a laptop, in about a quarter of an hour.

1. simulate a MIMIC-IV-ECG-layout pretraining corpus and PTB-XL- and CinC-layout test sets
   (``melp.synth.export``), in the real on-disk layouts;
2. build their caches through the real adapters (the ``melp prepare`` code path);
3. stage 1: masked-LM adaptation of the text model on the corpus' reports (short);
4. stage 2: MELP pretraining of the ``tiny`` model on Lightning;
5. evaluate on the held-out simulated sets: zero-shot (class descriptions worded differently from the
   simulator's statements), linear probe at 1/10/100% of the training split, ECG->report retrieval;
   zero-shot on the real LUDB records when ``MELP_REAL_DATA`` or ``../shared/data`` holds ``ludb/``;
6. write ``results.json``, ``results.md`` and plots (training curves, ROC curves, a 12-lead example
   with its generated report) into the run folder, and print the summary table.

Sizes live in ``melp/configs/demo.yaml`` (``full``, and ``quick`` for smoke tests).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import yaml

from melp.train.config import add_set_argument, apply_overrides, apply_values, load_config

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
ZEROSHOT_TASKS = ("ptbxl-super", "ptbxl-sub", "ptbxl-form", "ptbxl-rhythm")
HEADLINE_TASK = "ptbxl-super"  # results.json zeroshot.macro_auroc and probe.* are on this task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="micro sizes: a smoke test of every step")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the simulated data sets and of both training stages (default 0)")
    add_set_argument(parser, "override a demo size, e.g. pretrain_records=2000 or stage2.trainer.max_epochs=4")
    parser.add_argument("--real-data", default=None,
                        help="folder holding ludb/ (default: $MELP_REAL_DATA, else ../shared/data)")


def demo_settings(quick: bool, overrides: list[str] | None = None) -> dict:
    scales = yaml.safe_load(DEMO_CONFIG.read_text())
    settings = scales["quick" if quick else "full"]
    # stage overrides hold dotted keys already: split "stage2.trainer.max_epochs=4" at the first dot only
    plain, staged = [], []
    for item in overrides or []:
        (staged if item.split("=", 1)[0].split(".", 1)[0] in ("stage1", "stage2") else plain).append(item)
    settings = apply_overrides(settings, plain)
    for item in staged:
        key, value = item.split("=", 1)
        stage, inner = key.split(".", 1)
        settings[stage][inner] = yaml.safe_load(value)
    return settings


def find_real_data(explicit: str | None) -> Path | None:
    """The folder holding ``ludb/``: --real-data, $MELP_REAL_DATA, or ../shared/data (CWD or repo)."""
    candidates = [explicit, os.environ.get("MELP_REAL_DATA"), Path.cwd().parent / "shared" / "data",
                  Path(__file__).resolve().parents[3].parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "ludb").is_dir():
            return Path(c)
    return None


class Steps:
    """Prints each step with its wall time, and keeps the timings for results.json."""

    def __init__(self):
        self.start = time.perf_counter()
        self.times: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = round(time.perf_counter() - t0, 1)
        print(f"== {name}: {self.times[name]:.0f} s", flush=True)
        return out

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


# ----------------------------------------------------------------------------- data


def simulate(out: Path, s: dict, seed: int) -> dict[str, Path]:
    from melp import synth

    roots = {"mimic-iv-ecg": out / "data" / "mimic-iv-ecg", "ptbxl": out / "data" / "ptbxl",
             "cinc": out / "data" / "cinc"}
    sizes = {"mimic-iv-ecg": s["pretrain_records"], "ptbxl": s["ptbxl_records"], "cinc": s["cinc_records"]}
    for i, (fmt, root) in enumerate(roots.items()):
        synth.export(fmt, root, n=int(sizes[fmt]), seed=seed + 1000 * (i + 1))  # disjoint seeds per set
    return roots


def build_caches(out: Path, roots: dict[str, Path], preprocess) -> dict[str, Path]:
    from melp.data.adapters import get_adapter
    from melp.data.cache import build_cache

    caches = {}
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4)
    for name, root in roots.items():
        caches[name] = out / "cache" / name
        summary = build_cache(get_adapter(name), root, caches[name], preprocess, workers=workers, overwrite=True)
        print(f"{name}: {summary['records_written']} records cached, {summary['rejected']} rejected")
    return caches


# ----------------------------------------------------------------------------- training


def stage1(out: Path, cache: Path, s: dict, seed: int) -> Path:
    from melp.train.text_pretrain import pretrain_text

    cfg = apply_values(load_config("text_tiny"), s.get("stage1") or {})
    cfg["seed"] = seed
    cfg["data"]["caches"] = [str(cache)]
    cfg["output"]["dir"] = str(out / "text_model")
    log = pretrain_text(cfg)
    if log.get("heldout_mlm_loss_before") is not None:
        print(f"held-out MLM loss {log['heldout_mlm_loss_before']:.3f} -> {log['heldout_mlm_loss_after']:.3f}")
    return out / "text_model"


def stage2_config(out: Path, s: dict, seed: int) -> dict:
    """The `tiny` training preset with the demo's overrides (the text model is set after stage 1)."""
    cfg = apply_values(load_config("tiny"), s.get("stage2") or {})
    cfg["seed"] = seed
    cfg["data"]["cache"] = str(out / "cache" / "mimic-iv-ecg")
    cfg["output"]["dir"] = str(out / "pretrain")
    return cfg


def stage2(cfg: dict, text_model: Path) -> Path:
    from melp.train.pretrain import pretrain

    cfg = apply_values(cfg, {"model_overrides.text.source": str(text_model.resolve())})
    return pretrain(cfg)


# ----------------------------------------------------------------------------- evaluation


def evaluate(out: Path, model, caches: dict[str, Path], s: dict, real_data: Path | None) -> dict:
    from melp.data.cache import ECGCache
    from melp.eval.probe import evaluate_probe
    from melp.eval.retrieval import evaluate_retrieval
    from melp.eval.zeroshot import evaluate_zeroshot

    n_boot = int(s.get("bootstrap", 200))
    ptbxl = ECGCache(caches["ptbxl"])
    results: dict = {"zeroshot": {}, "probe": {}, "retrieval": {}}

    for task in ZEROSHOT_TASKS:
        try:
            r = evaluate_zeroshot(model, ptbxl, task, n_boot=n_boot)
        except ValueError as err:  # e.g. a task without any described class in a micro set
            print(f"zero-shot {task}: skipped ({err})")
            continue
        write_eval(out / "eval" / f"zeroshot-{task}", r)
        results["zeroshot"][task] = r["macro_auroc"]
    results["zeroshot"]["macro_auroc"] = results["zeroshot"].get(HEADLINE_TASK)
    cinc = ECGCache(caches["cinc"])
    try:
        r = evaluate_zeroshot(model, cinc, "cinc", n_boot=n_boot)
        write_eval(out / "eval" / "zeroshot-cinc", r)
        results["zeroshot"]["cinc"] = r["macro_auroc"]
    except ValueError as err:
        print(f"zero-shot cinc: skipped ({err})")

    from melp.eval.data import EvalSet
    from melp.eval.embed import embed_set

    probe_set = EvalSet.from_cache(ptbxl, "super", name=HEADLINE_TASK)
    features = embed_set(model, probe_set, "features", desc="probe features")  # once for all fractions
    for fraction in s["probe_fractions"]:
        r = evaluate_probe(model, probe_set, HEADLINE_TASK, fraction=float(fraction), features=features,
                           n_boot=n_boot)
        results["probe"][str(float(fraction))] = r["macro_auroc_mean"]
        results.setdefault("probe_n_train", {})[str(float(fraction))] = r["per_seed"][0]["n_train"]

    # retrieval on held-out pairs the model never saw: the PTB-XL-layout test folds and their reports
    r = evaluate_retrieval(model, ptbxl, split="test")
    results["retrieval"] = {k: v for k, v in r.items() if k.startswith(("ecg_to_report", "report_to_ecg", "n_"))}
    pairs = EvalSet.from_cache(ptbxl, None).split("test")
    results["retrieval"]["chance_r10"] = chance_recall(pairs.reports, 10)

    if real_data is not None and s.get("ludb", True):
        r = evaluate_zeroshot(model, str(real_data / "ludb"), "ludb", n_boot=n_boot)
        write_eval(out / "eval" / "zeroshot-ludb", r)
        results["ludb"] = {"zeroshot_macro_auroc": r["macro_auroc"], "n": r["n"], "root": str(real_data / "ludb"),
                           "per_class": {name: {"auroc": c["auroc"], "n_pos": c["n_pos"]}
                                         for name, c in r["per_class"].items()}}
    return results


def write_eval(folder: Path, result: dict) -> None:
    """One zero-shot result folder, written whole or not at all (a killed run leaves the earlier one)."""
    from melp.eval.outputs import output_folder
    from melp.eval.zeroshot import write_zeroshot

    with output_folder(folder) as tmp:
        write_zeroshot(tmp, result)


def chance_recall(reports: list[str], k: int = 10) -> float:
    """Expected ECG->report recall@k of a random ranking, counting identical reports as hits (as the
    retrieval evaluation does): a query with m identical reports among N misses with probability
    C(N-m, k) / C(N, k)."""
    from collections import Counter

    from melp.eval.retrieval import normalize_report

    norm = [normalize_report(r) for r in reports if normalize_report(r)]
    n, counts = len(norm), Counter(norm)
    if n == 0:
        return float("nan")
    hit = 0.0
    for m in (counts[r] for r in norm):
        miss = 1.0
        for j in range(min(k, n)):
            miss *= max(0.0, (n - m - j) / (n - j))
        hit += 1.0 - miss
    return hit / n


# ----------------------------------------------------------------------------- command


def run(args: argparse.Namespace) -> int:
    import melp
    from melp.atomic import atomic_write
    from melp.eval.outputs import write_json
    from melp.train.pretrain import model_config

    s = demo_settings(args.quick, args.overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "results.json").is_file():  # an unfinished run must not leave the earlier run's summary
        print(f"{out}: replacing the results of an earlier run")
        (out / "results.json").unlink()
    steps = Steps()
    train_cfg = stage2_config(out, s, args.seed)
    preprocess = model_config(train_cfg).preprocess  # the caches are built as the model will read

    roots = steps.run("simulate", simulate, out, s, args.seed)
    caches = steps.run("prepare caches", build_caches, out, roots, preprocess)
    text_model = steps.run("stage 1: text masked LM", stage1, out, caches["mimic-iv-ecg"], s, args.seed)
    run_dir = steps.run("stage 2: MELP pretraining", stage2, train_cfg, text_model)
    model_dir = run_dir / "model"
    model = melp.load(model_dir)
    model.eval()
    real = find_real_data(args.real_data)
    results = steps.run("evaluate", evaluate, out, model, caches, s, real)
    from melp.train import demo_report

    steps.run("plots", demo_report.plots, out, run_dir, model, caches)
    results.update(elapsed_seconds=round(steps.elapsed, 1), model_dir=str(model_dir.resolve()),
                   step_seconds=steps.times, settings=s, quick=bool(args.quick))
    table = demo_report.summary_markdown(results)
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(table))
    # last, and whole: its presence says the run finished (NaN, an undefined AUROC, becomes null)
    atomic_write(out / "results.json", lambda tmp: write_json(tmp, results))
    print("\n" + table)
    print(f"results in {out}/results.json, results.md and plots/")
    return 0
