"""The installed command: ``meshlite --version`` and ``python -m meshlite``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import meshlite
from meshlite import _version
from meshlite.cli import main


def test_version_has_one_source() -> None:
    assert meshlite.__version__ == _version.__version__
    assert _version.__version__.count(".") >= 2


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"meshlite {meshlite.__version__}"


@pytest.mark.parametrize(("argv", "code", "expected"), [
    (["--version"], 0, f"meshlite {meshlite.__version__}"),
    (["check", "no-such-file.yaml"], 2, "cannot read"),
    ([], 2, "usage: meshlite"),
])
def test_python_dash_m_runs_the_command(argv: list[str], code: int, expected: str) -> None:
    done = subprocess.run([sys.executable, "-m", "meshlite", *argv], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == code, done.stderr
    assert expected in done.stdout + done.stderr
