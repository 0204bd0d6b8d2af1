"""The wheel installs into a fresh virtual environment and its command runs there;
the sdist holds the project.

The wheel is built once for the module. One slow test installs it with its
dependencies (from the pip cache when they are there): what a user gets from ``pip
install meshlite-mesh``, first with no extra, then with ``[http]``. The others use the
wheel unpacked (a user's pytest session) and the sdist.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from _system import on_ci
from _wheel import build_sdist, build_wheel
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
    # The license its metadata names ships with it (PEP 639: dist-info/licenses/).
    licenses = [n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/licenses/" in n]
    assert [n.rsplit("/", 1)[1] for n in licenses] == ["LICENSE"], licenses


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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel (built once for this module's tests) and the source it came from."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.mark.timeout(900)
def test_wheel_installs_and_runs_in_a_fresh_venv(built: tuple[Path, Path], tmp_path: Path
                                                 ) -> None:
    wheel, source = built
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


def test_a_suite_run_after_importing_meshlite_keeps_its_warnings_as_errors(
        built: tuple[Path, Path], tmp_path: Path) -> None:
    # pytest rewrites the asserts of every package that registers a pytest11 plugin,
    # and warns (PytestAssertRewriteWarning) when one was imported before it starts:
    # a test runner that sets the application up first (Django's, a script calling
    # pytest.main()) then failed on its first line under `filterwarnings = error`.
    # Installed from the wheel, not editable (pytest marks no package of those).
    site = tmp_path / "site"
    with zipfile.ZipFile(built[0]) as archive:
        archive.extractall(site)
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n"
                                      "asyncio_default_fixture_loop_scope = function\n")
    (suite / "test_app.py").write_text("def test_app():\n    assert 1 + 1 == 2\n")
    code = ("import sys\nimport meshlite\n"
            "assert meshlite.__file__.startswith(sys.argv[1]), meshlite.__file__\n"
            "import pytest\n"
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'test_app.py']))")
    done = _run([sys.executable, "-c", code, site], suite, env={"PYTHONPATH": str(site)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "Warning" not in done.stdout + done.stderr


def test_the_sdist_holds_the_project_to_rebuild_and_test_it(built: tuple[Path, Path]
                                                            ) -> None:
    # setuptools alone took tests/test*.py and no more: not conftest.py, the helpers
    # (_system.py, _wheel.py...) nor the subfolders' tests, so the suite a packager
    # finds in the sdist could not run, nor could the docs it checks be read.
    source = built[1]
    sdist, _ = build_sdist(source.parent)
    expected = {p.relative_to(source).as_posix() for p in source.rglob("*")
                if p.is_file() and p.relative_to(source).parts[0] != "build"
                and not p.relative_to(source).parts[0].endswith(".egg-info")}
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]   # meshlite_mesh-VERSION
        names = {n.split("/", 1)[1] for n in archive.getnames()
                 if "/" in n and archive.getmember(n).isfile()}
    generated = {n for n in names if n in ("PKG-INFO", "setup.cfg")
                 or n.startswith("meshlite_mesh.egg-info/")}
    assert top.startswith("meshlite_mesh-")
    assert names - generated == expected, (sorted(names - generated - expected),
                                           sorted(expected - names))
    assert {"tests/conftest.py", "tests/_wheel.py", "tests/state/redis_server.py",
            "docs/getting-started.md", ".ci/lowest.txt", "CHANGELOG.md", "LICENSE",
            "meshlite/py.typed"} <= names
