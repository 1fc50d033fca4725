"""Report generation (DESIGN 4): beam search from each held-out ECG; BLEU-4 (sacrebleu, corpus
level) and ROUGE-L (rouge-score, mean F-measure) against the held-out reports.

Python API::

    from melp.eval.generation import evaluate_generation
    r = evaluate_generation(model, cache, split="test", beams=3, max_records=None)
    r["bleu4"], r["rouge_l"], r["predictions"]  # list of {record_id, reference, generated}

Command: ``melp generate --model DIR --root CACHE --out DIR`` (writes predictions.csv too).
"""
from __future__ import annotations


import numpy as np
from tqdm.auto import tqdm

from melp.eval import outputs
from melp.eval.retrieval import _as_pairs, normalize_report


def text_metrics(generated: list[str], references: list[str]) -> dict:
    """BLEU-4 (0-1) and ROUGE-L F-measure (0-1), both on lower-cased text."""
    import sacrebleu
    from rouge_score import rouge_scorer

    gen = [normalize_report(g) for g in generated]
    ref = [normalize_report(r) for r in references]
    bleu = sacrebleu.corpus_bleu(gen, [ref]).score / 100.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    per_record = [scorer.score(r, g)["rougeL"].fmeasure for r, g in zip(ref, gen)]
    return {"bleu4": bleu, "rouge_l": float(np.mean(per_record)) if gen else float("nan"),
            "rouge_l_per_record": per_record}


def evaluate_generation(model, cache, split: str | None = "test", beams: int = 3, max_records: int | None = None,
                        seed: int = 0, batch_size: int = 16, max_len: int | None = None) -> dict:
    data = _as_pairs(cache, getattr(getattr(model, "config", None), "preprocess", None)).split(split)
    keep = np.flatnonzero([bool(normalize_report(r)) for r in data.reports])
    if max_records is not None and keep.size > max_records:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_records, replace=False))
    if keep.size == 0:
        raise ValueError(f"{data.name}: no record with a report in split {split!r}")
    data = data.subset(keep)
    generated = []
    for start in tqdm(range(0, len(data), batch_size), desc="generating reports", unit="batch"):
        idx = np.arange(start, min(len(data), start + batch_size))
        generated += model.generate(data.signals(idx), fs=data.fs, beams=beams, max_len=max_len)
    metrics = text_metrics(generated, data.reports)
    per_record = metrics.pop("rouge_l_per_record")
    predictions = [{"record_id": r, "reference": ref, "generated": g, "rouge_l": s}
                   for r, ref, g, s in zip(data.record_ids.tolist(), data.reports, generated, per_record)]
    return {"protocol": "generation", "split": split, "beams": beams, "n": len(data), **metrics,
            "predictions": predictions}


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--root", required=True, help="a cache built by `melp prepare` (ECGs with reports)")
    parser.add_argument("--out", required=True, help="folder for results.json / results.md / predictions.csv")
    parser.add_argument("--split", default="test", help="train/val/test/all (default test)")
    parser.add_argument("--beams", type=int, default=3, help="beam width (1: greedy)")
    parser.add_argument("--max-records", type=int, default=None, help="sample this many records (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-records sample (default 0)")
    parser.add_argument("--max-len", type=int, default=None, help="longest report in tokens (default: the model's)")


def run(args) -> int:
    import pandas as pd

    from melp.eval.embed import load_model

    outputs.check_output(args.out)
    model = load_model(args.model, needs_text="generate")
    result = evaluate_generation(model, args.root, args.split, args.beams, args.max_records, args.seed,
                                 max_len=args.max_len)
    summary = {k: v for k, v in result.items() if k != "predictions"} | {"model": str(args.model)}
    examples = "".join(f"- reference: {p['reference']}\n  generated: {p['generated']}\n"
                       for p in result["predictions"][:5])
    md = (f"# Report generation ({args.split}, {result['n']} records, beam {args.beams})\n\n"
          + outputs.markdown_table(["BLEU-4", "ROUGE-L"], [[outputs.fmt(result["bleu4"]), outputs.fmt(result["rouge_l"])]])
          + "\nExamples:\n\n" + examples)
    with outputs.output_folder(args.out) as out:
        pd.DataFrame(result["predictions"]).to_csv(out / "predictions.csv", index=False)
        outputs.write_json(out / "results.json", summary)
        (out / "results.md").write_text(md)
        outputs.plot_histogram(out / "rouge_l.png", [p["rouge_l"] for p in result["predictions"]],
                               "ROUGE-L per record", f"report generation, BLEU-4 {outputs.fmt(result['bleu4'])}")
    print(md)
    print(f"written to {args.out}")
    return 0
