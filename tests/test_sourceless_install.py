"""meshlite reads the names its packages export from the source of their
``__init__.py``: installed without its sources (``compileall -b``, then the ``.py``
files deleted), ``import meshlite`` says so, rather than failing to decode a compiled
file as text (a ``UnicodeDecodeError`` naming no cause)."""

from __future__ import annotations

import compileall
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_sourceless_install_says_what_it_lacks(tmp_path: Path) -> None:
    copy = tmp_path / "meshlite"
    shutil.copytree(ROOT / "meshlite", copy,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    assert compileall.compile_dir(str(copy), quiet=1, legacy=True)
    for source in copy.rglob("*.py"):
        source.unlink()
    done = subprocess.run([sys.executable, "-c", "import meshlite"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: meshlite reads the names it exports"), done.stderr
    assert "install meshlite with its .py files" in last
