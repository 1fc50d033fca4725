"""Zero-shot classification (DESIGN 4): cosine similarity of each ECG's global embedding with each
class description's text embedding; per-class and macro AUROC, max-F1, bootstrap 95% CI.

Python API::

    from melp.eval.zeroshot import evaluate_zeroshot
    result = evaluate_zeroshot(model, data, "ptbxl-super", descriptions=None, split=None)
    result["macro_auroc"], result["per_class"]["MI"]["auroc"], result["skipped"]

``data``: an ``EvalSet``, an ``ECGCache``, a path (cache or dataset folder) or arrays
``(signals mV (N, 12, T), labels (N, C), classes[, fs])``. ``descriptions``: None (the shipped
``class_descriptions.yaml``), a dict or a YAML path. Classes without a description or without
positives are listed in ``skipped``. The result also holds ``scores``/``labels``/``record_ids``
(per record) and ``classes`` (the scored columns).

Command: ``melp zeroshot --model DIR --dataset TASK --root DATA_OR_CACHE --out DIR``.
"""
from __future__ import annotations

import numpy as np

from melp.eval import outputs
from melp.eval.cli_common import add_model_and_data, add_precision, jsonable_result, write_classification
from melp.eval.data import as_eval_set, default_split, load_eval_set
from melp.eval.descriptions import descriptions_for
from melp.eval.embed import embed_set, embed_texts, l2_normalize
from melp.eval.metrics import classification_summary


def class_text_embeddings(model, descriptions: dict[str, list[str]]) -> np.ndarray:
    """(C, D): each class's paraphrases embedded, averaged and re-normalised."""
    texts = [t for texts in descriptions.values() for t in texts]
    emb = embed_texts(model, texts)
    out, start = [], 0
    for group in descriptions.values():
        out.append(emb[start:start + len(group)].mean(0))
        start += len(group)
    return l2_normalize(np.stack(out))


def evaluate_zeroshot(model, data, task: str, descriptions=None, split: str | None = None,
                      n_boot: int = 1000, batch_size: int = 64) -> dict:
    data = as_eval_set(data, task, getattr(getattr(model, "config", None), "preprocess", None))
    split = split or default_split(task, data)
    data = data.split(split)
    found, missing = descriptions_for(task, data.classes, descriptions)
    if not found:
        raise ValueError(f"{task}: none of the {len(data.classes)} classes has a description; "
                         f"pass descriptions (class -> text)")
    keep = [c for c, name in enumerate(data.classes) if name in found]
    classes = [data.classes[c] for c in keep]
    text = class_text_embeddings(model, {name: found[name] for name in classes})
    ecg = l2_normalize(embed_set(model, data, "embedding", batch_size, desc=f"zero-shot {task}"))
    scores = ecg @ text.T
    labels = data.labels[:, keep]
    summary = classification_summary(labels, scores, classes, n_boot=n_boot)
    summary["skipped"] = missing + summary["skipped"]
    return {"protocol": "zeroshot", "task": task, "split": split, **summary,
            "descriptions": {name: found[name] for name in classes},
            "rejects": [list(r) for r in data.rejects],
            "classes": classes, "scores": scores, "labels": labels, "record_ids": data.record_ids}


def add_arguments(parser) -> None:
    add_model_and_data(parser)
    add_precision(parser)
    parser.add_argument("--split", default=None,
                        help="train/val/test/all (default: test for the paper's benchmarks, all otherwise)")
    parser.add_argument("--descriptions", default=None, help="YAML file: class -> description (or task -> ...)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CI")


def run(args) -> int:
    from melp.eval.embed import load_model

    outputs.check_output(args.out)
    model = load_model(args.model, needs_text="zeroshot", precision=args.precision, compile=args.compile)
    data = load_eval_set(args.root, args.dataset, model.config.preprocess, n=args.n, seed=args.seed,
                         allow_missing_leads=args.allow_missing_leads,
                         only_split=args.split or default_split(args.dataset))
    result = evaluate_zeroshot(model, data, args.dataset, args.descriptions, args.split,
                               n_boot=args.bootstrap, batch_size=args.batch_size)
    result["model"] = str(args.model)
    with outputs.output_folder(args.out) as out:
        write_zeroshot(out, result)
    print(outputs.summary_markdown(f"zero-shot {args.dataset} ({result['split']})", result))
    print(f"written to {args.out}")
    return 0


def write_zeroshot(out_dir, result: dict) -> None:
    title = f"zero-shot {result['task']} ({result['split']})"
    write_classification(out_dir, result, title)
    outputs.write_json(f"{out_dir}/results.json", jsonable_result(result))
    md = outputs.summary_markdown(title, result)
    md += "\nClass descriptions:\n\n" + "".join(f"- **{c}**: {' / '.join(t)}\n"
                                               for c, t in result["descriptions"].items())
    (outputs.Path(out_dir) / "results.md").write_text(md)
