"""``melp classify FILE --model DIR --labels "atrial fibrillation" ...``: rank free-text labels for
one ECG file.

Any format ``melp.read_record`` reads, at any sampling rate. Records longer than the model's
window are cut into consecutive windows (a shorter tail is left out, a record shorter than one
window is zero-padded); each window is scored and the scores are averaged. Absent leads are
zero-filled. The signal-quality gate (melp.data.quality) refuses a record that fails it (random
bytes, flat, saturated, implausible, no QRS...; ``--force`` scores it anyway) and names the flags of
one that passes with warnings. The score is the cosine similarity of the ECG embedding
with the label's text embedding (zero-shot), so only the ranking is meaningful.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from melp.data.preprocess import prepare_signal
from melp.eval.cli_common import add_precision


def record_windows(path: str, cfg, force: bool = False, fs: float | None = None) -> tuple[np.ndarray, object]:
    """A file -> (W, 12, n) mV windows at the model's rate, and the Record (for its metadata).
    A record failing the quality gate is a ValueError unless ``force``; flags are warned about.
    ``fs``: the rate of a file that does not state one (CSV)."""
    windows, record, _ = checked_windows(path, cfg, force, fs)
    return windows, record


class QualityError(ValueError):
    """A record that fails the signal-quality gate; ``quality`` holds its flags (melp serve lists them)."""

    def __init__(self, message: str, quality):
        super().__init__(message)
        self.quality = quality


def checked_windows(path: str, cfg, force: bool = False, fs: float | None = None) -> tuple[np.ndarray, object, object]:
    """``record_windows`` plus the ``Quality`` of the record (its flags)."""
    from melp.data.quality import assess
    from melp.data.readers import read_record

    record = read_record(path, allow_missing_leads=True, fs=fs)
    quality = assess(record)
    if not quality.passed and not force:
        raise QualityError(f"{path}: fails the signal-quality gate: {quality.failures()} (--force to score it "
                           "anyway)", quality)
    if quality.flags:
        warnings.warn(f"{path}: signal quality: {'; '.join(map(str, quality.flags))}; results may be less "
                      "reliable", stacklevel=3)
    windows = prepare_signal(record.signal, record.fs, dataclasses.replace(cfg, windows="all"))
    return windows, record, quality


def classify_windows(model, windows: np.ndarray, labels: list[str]) -> list[tuple[str, float]]:
    """(label, cosine score averaged over the windows) sorted best first."""
    if not labels:
        raise ValueError("give at least one label")
    if any(not label.strip() for label in labels):
        raise ValueError(f"labels must not be empty: {labels}")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"labels given twice: {repeated}")
    cfg = model.config.preprocess
    scores = np.asarray(model.zero_shot(windows, list(labels), fs=cfg.fs)).mean(axis=0)
    return sorted(zip(labels, map(float, scores)), key=lambda item: -item[1])


def classify_file(model, path: str, labels: list[str], force: bool = False,
                  fs: float | None = None) -> list[tuple[str, float]]:
    return classify_windows(model, record_windows(path, model.config.preprocess, force, fs)[0], labels)


def add_arguments(parser) -> None:
    parser.add_argument("file", help=FILE_HELP)
    parser.add_argument("--model", required=True, help="model folder")
    add_precision(parser)
    parser.add_argument("--labels", nargs="+", required=True,
                        help="free-text labels to rank; each is scored by the cosine similarity of its text "
                             "embedding with the ECG's embedding (-1 to 1, higher = closer)")
    add_force(parser)


FILE_HELP = ("an ECG record: WFDB .hea/.dat/.mat, CPSC .mat, SPH .h5, CODE-15 file.hdf5#row, GE MUSE / Philips / "
             "HL7 aECG XML, DICOM waveform, EDF/EDF+, CSV (docs/formats.md)")


def add_force(parser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="score a record that fails the signal-quality gate (flat, saturated, no QRS, ...)")
    parser.add_argument("--fs", type=float, default=None,
                        help="sampling rate in Hz of a file that does not state one (a CSV without a '# fs=' "
                             "line or time column)")


def run(args) -> int:
    from melp.eval.embed import load_model

    model = load_model(args.model, needs_text="classify", precision=args.precision, compile=args.compile)
    windows, record = record_windows(args.file, model.config.preprocess, args.force, args.fs)
    ranked = classify_windows(model, windows, args.labels)
    seconds = model.config.preprocess.seconds
    print(f"{args.file}: {record.signal.shape[1] / record.fs:.1f} s at {record.fs:g} Hz, "
          f"{len(windows)} window(s) of {seconds:g} s")
    width = max(len(label) for label, _ in ranked)
    print(f"{'rank':>4}  {'label':<{width}}  cosine")
    for rank, (label, score) in enumerate(ranked, 1):
        print(f"{rank:>4}  {label:<{width}}  {score:+.4f}")
    print("cosine: similarity of the ECG and label embeddings (averaged over windows); compare labels by rank, "
          "the values are not probabilities")
    return 0
