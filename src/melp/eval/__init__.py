"""Evaluation: zero-shot, linear probe, fine-tuning, retrieval, report generation.

Python API (each takes a loaded model, e.g. ``melp.load(dir)``, and data given as an
``EvalSet``, an ``ECGCache``, a path to a cache or dataset folder, or arrays
``(signals mV (N, 12, T), labels (N, C), classes[, fs])``):

- ``melp.eval.zeroshot.evaluate_zeroshot(model, data, task, descriptions=None, split=None) -> dict``
- ``melp.eval.probe.evaluate_probe(model, data, task, fraction=1.0, seeds=1) -> dict``
- ``melp.eval.finetune.evaluate_finetune(model, data, task, fraction=1.0, seeds=1) -> dict``
- ``melp.eval.retrieval.evaluate_retrieval(model, cache, split="test") -> dict``
  (``ecg_to_report_r1/r5/r10``, ``report_to_ecg_r1/r5/r10``)
- ``melp.eval.generation.evaluate_generation(model, cache, split="test") -> dict`` (``bleu4``, ``rouge_l``)
- ``melp.eval.metrics``: per-class/macro AUROC (skipped classes reported), max-F1, bootstrap CI.
- ``melp.eval.data.EvalSet`` / ``load_eval_set(root, task)``: labelled sets from any source.
- ``melp.eval.descriptions.descriptions_for(task, classes, override=None)``: class texts.
Classification results hold ``macro_auroc`` (probe/finetune: ``macro_auroc_mean``/``_std`` over
seeds), ``macro_auroc_ci``, ``macro_max_f1``, ``per_class`` and ``skipped``.
"""
