"""Every `melp ...` command in the fenced code blocks of README.md and docs/*.md parses with melp's own
parser: the command exists, every option exists and its value is accepted. Parsing only, nothing runs."""
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
