"""Arguments and output writing shared by the evaluation commands."""
from __future__ import annotations

import argparse
from pathlib import Path

from melp.eval import outputs
from melp.eval.data import TASKS


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="ECG embedding precision: bf16 is several times faster on GPUs and on CPUs with "
                             "AMX, within cosine 0.999 of fp32 (default fp32)")
    parser.add_argument("--compile", action="store_true",
                        help="run the ECG encoder through torch.compile: 1.1-1.2x faster per batch after a "
                             "one-time compile of 10-30 s per batch shape, so it pays on large sets and in "
                             "`melp serve`; needs a C++ compiler")


def add_model_and_data(parser: argparse.ArgumentParser, dataset: bool = True) -> None:
    parser.add_argument("--model", required=True, help="model folder written by save_pretrained / pretrain")
    if dataset:
        parser.add_argument("--dataset", required=True, metavar="TASK",
                            help=f"task: one of {', '.join(TASKS)} (or a task name of the cache)")
    parser.add_argument("--root", default=None,
                        help="a cache built by `melp prepare`, or the dataset folder as distributed "
                             "(for synth: optional; without it N records are simulated)")
    parser.add_argument("--out", required=True, help="folder for results.json, results.md and plots")
    parser.add_argument("--n", type=int, default=400, help="synth only: records to simulate (default 400)")
    parser.add_argument("--seed", type=int, default=0, help="synth only: simulation seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="ECGs per batch (default 64)")
    parser.add_argument("--allow-missing-leads", action="store_true",
                        help="dataset folders: zero-fill absent leads instead of rejecting the record")


def write_classification(out_dir: str | Path, result: dict, title: str, prefix: str = "") -> None:
    """scores CSV, plots; the caller writes results.json/md."""
    out_dir = Path(out_dir)
    outputs.write_scores(out_dir / f"{prefix}scores.csv", result["record_ids"], result["classes"],
                         result["labels"], result["scores"])
    outputs.plot_classification(out_dir, result["labels"], result["scores"], result["classes"],
                                result, title, prefix=prefix)


def jsonable_result(result: dict) -> dict:
    """A result without its per-record arrays (they live in scores.csv)."""
    return {k: v for k, v in result.items() if k not in ("scores", "labels", "record_ids")}
