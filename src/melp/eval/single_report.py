"""``melp report FILE --model DIR``: a generated report for one ECG file.

Same input handling as ``melp classify`` (any format and rate, absent leads zero-filled, the
signal-quality gate with ``--force``). A record longer than one window gets one report per consecutive window, each labelled
with its time span: text cannot be averaged, and showing every window hides nothing.
"""
from __future__ import annotations

from melp.eval.single import FILE_HELP, add_force, record_windows


def report_file(model, path: str, beams: int = 3, max_len: int | None = None,
                force: bool = False, fs: float | None = None) -> list[tuple[float, float, str]]:
    """[(start s, end s, report)] for each window of the record."""
    cfg = model.config.preprocess
    windows, _ = record_windows(path, cfg, force, fs)
    texts = model.generate(windows, fs=cfg.fs, beams=beams, max_len=max_len)
    return [(i * cfg.seconds, (i + 1) * cfg.seconds, t) for i, t in enumerate(texts)]


def add_arguments(parser) -> None:
    parser.add_argument("file", help=FILE_HELP)
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--beams", type=int, default=3, help="beam width (1: greedy)")
    parser.add_argument("--max-len", type=int, default=None, help="longest report in tokens (default: the model's)")
    add_force(parser)


def run(args) -> int:
    from melp.eval.embed import load_model

    model = load_model(args.model, needs_text="report")
    reports = report_file(model, args.file, args.beams, args.max_len, args.force, args.fs)
    if len(reports) == 1:
        print(reports[0][2])
    else:
        for start, end, text in reports:
            print(f"[{start:g}-{end:g} s] {text}")
    return 0
