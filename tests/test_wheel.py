"""The wheel installs into a fresh virtual environment and its command runs there.

One slow test (it builds the wheel and installs it with its dependencies, from the
pip cache when they are there): what a user gets from ``pip install meshlite-mesh``,
first with no extra, then with ``[http]``.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from _system import on_ci
from _wheel import build_wheel
from _wheel import run as _run

import meshlite


def _check_contents(wheel: Path, source: Path) -> None:
    """The wheel holds the package's every file (modules, py.typed, the dashboard's
    static files) and nothing else: no tests, docs or caches."""
    names = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    expected = {p.relative_to(source).as_posix()
                for p in (source / "meshlite").rglob("*") if p.is_file()}
    assert names == expected, (sorted(names - expected), sorted(expected - names))
    assert "meshlite/__main__.py" in names
    assert "meshlite/py.typed" in names
    assert "meshlite/observability/_dashboard/static/index.html" in names


def _check_base_install(bin_dir: Path, tmp_path: Path) -> None:
    """No extra: the core runs, and a feature of an extra names the extra."""
    version = _run([bin_dir / "meshlite", "--version"], tmp_path)
    metadata = _run([bin_dir / "python", "-c", "import importlib.metadata as m; "
                     "print(m.version('meshlite-mesh'))"], tmp_path)
    assert version.stdout.strip() == f"meshlite {metadata.stdout.strip()}", version.stderr
    demo = _run([bin_dir / "meshlite", "demo"], tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "pip install 'meshlite-mesh[http]'" in demo.stdout, demo.stdout
    http = _run([bin_dir / "python", "-c", "import meshlite as ml\n"
                 "ml.Mesh([ml.Service('users', backends=['http://127.0.0.1:9'])]).http('users')"],
                tmp_path)
    assert http.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: mesh.http() needs the 'http' extra, and 'httpx' is not "
        "installed: pip install 'meshlite-mesh[http]'"), http.stderr


@pytest.mark.timeout(900)
def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    wheel, source = build_wheel(tmp_path)
    _check_contents(wheel, source)

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", venv], tmp_path)
    assert made.returncode == 0, made.stderr
    bin_dir = venv / "bin"
    for extras in ("", "[http]"):
        installed = _run([bin_dir / "python", "-m", "pip", "install", "--quiet",
                          f"{wheel}{extras}"], tmp_path, timeout=600)
        if installed.returncode != 0 and not on_ci():
            pytest.skip(f"cannot install the dependencies here: {installed.stderr[-300:]}")
        assert installed.returncode == 0, installed.stderr
        if not extras:
            _check_base_install(bin_dir, tmp_path)

    version = _run([bin_dir / "meshlite", "--version"], tmp_path)
    assert version.stdout.strip() == f"meshlite {meshlite.__version__}", version.stderr
    where = _run([bin_dir / "python", "-c", "import meshlite; print(meshlite.__file__)"],
                 tmp_path)
    assert where.stdout.strip().startswith(str(venv)), where.stdout   # not this checkout
    demo = _run([bin_dir / "meshlite", "demo"], tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "round robin" in demo.stdout.lower(), demo.stdout    # the routing part ran too
    module = _run([bin_dir / "python", "-m", "meshlite", "--version"], tmp_path)
    assert module.stdout == version.stdout
