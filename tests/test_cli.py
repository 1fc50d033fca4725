import subprocess
import sys

from melp.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "melp.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip()
