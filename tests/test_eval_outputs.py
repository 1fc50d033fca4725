"""Score tables and classification plots: readable at any number of classes, and no warnings."""
import warnings

import numpy as np
from PIL import Image

from melp.eval import outputs
from melp.eval.descriptions import display_name
from melp.eval.metrics import classification_summary


def _result(n_classes: int, n: int = 60, names=None):
    rng = np.random.default_rng(0)
    labels = (rng.random((n, n_classes)) < 0.3).astype(int)
    labels[0] = 1  # every class has positives and negatives
    labels[1] = 0
    scores = rng.random((n, n_classes)) + labels
    classes = names or [f"class number {c}" for c in range(n_classes)]
    return labels, scores, classes, classification_summary(labels, scores, classes, n_boot=10)


def test_scores_round_trip_without_warnings(tmp_path):
    labels, scores, classes, _ = _result(83)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a frame built column by column warns (PerformanceWarning)
        outputs.write_scores(tmp_path / "scores.csv", range(len(labels)), classes, labels, scores)
    ids, classes2, labels2, scores2 = outputs.read_scores(tmp_path / "scores.csv")
    assert classes2 == classes and (labels2 == labels).all() and np.allclose(scores2, scores)


def test_many_classes_get_bars_instead_of_roc_curves(tmp_path):
    labels, scores, classes, summary = _result(83)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "tight layout not applied"
        written = outputs.plot_classification(tmp_path, labels, scores, classes, summary, "many")
    assert [p.name for p in written] == ["auroc_bars.png"]
    width, height = Image.open(written[0]).size
    assert height > width  # one row per class, not a 3360 x 440 strip


def test_few_classes_get_roc_curves_in_distinct_colours(tmp_path):
    labels, scores, classes, summary = _result(14)
    written = outputs.plot_classification(tmp_path, labels, scores, classes, summary, "few")
    assert [p.name for p in written] == ["roc.png", "auroc_bars.png"]
    assert len(set(outputs.class_colours(14))) == 14 and len(set(outputs.class_colours(20))) == 20


def test_roc_legend_names_every_class(tmp_path, monkeypatch):
    import matplotlib.figure

    shown, legend = [], matplotlib.figure.Figure.legend

    def spy(fig, *args, **kwargs):
        made = legend(fig, *args, **kwargs)
        shown.extend(t.get_text() for t in made.get_texts())
        return made

    monkeypatch.setattr(matplotlib.figure.Figure, "legend", spy)
    labels, scores, classes, summary = _result(3, names=["_AVB", "NORM", "164889003"])  # "_x" hides a label
    outputs.plot_classification(tmp_path, labels, scores, classes, summary, "legend")
    assert sorted(name.split(":")[0] for name in shown) == ["NORM", "_AVB", "atrial fibrillation (164889003)"]


def test_snomed_classes_are_shown_with_their_names():
    assert display_name("164889003") == "atrial fibrillation (164889003)"
    assert display_name("NORM") == "NORM" and display_name("12345") == "12345"
