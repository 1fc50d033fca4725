"""The `melp` command.

Each sub-command lives in the module that owns its work and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int | None``. This file only dispatches, importing
the chosen module lazily so that ``melp --help`` stays instant (no torch import).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# What a user's input can get wrong (a path, a value, a file's content): one line, no traceback.
# --debug (or MELP_DEBUG=1) shows the traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("melp.train.demo", "simulate data, pretrain the tiny model and evaluate it, offline on a laptop"),
    "synth": ("melp.synth.cli", "write simulated ECG-report pairs in a real dataset layout"),
    "plot": ("melp.synth.plot", "draw a 12-lead ECG record on paper-style grid"),
    "prepare": ("melp.data.prepare", "read a dataset once into a sharded memmap cache (or --verify one)"),
    "pretrain-text": ("melp.train.text_pretrain", "stage 1: masked-LM adaptation of the text model"),
    "pretrain": ("melp.train.pretrain", "stage 2: multi-scale ECG-language pretraining (Lightning)"),
    "zeroshot": ("melp.eval.zeroshot", "zero-shot classification with class descriptions"),
    "probe": ("melp.eval.probe", "linear probing on frozen ECG features"),
    "finetune": ("melp.eval.finetune", "fine-tune the ECG encoder on a labelled task"),
    "retrieve": ("melp.eval.retrieval", "ECG<->report retrieval recall@K"),
    "generate": ("melp.eval.generation", "report generation (beam search), BLEU-4 and ROUGE-L"),
    "bench-all": ("melp.eval.bench_all", "run a table of tasks x protocols"),
    "convert": ("melp.models.official", "convert the authors' pretrained MELP checkpoint into a melp model folder"),
    "classify": ("melp.eval.single", "rank free-text labels for one ECG file by cosine similarity (zero-shot)"),
    "report": ("melp.eval.single_report", "generate a report for one ECG file"),
    "serve": ("melp.serve.cli", "a local web page and HTTP API for a model (findings, reports, embeddings)"),
}

# Commands that run a model keep freed host memory for reuse (melp.train.host_memory): bf16 embedding
# at batch 16 ran 12-14 ECG/s with it against 9-13 without, where every large activation faulted in
# as new pages (docs/speed.md). pretrain and pretrain-text follow their config's keep_host_memory.
KEEPS_HOST_MEMORY = {"zeroshot", "probe", "finetune", "retrieve", "generate", "bench-all", "convert",
                     "classify", "report", "serve"}


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="melp",
        description="MELP: multi-scale ECG-language pretraining toolkit.",
        epilog=f"commands:\n{lines}\n\nRun `melp COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    return parser


def command_parser(name: str):
    """(module, parser) of one sub-command; importing the module must stay cheap (no torch)."""
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"melp {name}", description=help_)
    module.add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return module, parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] == "--version":
        from melp import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose one of: {', '.join(COMMANDS)}")
    module, parser = command_parser(name)
    args = parser.parse_args(rest)
    if name in KEEPS_HOST_MEMORY:
        from melp.train.host_memory import keep_freed_host_memory

        keep_freed_host_memory()  # before the command's first tensor: torch reads one setting once
    try:
        code = module.run(args)
    except USER_ERRORS as e:
        if args.debug or os.environ.get("MELP_DEBUG"):
            raise
        print(f"melp {name}: error: {e}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
