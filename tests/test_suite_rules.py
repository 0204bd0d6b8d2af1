"""The suite's own rules: under ``CI=true`` a skipped test fails (checked in inner
pytest sessions, ``pytester``), so CI cannot pass with tests that never ran; and CI runs
the suite both serially and in parallel workers."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent

SKIPPING = """
import pytest

def test_needs_a_program():
    pytest.skip("frobnicate is not installed")

def test_runs():
    assert True
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """An inner session with this suite's conftest and helpers."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(_system=(TESTS / "_system.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_inner=SKIPPING)
    pytester.syspathinsert()
    return pytester


def run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                        "-p", "no:hypothesispytest", "test_inner.py")


def test_a_skip_fails_under_ci(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = run(inner)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*skipped under CI=true*frobnicate is not installed*"])


def test_a_skip_is_a_skip_elsewhere(inner: pytest.Pytester,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    run(inner).assert_outcomes(passed=1, skipped=1)


def test_ci_runs_the_suite_in_parallel_and_serially() -> None:
    commands = [line.strip() for line in (TESTS.parent / ".ci" / "run").read_text(
        encoding="utf-8").splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in commands  # lint, types, then the whole suite in two workers
    make = (TESTS.parent / "Makefile").read_text(encoding="utf-8")
    recipe = make[make.index("\ntest:"):].split("\n\n")[0]
    assert "pytest -n 2" in recipe, recipe
    serial = [c for c in commands if "pytest" in c and " -n " not in c]
    assert serial, "CI must also run the suite in one process"
    assert commands.index("make test") < commands.index(serial[0])
