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


def test_a_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "no-such-model"
    cmd = [sys.executable, "-m", "melp.cli", "classify", str(tmp_path / "x.hea"), "--model", str(missing),
           "--labels", "a"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("melp classify: error: ") and str(missing) in res.stderr
    res = subprocess.run([*cmd, "--debug"], capture_output=True, text=True)
    assert res.returncode == 1 and "Traceback" in res.stderr
