"""Building meshlite's wheel and running commands in a fresh virtual environment, for
tests/test_wheel.py and tests/test_wheel_minimums.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "build_sdist", "build_wheel", "run"]

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str | Path], cwd: Path, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``argv`` in ``cwd``, outside this checkout's environment (no ``PYTHONPATH``,
    ``VIRTUAL_ENV`` or ``MESHLITE_*``)."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("MESHLITE_")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)


PROJECT_FOLDERS = ("meshlite", "tests", "docs", "examples", "benchmarks", ".ci")
PROJECT_FILES = ("pyproject.toml", "MANIFEST.in", "README.md", "CHANGELOG.md", "LICENSE",
                 "Makefile", "mkdocs.yml")
"""The project's files: what the wheel and the sdist are built from."""

NOT_THE_PROJECT = shutil.ignore_patterns(
    "__pycache__", "*.py[cod]", ".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache")
"""What a checkout's folders hold that is not the project's (as .gitignore says)."""


def _source(tmp_path: Path) -> Path:
    """What the wheel and the sdist are built from: the project's files alone, copied
    (once per ``tmp_path``), so that a ``build/`` left in the checkout by an earlier
    in-tree build (whose stale modules setuptools would ship) cannot leak into them."""
    source = tmp_path / "source"
    if source.exists():
        return source
    for name in PROJECT_FOLDERS:
        shutil.copytree(ROOT / name, source / name, ignore=NOT_THE_PROJECT)
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, source / name)
    return source


def build_wheel(tmp_path: Path, python: str | Path | None = None) -> tuple[Path, Path]:
    """Build the wheel under ``tmp_path``; returns it and the source it was built from.

    Args:
        tmp_path: Where the source is copied and the wheel built.
        python: An interpreter whose own setuptools builds it (no build isolation, as
            a packager builds); by default pip builds it with the newest setuptools
            ``[build-system]`` allows, in an environment of its own.

    Raises:
        AssertionError: the build failed (with pip's output).
    """
    source = _source(tmp_path)
    isolation = [] if python is None else ["--no-build-isolation"]
    built = run([python or sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                 *isolation, "-w", tmp_path / "dist", source], tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("meshlite_mesh-*.whl")
    return wheel, source


def build_sdist(tmp_path: Path) -> tuple[Path, Path]:
    """Build the sdist under ``tmp_path`` (from the source :func:`build_wheel` copied
    there, if it did); returns it and that source.

    Raises:
        AssertionError: the build failed (with setuptools' output).
    """
    source = _source(tmp_path)
    built = run([sys.executable, "-m", "build", "--sdist", "--outdir", tmp_path / "sdist",
                 source], tmp_path)   # as `make dist` does
    assert built.returncode == 0, built.stdout + built.stderr
    (sdist,) = (tmp_path / "sdist").glob("meshlite_mesh-*.tar.gz")
    return sdist, source
