"""Building meshlite's wheel and running commands in a fresh virtual environment, for
tests/test_wheel.py and tests/test_wheel_minimums.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "build_wheel", "run"]

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str | Path], cwd: Path, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``argv`` in ``cwd``, outside this checkout's environment (no ``PYTHONPATH``,
    ``VIRTUAL_ENV`` or ``MESHLITE_*``)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("MESHLITE_")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)


def _source(tmp_path: Path) -> Path:
    """What the wheel is built from: the project's files alone, copied, so that a
    ``build/`` left in the checkout by an earlier in-tree build (whose stale modules
    setuptools would ship) cannot leak into it."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "meshlite", source / "meshlite",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    return source


def build_wheel(tmp_path: Path) -> tuple[Path, Path]:
    """Build the wheel under ``tmp_path``; returns it and the source it was built from.

    Raises:
        AssertionError: the build failed (with pip's output).
    """
    source = _source(tmp_path)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                 "-w", tmp_path / "dist", source], tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("meshlite_mesh-*.whl")
    return wheel, source
