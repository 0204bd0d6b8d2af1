"""A large reloaded file, or one with YAML anchors, is parsed in a separate Python
process: its parse holds no lock the event loop needs."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite.config import _incremental as incremental_module
from meshlite.config._load import gc_paused

BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi",
                                                                   strict=True)]
    + ["services: {s0: {backends: [http://127.0.0.1:1], metadata: *i}}", ""])


def config(attempts: str, services: int = 5) -> str:
    lines = ["services:"]
    for i in range(services):
        lines += [f"  s{i}:", '    backends: ["http://127.0.0.1:1"]',
                  f"    retry: {{attempts: {attempts}}}"]
    return "\n".join(lines) + "\n"


def not_here(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("parsed in this process")


@pytest.fixture
def apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reloaded file goes to the separate process; none is parsed here."""
    monkeypatch.setattr(incremental_module, "OUT_OF_PROCESS_BYTES", 0)
    monkeypatch.setattr(incremental_module, "parse", not_here)


@pytest.mark.usefixtures("apart")
async def test_a_large_file_is_parsed_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config("3"), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={"TRIES": "4"}, hot_reload=False)
    async with mesh:
        path.write_text(config("\"${TRIES}\""), encoding="utf-8")  # the mesh's environ there
        assert await mesh.reload() is True
        assert mesh.config_version == 1
        for i in range(5):
            retry = next(p for p in mesh.service(f"s{i}").pipeline.walk()
                         if p.kind == "retry")
            assert retry.options.attempts == 4


async def test_a_bad_file_parsed_apart_is_rejected_with_every_problem(
        tmp_path: Path, apart: None) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config("3"), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={"TRIES": "lots"}, hot_reload=False)
    async with mesh:
        path.write_text(config("\"${TRIES}\"").replace("    retry", "    tiemout: 1\n    retry", 1),
                        encoding="utf-8")
        assert await mesh.reload() is False
        path.write_text("services: [unclosed\n", encoding="utf-8")
        assert await mesh.reload() is False
    value, syntax = mesh.reload_errors
    assert "services.s0.tiemout" in str(value)
    assert "services.s0.retry.attempts: must be a valid integer, got '***'" in value.errors
    assert "lots" not in str(value)  # a value from the environment stays masked
    assert str(path) in str(syntax)
    assert "YAML" in str(syntax)
    assert mesh.config_version == 0


async def test_an_alias_bomb_is_refused_in_the_other_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incremental_module, "parse", not_here)  # anchors: parsed apart
    path = tmp_path / "mesh.yaml"
    path.write_text(config("3"), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    async with mesh:
        path.write_text(BOMB, encoding="utf-8")
        assert await mesh.reload() is False
    [error] = mesh.reload_errors
    assert "holds more than 1,000,000 values" in str(error)


async def test_without_a_python_to_run_it_parses_in_a_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(incremental_module, "OUT_OF_PROCESS_BYTES", 0)
    path = tmp_path / "mesh.yaml"
    path.write_text(config("3"), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    # Missing, and embedded in another program (never run with -m).
    executables = [str(tmp_path / "python3-missing"), "/usr/bin/uwsgi"]
    async with mesh:
        for attempts, executable in enumerate(executables, start=4):
            monkeypatch.setattr(sys, "executable", executable)
            path.write_text(config(str(attempts)), encoding="utf-8")
            caplog.clear()
            with caplog.at_level(logging.WARNING, "meshlite.config"):
                assert await mesh.reload() is True
            assert "parsing it in a worker thread" in caplog.text
    assert mesh.config_version == 2
    retry = next(p for p in mesh.service("s0").pipeline.walk() if p.kind == "retry")
    assert retry.options.attempts == 5


def test_collection_resumes_when_the_last_of_overlapping_pauses_ends() -> None:
    # Two reloads on one loop pause collection across turns of the loop, so their
    # pauses overlap without nesting: the first to end must not resume it, the last
    # must (before, the second restored "disabled", leaving collection off for good).
    assert gc.isenabled()
    first, second = gc_paused(), gc_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()
