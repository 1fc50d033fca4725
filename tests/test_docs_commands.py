"""Every `melp ...` command in the fenced code blocks of README.md and docs/*.md parses with melp's own
parser (the command exists, every option exists and its value is accepted), and every one that can run
on a CPU in seconds runs on tiny stand-ins for the data and models it names (NOT_RUN says where the
others are exercised)."""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from melp.cli import COMMANDS, command_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
LAUNCHERS = {"srun", "nice", "time", "sudo"}  # words that may run `melp` as their command
COMMENT = re.compile(r"(^|\s)#.*$")  # a shell comment starts a word
OPERATOR = re.compile(r"\s(?:&&|\|\||;|\|)\s")


def shell_lines(block: str) -> list[tuple[int, str]]:
    """(offset of the first line, logical line): backslash continuations joined, comments dropped."""
    lines, start, parts = [], 0, []
    for i, line in enumerate(block.splitlines()):
        line = COMMENT.sub("", line.removeprefix("$ ")).rstrip()  # a '$ ' prompt marks a typed command
        if not parts:
            start = i
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            lines.append((start, " ".join(parts)))
            parts = []
    return lines


def melp_args(words: list[str]) -> list[str] | None:
    """The arguments after `melp` (or `python -m melp.cli`) when this shell command runs melp."""
    if "-m" in words and words[words.index("-m") + 1:][:1] == ["melp.cli"]:
        return words[words.index("-m") + 2:]
    head = 0
    while head < len(words) and words[head] in LAUNCHERS:
        head += 1
    if words[head:head + 1] != ["melp"] or words[head + 1:head + 2] and words[head + 1].endswith(":"):
        return None  # not melp, or melp's output ('melp prepare: 3 records written')
    return words[head + 1:]


def docs_commands() -> list[tuple[str, list[str]]]:
    """(file:line, arguments) of each melp command in the docs' shell (or untagged) code blocks."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for block in FENCE.finditer(text):
            if block.group(1) not in ("", "bash", "sh", "shell", "console"):
                continue  # python and other languages hold no shell commands
            first = text.count("\n", 0, block.start(2)) + 1
            for offset, line in shell_lines(block.group(2)):
                for command in OPERATOR.split(line):
                    try:
                        args = melp_args(shlex.split(command))
                    except ValueError:  # unbalanced quotes: prose in an untagged block, not a command
                        continue
                    if args is not None:
                        found.append((f"{path.relative_to(REPO)}:{first + offset}", args))
    return found


COMMANDS_IN_DOCS = docs_commands()


def test_the_docs_hold_commands():
    assert len(COMMANDS_IN_DOCS) >= 20  # the extraction finds them (README and docs/*.md)


@pytest.mark.parametrize("where, args", COMMANDS_IN_DOCS, ids=[w for w, _ in COMMANDS_IN_DOCS])
def test_docs_command_parses(where, args):
    assert args and args[0] in COMMANDS, f"{where}: `melp {' '.join(args)}`: no such command"
    _, parser = command_parser(args[0])
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(args[1:])
        except SystemExit as e:
            assert e.code == 0, f"{where}: `melp {shlex.join(args)}`: {stderr.getvalue().strip()}"


def test_extraction_joins_continuations_and_skips_comments_and_output():
    block = ("# build the cache\n$ melp prepare ptbxl --root /d \\\n    --out c   # comment\n"
             "melp prepare: 3 records written\ncd x && nice melp synth --n 3 --out s\n")
    commands = [melp_args(shlex.split(c)) for _, line in shell_lines(block) for c in OPERATOR.split(line)]
    assert [c for c in commands if c is not None] == [["prepare", "ptbxl", "--root", "/d", "--out", "c"],
                                                      ["synth", "--n", "3", "--out", "s"]]


def test_a_wrong_option_or_value_fails():
    for args in (["synth", "--n", "many"], ["prepare", "ptbxl", "--no-such-option"]):
        with pytest.raises(AssertionError, match="melp"):
            test_docs_command_parses("doc:1", args)


# Running them: every command that can run on a CPU in seconds runs, in a scratch folder, on tiny
# stand-ins for what the docs name (the same paths, smaller sizes). The others are listed with where
# they are exercised instead.
NOT_RUN = {
    "demo": "runs end to end as `melp demo --quick` in tests/test_demo.py",
    "convert": "needs the authors' checkpoint: tests/test_official.py converts their fixture",
    "pretrain-text": "the paper's BERT-base text stage: tests/test_text_pretrain.py runs it on a micro model",
    "pretrain": "the paper's model or several nodes: tests/test_train.py runs it on a micro model",
    "serve": "starts a server that runs until stopped: tests/test_serve.py and tests/test_serve_browser.py drive it",
}
STAND_INS = {  # path in the docs -> what the scratch folder holds there
    "/data/ptb-xl-1.0.3": "src/ptbxl", "/data/mimic-iv-ecg": "src/mimic",
    "ludb/data/1.hea": "src/ptbxl/records500/00000/00001_hr.hea", "record.hea": "src/ptbxl/records500/00000/00001_hr.hea",
}
SIZES = {"--n": "16", "--workers": "1"}  # records to simulate, prepare workers: seconds, not hours
MAKES_DATA = ("synth", "prepare")


def runnable(args: list[str]) -> list[str]:
    """A docs command with its paths replaced by the stand-ins and its sizes made tiny."""
    out = [STAND_INS.get(a, a) for a in args]
    for i, word in enumerate(out[:-1]):
        if word in SIZES:
            out[i + 1] = SIZES[word]
    return out


def test_docs_commands_run_on_tiny_stand_ins(tmp_path, monkeypatch):
    import melp
    from melp.cli import main
    from melp.synth import export

    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    export("ptbxl", "src/ptbxl", 60, seed=0)  # enough records for each split the commands read
    export("mimic-iv-ecg", "src/mimic", 16, seed=1)
    torch.manual_seed(0)
    model = melp.MELP.from_preset("tiny")
    for folder in ("runs/demo/pretrain/model", "models/melp-official"):  # an untrained tiny model
        model.save_pretrained(folder)
    unique = list(dict.fromkeys(tuple(runnable(args)) for _, args in COMMANDS_IN_DOCS))
    to_run = [list(c) for c in unique if c[0] not in NOT_RUN]
    # data first (synth, prepare), then what reads it, each in the docs' order
    to_run.sort(key=lambda c: c[0] not in MAKES_DATA or "--verify" in c)
    assert {c[0] for c in to_run} >= {"synth", "prepare", "plot", "zeroshot", "probe", "classify"}
    for args in to_run:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(args)
        assert code == 0, f"`melp {shlex.join(args)}` exited {code}: {err.getvalue().strip()[-500:]}"
    # what the docs say these commands write is there
    for path in ("sim/ptbxl", "data/sim-mimic", "data/sim-cinc", "ecg.png", "caches/ptbxl/index.parquet",
                 "caches/mimic-iv-ecg/index.parquet", "eval/zs/results.json", "eval/zs-official/results.json",
                 "eval/probe/results.json"):
        assert (tmp_path / path).exists(), f"no {path} after the docs' commands"
