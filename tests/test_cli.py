import subprocess
import sys

from itra import __version__
from itra.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as stop:
        assert stop.code == 0
    assert capsys.readouterr().out.strip() == f"itra {__version__}"


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "itra.cli", "--help"], capture_output=True, text=True, check=True)
    assert "usage: itra" in out.stdout
