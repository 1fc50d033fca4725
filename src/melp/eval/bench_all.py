"""``melp bench-all --model DIR --config FILE --out DIR``: a whole table of tasks x protocols.

The config (YAML) lists the tasks and the protocols, e.g.::

    seeds: 3                # probe / fine-tune seeds
    bootstrap: 1000         # resamples for the 95% CIs
    tasks:
      - {task: ptbxl-super, root: /data/caches/ptbxl}
      - {task: synth, n: 400, seed: 0}          # no root: simulated on the fly
    protocols: [zeroshot, probe-0.01, probe-0.1, probe-1.0, finetune-0.01]
    probe: {epochs: 100, patience: 10}         # optional overrides
    finetune: {epochs: 10, patience: 3}

Every (task, protocol) writes its own folder under ``--out`` (same files as the single commands);
``results.json`` / ``results.md`` hold the summary in the layout of the paper's tables: zero-shot
macro AUROC per task plus their average; linear probe (and fine-tuning) as task x {1%, 10%, 100%},
mean ± standard deviation over seeds. ``summary.png`` plots them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from melp.eval import outputs
from melp.eval.cli_common import add_precision

PROTOCOLS = ("zeroshot", "probe", "finetune")


def parse_protocol(name: str) -> tuple[str, float | None]:
    """``zeroshot`` -> (zeroshot, None); ``probe-0.01`` -> (probe, 0.01)."""
    kind, _, fraction = str(name).partition("-")
    if kind not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; use zeroshot, probe-FRACTION or finetune-FRACTION")
    if kind == "zeroshot":
        if fraction:
            raise ValueError(f"zeroshot takes no fraction: {name!r}")
        return kind, None
    try:
        value = float(fraction or 1.0)
    except ValueError:
        raise ValueError(f"bad fraction in protocol {name!r}") from None
    if not 0 < value <= 1:
        raise ValueError(f"fraction of {name!r} must be in (0, 1]")
    return kind, value


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bench config {path} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config.get("tasks"), list) or not config["tasks"]:
        raise ValueError(f"{path}: 'tasks' must be a non-empty list of {{task: NAME, root: DIR}}")
    for entry in config["tasks"]:
        if not isinstance(entry, dict) or "task" not in entry:
            raise ValueError(f"{path}: each task entry needs a 'task' key, got {entry!r}")
    protocols = config.get("protocols") or ["zeroshot"]
    config["protocols"] = [parse_protocol(p) for p in protocols]
    return config


def run_bench(model, config: dict, out_dir: str | Path) -> dict:
    from melp.eval.data import load_eval_set
    from melp.eval.embed import embed_set

    out_dir = Path(out_dir)
    seeds = int(config.get("seeds", 3))
    n_boot = int(config.get("bootstrap", 1000))
    probe_kw = dict(config.get("probe") or {})
    finetune_kw = dict(config.get("finetune") or {})
    rows = []
    for entry in config["tasks"]:
        task = entry["task"]
        data = load_eval_set(entry.get("root"), task, model.config.preprocess, n=int(entry.get("n", 400)),
                             seed=int(entry.get("seed", 0)))
        features = None
        for kind, fraction in config["protocols"]:
            name = kind if fraction is None else f"{kind}-{fraction:g}"
            folder = out_dir / f"{task}" / name
            try:
                if kind == "probe" and features is None:  # frozen features: computed once per task
                    features = embed_set(model, data, "features", desc=f"features {task}")
                rows.append(run_one(model, data, entry, kind, fraction, folder, seeds, n_boot, features,
                                    probe_kw, finetune_kw))
            except ValueError as err:  # e.g. a split or a description missing: report it, go on
                print(f"bench-all: {task} {name} failed: {err}")
                rows.append({"task": task, "protocol": kind, "fraction": fraction, "macro_auroc": None,
                             "std": None, "ci": None, "error": str(err)})
    summary = {"seeds": seeds, "rows": rows}
    outputs.write_json(out_dir / "results.json", summary)
    (out_dir / "results.md").write_text(summary_markdown(rows))
    plot_summary(out_dir / "summary.png", rows)
    return summary


def run_one(model, data, entry: dict, kind: str, fraction, folder: Path, seeds: int, n_boot: int, features,
            probe_kw: dict, finetune_kw: dict) -> dict:
    """One (task, protocol): evaluate, write its folder, return its summary row."""
    from melp.eval.finetune import evaluate_finetune
    from melp.eval.probe import evaluate_probe, write_seeded
    from melp.eval.zeroshot import evaluate_zeroshot, write_zeroshot

    task = entry["task"]
    if kind == "zeroshot":
        r = evaluate_zeroshot(model, data, task, entry.get("descriptions"), entry.get("split"), n_boot=n_boot)
        write_zeroshot(folder, r)
        return {"task": task, "protocol": kind, "fraction": None, "macro_auroc": r["macro_auroc"],
                "std": None, "ci": r["macro_auroc_ci"], "n_test": r["n"]}
    if kind == "probe":
        r = evaluate_probe(model, data, task, fraction, seeds, features=features, n_boot=n_boot, **probe_kw)
    else:
        r = evaluate_finetune(model, data, task, fraction, seeds, n_boot=n_boot, **finetune_kw)
    write_seeded(folder, r, f"{kind} {task}, {fraction:g} of train")
    return {"task": task, "protocol": kind, "fraction": fraction, "macro_auroc": r["macro_auroc_mean"],
            "std": r["macro_auroc_std"], "ci": None, "n_test": r["per_seed"][0]["n"],
            "n_train": [p["n_train"] for p in r["per_seed"]]}


def summary_markdown(rows: list[dict]) -> str:
    text = ["# Benchmark summary (macro AUROC, %)\n"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    zs = {r["task"]: r["macro_auroc"] for r in rows if r["protocol"] == "zeroshot"}
    if zs:
        values = [zs[t] for t in tasks if zs.get(t) is not None]
        average = float(np.mean(values)) if values else None
        text.append("## Zero-shot\n")
        text.append(outputs.markdown_table([*[t for t in tasks if t in zs], "Avg"],
                                           [[*(outputs.fmt(zs[t]) for t in tasks if t in zs), outputs.fmt(average)]]))
    for kind, title in (("probe", "Linear probe"), ("finetune", "Fine-tuning")):
        cells = {(r["task"], r["fraction"]): r for r in rows if r["protocol"] == kind}
        if not cells:
            continue
        fractions = sorted({f for _, f in cells})
        header = [f"{t} {f * 100:g}%" for t in tasks for f in fractions if (t, f) in cells]
        values = [f"{outputs.fmt(cells[(t, f)]['macro_auroc'])} ± {outputs.fmt(cells[(t, f)]['std'])}"
                  for t in tasks for f in fractions if (t, f) in cells]
        text.append(f"## {title} (mean ± std over seeds)\n")
        text.append(outputs.markdown_table(header, [values]))
    failed = [r for r in rows if r.get("error")]
    if failed:
        text.append("Failed: " + "; ".join(f"{r['task']} {r['protocol']}: {r['error']}" for r in failed) + "\n")
    return "\n".join(text)


def plot_summary(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["task"] + " " + (r["protocol"] if r["fraction"] is None else f"{r['protocol']} {r['fraction']:g}")
              for r in rows]
    values = [np.nan if r["macro_auroc"] is None else r["macro_auroc"] for r in rows]
    errors = [0 if r["std"] is None else r["std"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(rows) + 1.5), 4))
    ax.bar(range(len(rows)), values, yerr=errors, color="tab:blue", capsize=3)
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set(ylim=(0, 1), ylabel="macro AUROC", title="benchmark summary")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model folder")
    add_precision(parser)
    parser.add_argument("--config", required=True, help="YAML: tasks, protocols, seeds (see melp/configs/eval/)")
    parser.add_argument("--out", required=True, help="folder for the summary and one sub-folder per run")


def run(args) -> int:
    from melp.eval.embed import load_model

    config = load_config(args.config)
    outputs.check_output(args.out)
    model = load_model(args.model, precision=args.precision, compile=args.compile)
    with outputs.output_folder(args.out) as out:
        run_bench(model, config, out)
    print((Path(args.out) / "results.md").read_text())
    print(f"written to {args.out}")
    return 0
