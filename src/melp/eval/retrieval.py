"""ECG <-> report retrieval (DESIGN 4): recall@1/5/10 on held-out pairs.

Each held-out ECG queries all held-out reports by cosine similarity of the global embeddings, and
each report queries all ECGs. A hit is a retrieved item whose *report text* equals the query's
(after lower-casing and whitespace normalisation): machine reports repeat verbatim ("sinus rhythm.
normal ecg."), and an identical report is as correct as the paired one.

Python API::

    from melp.eval.retrieval import evaluate_retrieval
    r = evaluate_retrieval(model, cache, split="test", max_pairs=None)
    r["ecg_to_report_r1"], r["ecg_to_report_r5"], r["ecg_to_report_r10"], r["report_to_ecg_r1"], ...

``cache``: an ``ECGCache``, a cache path or an ``EvalSet`` holding reports.

Command: ``melp retrieve --model DIR --root CACHE --out DIR``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from melp.eval import outputs
from melp.eval.cli_common import add_precision
from melp.eval.data import EvalSet, load_eval_set
from melp.eval.embed import embed_set, embed_texts, l2_normalize

KS = (1, 5, 10)


def _as_pairs(data, cfg=None) -> EvalSet:
    if isinstance(data, EvalSet):
        return data
    if isinstance(data, (str, Path)):
        return load_eval_set(data, task=None, cfg=cfg)
    return EvalSet.from_cache(data, None, name="pairs")


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, ks=KS) -> dict[int, float]:
    """similarity (Q, G); relevant (Q, G) bool. Share of queries with a relevant item in the top k."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    first = np.where(hits.any(1), hits.argmax(1), np.inf)  # rank (0-based) of the first hit
    return {k: float((first < k).mean()) for k in ks}


def normalize_report(text: str) -> str:
    return re.sub(r"\s+", " ", str(text).lower()).strip()


def evaluate_retrieval(model, cache, split: str | None = "test", max_pairs: int | None = None,
                       seed: int = 0, batch_size: int = 64) -> dict:
    data = _as_pairs(cache, getattr(getattr(model, "config", None), "preprocess", None))
    if split not in (None, "all") and split not in set(data.splits):
        raise ValueError(f"no record in split {split!r}; splits present: {sorted(set(data.splits))}")
    data = data.split(split)
    keep = np.flatnonzero([bool(normalize_report(r)) for r in data.reports])
    if keep.size < len(data):
        print(f"retrieval: {len(data) - keep.size} record(s) without a report are not queries")
    if max_pairs is not None and keep.size > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_pairs, replace=False))
    if keep.size == 0:
        raise ValueError(f"{data.name}: no record with a report in split {split!r}")
    data = data.subset(keep)
    ecg = l2_normalize(embed_set(model, data, "embedding", batch_size, desc="retrieval ECGs"))
    text = embed_texts(model, data.reports)
    sim = ecg @ text.T
    norm = np.asarray([normalize_report(r) for r in data.reports])
    relevant = norm[:, None] == norm[None, :]
    e2r = recall_at_k(sim, relevant)
    r2e = recall_at_k(sim.T, relevant.T)
    result = {"protocol": "retrieval", "split": split, "n_pairs": int(len(data)),
              "n_distinct_reports": int(len(set(norm)))}
    result.update({f"ecg_to_report_r{k}": v for k, v in e2r.items()})
    result.update({f"report_to_ecg_r{k}": v for k, v in r2e.items()})
    return result


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model folder")
    add_precision(parser)
    parser.add_argument("--root", required=True, help="a cache built by `melp prepare` (pairs with reports)")
    parser.add_argument("--out", required=True, help="folder for results.json / results.md")
    parser.add_argument("--split", default="test", help="train/val/test/all (default test)")
    parser.add_argument("--max-pairs", type=int, default=None, help="sample this many pairs (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-pairs sample (default 0)")


def markdown(result: dict) -> str:
    rows = [[d, *(outputs.fmt(result[f"{key}_r{k}"]) for k in KS)]
            for d, key in (("ECG -> report", "ecg_to_report"), ("report -> ECG", "report_to_ecg"))]
    return (f"# Retrieval ({result['split']}, {result['n_pairs']} pairs, "
            f"{result['n_distinct_reports']} distinct reports)\n\n"
            + outputs.markdown_table(["direction", "R@1", "R@5", "R@10"], rows))


def run(args) -> int:
    from melp.eval.embed import load_model

    outputs.check_output(args.out)
    model = load_model(args.model, needs_text="retrieve", precision=args.precision, compile=args.compile)
    result = evaluate_retrieval(model, args.root, args.split, args.max_pairs, args.seed)
    result["model"] = str(args.model)
    with outputs.output_folder(args.out) as out:
        outputs.write_json(out / "results.json", result)
        (out / "results.md").write_text(markdown(result))
        outputs.plot_bars(out / "recall.png", {d: {f"R@{k}": result[f"{key}_r{k}"] for k in KS}
                                               for d, key in (("ECG -> report", "ecg_to_report"),
                                                              ("report -> ECG", "report_to_ecg"))},
                          "recall", f"retrieval, {result['n_pairs']} pairs")
    print(markdown(result))
    print(f"written to {args.out}")
    return 0
