"""`melp synth`: write simulated ECG-report pairs in a real dataset layout."""
from __future__ import annotations

import time

from melp.synth.exporters import FORMATS


def add_arguments(parser) -> None:
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="on-disk layout to write")
    parser.add_argument("--n", type=int, default=1000, help="number of ECGs (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same ECGs")
    parser.add_argument("--out", required=True, help="output folder (created if needed)")


def run(args) -> int:
    from melp.synth import export

    start = time.perf_counter()
    out = export(args.format, args.out, args.n, args.seed, progress=True)
    print(f"wrote {args.n} simulated ECGs in {args.format} layout to {out} ({time.perf_counter() - start:.1f} s)")
    return 0
