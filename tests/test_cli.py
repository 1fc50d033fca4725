import subprocess
import sys

from melp.cli import COMMANDS, _top_parser, command_parser, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "melp.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip()


def test_a_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "no-such-model"
    cmd = [sys.executable, "-m", "melp.cli", "classify", str(tmp_path / "x.hea"), "--model", str(missing),
           "--labels", "a"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("melp classify: error: ") and str(missing) in res.stderr
    res = subprocess.run([*cmd, "--debug"], capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" in res.stderr


# Libraries that take seconds to import; printing a command's options must not load them.
HEAVY = ("torch", "transformers", "lightning", "sklearn", "matplotlib")

# Runs in a fresh interpreter: `melp --help`, then every `melp COMMAND --help`, printing after each
# the heavy libraries that are loaded by then (one line per call).
_HELP_PROBE = """
import contextlib, io, sys
from melp.cli import COMMANDS, _top_parser, command_parser, main

for argv in [["--help"], *([name, "--help"] for name in COMMANDS)]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
    loaded = [m for m in {heavy!r} if m in sys.modules]
    print(" ".join(argv) + " -> " + ",".join(loaded))
"""


def test_help_does_not_import_heavy_libraries():
    res = subprocess.run([sys.executable, "-c", _HELP_PROBE.format(heavy=HEAVY)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    loaded = dict(line.split(" -> ") for line in res.stdout.splitlines())
    assert len(loaded) == 1 + len(COMMANDS)
    # a failure names each command and what was loaded by the time its help was printed
    assert {call: libs for call, libs in loaded.items() if libs} == {}


def test_set_takes_one_key_value_and_repeats_in_every_command():
    for name in COMMANDS:
        parser = command_parser(name)[1]
        set_options = [a for a in parser._actions if "--set" in a.option_strings]
        if not set_options:
            continue
        args = parser.parse_known_args(["--set", "a.b=1", "--set", "c=x=y"])[0]
        assert getattr(args, set_options[0].dest) == ["a.b=1", "c=x=y"], name


def test_every_option_and_argument_of_every_command_has_help():
    parsers = {"melp": _top_parser(), **{name: command_parser(name)[1] for name in COMMANDS}}
    missing = [f"{name} {(action.option_strings or [action.dest])[0]}" for name, parser in parsers.items()
               for action in parser._actions
               if action.dest != "help" and not (action.help or "").strip()]
    assert missing == []


def test_model_commands_keep_freed_host_memory_and_pretrain_follows_its_config(tmp_path, monkeypatch):
    """An inference command applies melp.train.host_memory's settings before its work starts; pretrain
    leaves that to its trainer.keep_host_memory (which can be false)."""
    from melp.train import host_memory

    calls = []
    monkeypatch.setattr(host_memory, "keep_freed_host_memory", lambda: calls.append(1) or True)
    missing = str(tmp_path / "missing")
    assert main(["classify", missing + ".hea", "--model", missing, "--labels", "AF"]) == 2  # fails at once
    assert calls == [1]
    calls.clear()
    assert main(["pretrain", "--config", missing + ".yaml", "--out", str(tmp_path / "run")]) == 2
    assert calls == []
