"""The lowest versions pyproject.toml allows are enough: each extra's features work.

``pip install 'meshlite-mesh[all]'`` may pick any version at or above each lower
bound (a user's other pins decide), so the bounds are tested as they are: the wheel
is installed into a fresh virtual environment with every requirement of the core
and of each extra pinned to its lower bound, and tests/_extras_probe.py uses one
feature of each extra there, against real loopback servers and a real Redis. The
same probe runs in this environment (the newest versions) too.
"""

from __future__ import annotations

import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from _system import on_ci, require_program
from _wheel import ROOT, build_wheel, run
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from state.redis_server import RedisServer

PROBE = ROOT / "tests" / "_extras_probe.py"
PINS = ROOT / ".ci" / "lowest.txt"  # what `make test-lowest` runs the suite under


def _requirements(wheel: Path) -> list[Requirement]:
    """What ``meshlite-mesh[all]`` requires: the core and each extra ``all`` names."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    found = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    (everything,) = [r for r in found if r.marker and r.marker.evaluate({"extra": "all"})]
    extras = {""} | everything.extras
    return [r for r in found if r.name != "meshlite-mesh" and (
        r.marker is None or any(r.marker.evaluate({"extra": e}) for e in extras))]


def lowest(wheel: Path) -> list[str]:
    """A pip constraint pinning each requirement to its lower bound (``>=``)."""
    pins = {f"{r.name}=={s.version}" for r in _requirements(wheel)
            for s in r.specifier if s.operator == ">="}
    return sorted(pins)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built, _ = build_wheel(tmp_path_factory.mktemp("wheel"))
    return built


def _probe(python: str | Path, tmp_path: Path) -> list[str]:
    server = RedisServer(require_program("redis-server", "redis-server")).start()
    try:  # -I: not this checkout's tests/ (the script's folder) on sys.path
        done = run([python, "-I", PROBE, server.url], tmp_path, timeout=300)
    finally:
        server.close()
    lines = done.stdout.splitlines()
    failed = [line for line in lines if not line.endswith(": ok")]
    assert failed == [], done.stdout + done.stderr
    assert done.returncode == 0, done.stderr
    return lines


def test_every_requirement_has_a_lower_bound(wheel: Path) -> None:
    unbounded = [str(r) for r in _requirements(wheel)
                 if not any(s.operator == ">=" for s in r.specifier)]
    assert unbounded == []
    assert "uvicorn==0.35" in lowest(wheel)


def _pinned(lines: list[str]) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines skipped), by canonical name."""
    pins: dict[str, str] = {}
    for line in lines:
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if name:
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lowest_versions_run_pins_the_lower_bounds(wheel: Path) -> None:
    # .ci/lowest.txt is kept by hand: a bound raised in pyproject.toml alone would
    # leave the suite running on versions no user can install any more.
    assert _pinned(PINS.read_text(encoding="utf-8").splitlines()) == _pinned(lowest(wheel))


def test_each_extra_works_here(tmp_path: Path) -> None:
    features = _probe(sys.executable, tmp_path)
    assert len(features) >= 10


@pytest.mark.timeout(1200)
def test_each_extra_works_at_the_lowest_versions_allowed(wheel: Path, tmp_path: Path
                                                         ) -> None:
    constraints = tmp_path / "lowest.txt"
    constraints.write_text("\n".join(lowest(wheel)) + "\n", encoding="utf-8")
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", venv], tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run([python, "-m", "pip", "install", "--quiet", "-c", constraints,
                     f"{wheel}[all]"], tmp_path, timeout=900)
    if installed.returncode != 0 and not on_ci():
        pytest.skip(f"cannot install the lowest versions here: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    features = _probe(python, tmp_path)
    assert len(features) >= 10


def test_the_lowest_setuptools_allowed_builds_the_wheel(tmp_path: Path) -> None:
    # pip builds with the newest setuptools; a packager (--no-build-isolation) with the
    # one installed, which [build-system] allows down to its lower bound. 68 to 76
    # refused `license = "MIT"` (an SPDX expression) as an invalid config.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (setuptools,) = [Requirement(r) for r in config["build-system"]["requires"]
                     if Requirement(r).name == "setuptools"]
    (bound,) = [s.version for s in setuptools.specifier if s.operator == ">="]
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", venv], tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run([python, "-m", "pip", "install", "--quiet", f"setuptools=={bound}",
                     "wheel"], tmp_path, timeout=300)
    if installed.returncode != 0 and not on_ci():
        pytest.skip(f"cannot install setuptools {bound} here: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    wheel, _ = build_wheel(tmp_path, python=python)
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(archive.read(name).decode())
    assert metadata["License-Expression"] == "MIT"
