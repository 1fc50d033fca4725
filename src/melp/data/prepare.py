"""`melp prepare`: read a dataset once into the sharded memmap cache, or `--verify` a cache.

    melp prepare ludb --root /data/ludb --out cache/ludb --workers 4
    melp prepare folder --root /data/muse-export --out cache/muse   # hospital files, any format
    melp prepare --verify cache/ludb            # every shard and table against meta.json's checksums
    melp prepare --verify cache/ludb --quick    # the tables and a random sample of shards

Re-running the same command after an interruption resumes: finished shards are kept.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from melp.data.adapters import ADAPTERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # checked in run(), not by argparse choices: a wrong name is then the CLI's one-line error (exit 2)
    parser.add_argument("dataset", nargs="?", metavar="DATASET",
                        help=f"dataset layout to read: one of {', '.join(ADAPTERS)}")
    parser.add_argument("--root", help="the dataset's own top folder, as distributed")
    parser.add_argument("--out", help="cache folder to write (resumed if it holds an unfinished build)")
    parser.add_argument("--format", default="auto", metavar="FORMAT",
                        help="dataset 'folder' only: read files of this format (muse, philips, aecg, dicom, edf, "
                             "csv, wfdb) and reject the others; default auto (every format melp reads)")
    parser.add_argument("--verify", metavar="CACHE", help="check an existing cache instead of building one: "
                        "every file's checksum, then its structure")
    parser.add_argument("--quick", action="store_true",
                        help="with --verify: check every table but only a random sample of shards")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--shard-size", type=int, default=None, help="records per shard (default 256)")
    parser.add_argument("--dtype", choices=["int16", "float16"], default="int16",
                        help="storage: int16 at 1 uV per unit (default) or float16 mV")
    parser.add_argument("--fs", type=int, default=500, help="target sampling rate in Hz (default 500)")
    parser.add_argument("--seconds", type=float, default=10.0, help="window length in seconds (default 10)")
    parser.add_argument("--windows", choices=["first", "all"], default="first",
                        help="first window of each record, or all consecutive windows")
    parser.add_argument("--bandpass", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                        help="zero-phase band-pass in Hz before storing (default: none)")
    parser.add_argument("--normalize", choices=["minmax", "zscore", "none"], default="minmax",
                        help="normalisation applied at load time (stored data stay in mV)")
    parser.add_argument("--allow-missing-leads", action="store_true",
                        help="keep records lacking some of the 12 leads, zero-filled (default: reject them)")
    parser.add_argument("--quality", choices=["reject", "flag", "off"], default="flag",
                        help="signal-quality gate (flat, saturated, implausible, no QRS...): reject failing "
                             "records, flag them in the index's quality column (default), or off")
    parser.add_argument("--overwrite", action="store_true", help="discard what --out holds and start over")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def first_reject_per_kind(rejects_csv: Path) -> dict[str, tuple[str, str]]:
    """kind (``reason_group``) -> the first (record, full reason) of that kind in rejects.csv."""
    from melp.data.cache import reason_group

    first: dict[str, tuple[str, str]] = {}
    with open(rejects_csv, newline="") as f:
        for row in csv.DictReader(f):
            first.setdefault(reason_group(row["reason"]), (row["record"], row["reason"]))
    return first


def print_rejects(rejects_csv: Path, by_kind: dict[str, int]) -> None:
    """Counts per kind of reject, each with one reason quoted whole (its paths intact: the kind
    replaces them by <path>, which alone would not say which file to look at)."""
    if not by_kind:
        return
    examples = first_reject_per_kind(rejects_csv)
    for kind, n in by_kind.items():
        print(f"  rejected {n:>7}  {kind}")
        if kind in examples:
            record, reason = examples[kind]
            print(f"{'':20}e.g. {record}: {reason}")
    print(f"  every rejected record with its reason: {rejects_csv}")


def check_build_args(args: argparse.Namespace) -> None:
    """User mistakes found before any work, raised as the errors that the CLI prints on one line
    with exit code 2 (melp.cli.USER_ERRORS)."""
    if not (args.dataset and args.root and args.out):
        raise ValueError("DATASET, --root and --out are required (or --verify CACHE)")
    if args.dataset not in ADAPTERS:
        raise ValueError(f"unknown dataset {args.dataset!r}; choose one of: {', '.join(ADAPTERS)}")
    root, out = Path(args.root), Path(args.out)
    if not root.exists():
        raise FileNotFoundError(f"--root {root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"--root {root}: is a file, not the dataset's folder")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: is a file, not a cache folder")
    if getattr(args, "format", "auto") != "auto":
        from melp.data.adapters.folder import FORMATS

        if args.dataset != "folder":
            raise ValueError(f"--format applies to the dataset 'folder' only, not {args.dataset!r}")
        if args.format not in FORMATS:
            raise ValueError(f"unknown --format {args.format!r}; choose one of: {', '.join(FORMATS)}")


def run(args: argparse.Namespace) -> int:
    from melp.data.cache import DEFAULT_SHARD_SIZE, build_cache, verify_cache

    if args.verify:
        if not Path(args.verify).is_dir():
            raise NotADirectoryError(f"--verify {args.verify}: not a cache folder")
        problems = verify_cache(args.verify, quick=args.quick)
        if problems:
            print(f"cache {args.verify}: {len(problems)} problem(s)", file=sys.stderr)
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
            return 1
        print(f"cache {args.verify}: OK")
        return 0
    check_build_args(args)

    from melp.data.adapters import get_adapter
    from melp.data.preprocess import PreprocessConfig

    cfg = PreprocessConfig(
        fs=args.fs, seconds=args.seconds, windows=args.windows,
        bandpass=tuple(args.bandpass) if args.bandpass else None, normalize=args.normalize,
    )
    # a dataset folder in the wrong layout (FileNotFoundError/ValueError) or a cache another build
    # holds (CacheBusyError) is printed by the CLI on one line with exit code 2, like the checks above
    adapter = get_adapter(args.dataset)
    if args.dataset == "folder" and args.format != "auto":
        adapter = adapter.with_format(args.format)
    counts = build_cache(
        adapter, args.root, args.out, cfg,
        workers=args.workers, shard_size=args.shard_size or DEFAULT_SHARD_SIZE,
        dtype=args.dtype, overwrite=args.overwrite, progress=not args.quiet,
        allow_missing_leads=args.allow_missing_leads, quality=args.quality,
    )
    print(f"{args.out}: {counts['records_written']} of {counts['records_in_table']} table records written "
          f"({counts['windows_written']} windows), {counts['rejected']} rejected")
    print_rejects(Path(args.out) / "rejects.csv", counts["rejected_by_reason"])
    if counts["quality_flagged"]:
        print(f"  {counts['quality_flagged']} records flagged by the signal-quality gate (index column 'quality')")
    if counts["clipped_windows"]:
        print(f"  {counts['clipped_windows']} windows had samples clipped to the storage range")
    return 0
