"""The audit log (``ml.AuditLog``, ``mesh.audit``, ``audit:`` in a config) and
``mesh.reload()``: every config change, applied or rejected, is one JSON line;
secrets from ``${VAR}`` never reach the file or the logs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import meshlite as ml
from meshlite._audit import AuditLog

SECRET = "tok-Zq81-very-secret-value"
ENV = {"API_TOKEN": SECRET}

GOOD = """
services:
  users:
    backends: ["http://127.0.0.1:80", "http://127.0.0.2:80"]
    headers: {{Authorization: "Bearer ${{API_TOKEN}}"}}
    retry: {{attempts: {attempts}}}
    circuit_breaker: {{failure_rate: 0.5, window: 10, min_calls: 5}}
audit: audit.jsonl
"""


def bad_config() -> str:
    """The secret lands in a field that rejects it: the error is about that field."""
    return GOOD.format(attempts=2).replace("    retry:",
                                           '    timeout: "${API_TOKEN}"\n    retry:')


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "mesh.yaml"
    p.write_text(GOOD.format(attempts=2), encoding="utf-8")
    return p


def put(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def records(path: Path) -> list[dict[str, Any]]:
    audit = path.parent / "audit.jsonl"
    return [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]


# -- AuditLog ------------------------------------------------------------------


def test_record_is_one_json_line_with_every_field(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", wall=lambda: 1767225600.25)
    assert log.record(actor="admin:127.0.0.1", action="backend.eject",
                      target="users/backends/http://a:1", result="ok",
                      details={"seconds": None}) is True
    log.record(actor="api", action="config.reload", target="/m.yaml", result="rejected",
               error="bad", old_sha256="0" * 64, new_sha256="1" * 64)
    lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == {"time": "2026-01-01T00:00:00.250Z", "actor": "admin:127.0.0.1",
                     "action": "backend.eject", "target": "users/backends/http://a:1",
                     "result": "ok", "error": None, "old_sha256": None, "new_sha256": None,
                     "details": {"seconds": None}}
    assert log.read()[1]["error"] == "bad"
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600


def test_appends_to_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "a.jsonl"
    target.write_text('{"earlier": true}\n', encoding="utf-8")
    AuditLog(target).record(actor="api", action="x.y", target="t", result="ok")
    assert [next(iter(r)) for r in AuditLog(target).read()] == ["earlier", "time"]


def test_records_from_many_threads_never_interleave(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    detail = {"blob": "x" * 3000}  # long lines: a torn write would show

    def write(n: int) -> None:
        for i in range(50):
            log.record(actor=f"t{n}", action="a.b", target=str(i), result="ok",
                       details=detail)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = log.read()
    assert len(got) == 400
    assert {(r["actor"], r["target"]) for r in got} == {
        (f"t{n}", str(i)) for n in range(8) for i in range(50)}


def test_mask_hides_secrets_in_every_string_and_keeps_json(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    log.record(actor="api", action="a.b", target=f"x {SECRET}", result="error",
               error=f'got "{SECRET}"', details={"errors": [SECRET], "n": 5},
               mask=lambda s: s.replace(SECRET, "***"))
    text = (tmp_path / "a.jsonl").read_text(encoding="utf-8")
    assert SECRET not in text
    record = json.loads(text)
    assert (record["target"], record["details"]) == ("x ***", {"errors": ["***"], "n": 5})


HOSTILE = "red \x1b[31m, flipped \u202e, NEL \x85, line\nbreak, \u2028, \x7f, \x9b, caf\u00e9"


def test_a_record_is_one_printable_line_whatever_its_strings_hold(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    for n in range(2):
        assert log.record(actor=f"admin:{HOSTILE}", action="a.b", target=HOSTILE,
                          result="error", error=HOSTILE, details={HOSTILE: [HOSTILE, n]})
    data = (tmp_path / "a.jsonl").read_bytes()
    assert data.isascii()
    text = data.decode("ascii")
    lines = text.splitlines()  # splits at \x85 and U+2028 too, unlike `for line in f`
    assert len(lines) == 2
    assert text.count("\n") == 2
    assert all(line.isprintable() for line in lines)  # no C0, C1, DEL or bidi left
    for n, line in enumerate(lines):
        record = json.loads(line)
        assert record["actor"] == f"admin:{HOSTILE}"
        assert record["target"] == record["error"] == HOSTILE
        assert record["details"] == {HOSTILE: [HOSTILE, n]}
    assert [r["target"] for r in log.read()] == [HOSTILE, HOSTILE]


def test_a_string_no_encoding_can_write_is_recorded(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    path = "/etc/\udcff.yaml"  # os.fsdecode of a file name that is not UTF-8
    assert log.record(actor="api", action="config.load", target=path, result="ok")
    assert log.read()[0]["target"] == path  # it raised UnicodeEncodeError before


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ml.ConfigError, match="AuditLog: path must be a file path"):
        AuditLog("")
    with pytest.raises(ml.ConfigError, match=r"cannot append to .*missing") as info:
        AuditLog(tmp_path / "missing" / "a.jsonl")
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(ml.ConfigError, match="wall must be"):
        AuditLog(tmp_path / "a.jsonl", wall=5)  # type: ignore[arg-type]
    log = AuditLog(tmp_path / "a.jsonl")
    with pytest.raises(ml.ConfigError, match="result must be 'applied' or 'rejected'"):
        log.record(actor="api", action="a.b", target="t", result="done")
    mesh = ml.Mesh()
    with pytest.raises(ml.ConfigError, match=r"Mesh: audit must be an ml\.AuditLog or None"):
        mesh.audit = str(tmp_path / "a.jsonl")  # type: ignore[assignment]
    mesh.audit = log
    assert mesh.audit is log
    mesh.audit = None
    assert mesh.audit is None


def test_write_failure_is_logged_not_raised(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    log = AuditLog(folder / "a.jsonl")
    os.remove(log.path)
    folder.rmdir()
    with caplog.at_level(logging.ERROR, logger="meshlite.audit"):
        assert log.record(actor="api", action="backend.eject", target="t", result="ok") is False
    assert "cannot append the audit record of backend.eject" in caplog.text


# -- config: audit section and reloads ---------------------------------------------


def test_config_section_opens_the_log_relative_to_the_file(path: Path) -> None:
    mesh = ml.Mesh.from_config(str(path), environ=ENV)
    assert mesh.audit is not None
    assert mesh.audit.path == str(path.parent / "audit.jsonl")
    (load,) = records(path)
    assert (load["actor"], load["action"], load["result"]) == ("api", "config.load", "applied")
    assert load["new_sha256"] == sha(path.read_text(encoding="utf-8"))
    assert load["details"] == {"services": ["users"]}


def test_config_section_mapping_form_and_errors(tmp_path: Path,
                                                write_config: Callable[..., str]) -> None:
    target = tmp_path / "elsewhere.jsonl"
    mesh = ml.Mesh.from_config(write_config(f"audit: {{path: {target}}}\n"), environ={})
    assert mesh.audit is not None
    assert mesh.audit.path == str(target)
    with pytest.raises(ml.ConfigError) as info:
        ml.Mesh.from_config(write_config("audit: nowhere/a.jsonl\n"), environ={})
    assert info.value.errors == (
        "audit.path: 'nowhere/a.jsonl': its directory does not exist; create it or pick "
        "another path",)
    with pytest.raises(ml.ConfigError, match=r"audit\.path: must be a file path"):
        ml.Mesh.from_config(write_config("audit: ''\n"), environ={})
    overridden = ml.Mesh.from_config(write_config("services: {}\n"), environ={
        "MESHLITE_AUDIT__PATH": str(tmp_path / "o.jsonl")})
    assert overridden.audit is not None
    assert overridden.audit.path == str(tmp_path / "o.jsonl")


async def test_reload_applies_and_audits_with_digests(path: Path) -> None:
    mesh = ml.Mesh.from_config(str(path), environ=ENV)
    old_text = text_of(path)
    new_text = GOOD.format(attempts=4)
    put(path, new_text)
    async with mesh:
        assert await mesh.reload() is True
        assert mesh.config_version == 1
        assert await mesh.reload() is True  # unchanged: still audited, no new version
        assert mesh.config_version == 1
    _, applied, unchanged = records(path)
    assert applied["action"] == "config.reload"
    assert (applied["actor"], applied["result"], applied["target"]) == (
        "api", "applied", str(path))
    assert (applied["old_sha256"], applied["new_sha256"]) == (sha(old_text), sha(new_text))
    assert applied["details"] == {"version": 1, "added": [], "removed": [],
                                  "changed": ["users"]}
    assert (unchanged["result"], unchanged["details"]) == ("ok", {"changed": False})
    assert unchanged["old_sha256"] == unchanged["new_sha256"] == sha(new_text)


async def test_rejected_reload_keeps_config_and_never_writes_the_secret(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mesh = ml.Mesh.from_config(str(path), environ=ENV)
    old_text = text_of(path)
    put(path, bad_config())
    with caplog.at_level(logging.DEBUG):
        assert await mesh.reload() is False
        assert await mesh.reload() is False  # the same bad file is checked again
    assert mesh.config_version == 0
    assert len(mesh.reload_errors) == 2
    error = mesh.reload_errors[-1]
    assert any(e.startswith("services.users.timeout") for e in error.errors)
    _, rejected, again = records(path)
    assert (rejected["result"], rejected["actor"]) == ("rejected", "api")
    assert (rejected["old_sha256"], rejected["new_sha256"]) == (
        sha(old_text), sha(bad_config()))
    assert "services.users.timeout" in rejected["error"]
    assert rejected["details"]["errors"] == list(error.errors)
    assert again["result"] == "rejected"
    assert "services.users.timeout" in caplog.text
    audit_text = (path.parent / "audit.jsonl").read_text(encoding="utf-8")
    assert SECRET not in audit_text
    assert SECRET not in caplog.text
    assert "***" in audit_text


async def test_watcher_changes_are_audited_as_the_watcher(path: Path) -> None:
    text = GOOD.format(attempts=2) + "hot_reload: {enabled: true, step_ms: 10}\n"
    put(path, text)
    mesh = ml.Mesh.from_config(str(path), environ=ENV)
    async with mesh:
        put(path, text.replace("attempts: 2", "attempts: 3"))
        await until(lambda: len(records(path)) == 2)
        put(path, text.replace("attempts: 2", "attempts: 0"))
        await until(lambda: len(records(path)) == 3)
    _, applied, rejected = records(path)
    assert (applied["actor"], applied["result"]) == ("config-watcher", "applied")
    assert (rejected["actor"], rejected["result"]) == ("config-watcher", "rejected")
    assert rejected["old_sha256"] == applied["new_sha256"]
    assert "attempts" in rejected["error"]


async def until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10.0  # a bound, not an expectation
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_reload_without_a_config_file() -> None:
    mesh = ml.Mesh([ml.Service("users", ["http://a:1"])])
    with pytest.raises(ml.ConfigError, match="follows no config file"):
        await mesh.reload()
    with pytest.raises(ml.ConfigError, match="follows no config file"):
        mesh.reload_sync()


async def test_reload_of_a_code_mesh_following_a_file(path: Path, tmp_path: Path) -> None:
    mesh = ml.Mesh([ml.Service("orders", ["http://o:1"])])
    mesh.audit = AuditLog(tmp_path / "code.jsonl")
    put(path, GOOD.format(attempts=2).replace("audit: audit.jsonl\n", ""))
    mesh.watch(str(path), environ=ENV)
    put(path, GOOD.format(attempts=3).replace("audit: audit.jsonl\n", ""))
    assert await mesh.reload() is True
    actions = [(r["action"], r["result"]) for r in mesh.audit.read()]
    assert actions == [("config.load", "applied"), ("config.reload", "applied")]


def test_reload_sync_on_a_closed_mesh_and_on_its_loop_thread(path: Path) -> None:
    mesh = ml.Mesh.from_config(str(path), environ=ENV)
    path.write_text(GOOD.format(attempts=3), encoding="utf-8")
    assert mesh.reload_sync() is True
    assert mesh.config_version == 1
    text = GOOD.format(attempts=4) + "hot_reload: {enabled: true, step_ms: 10000}\n"
    path.write_text(text, encoding="utf-8")
    threaded = ml.Mesh.from_config(str(path), environ=ENV)
    with threaded:  # the watcher runs on the mesh's loop thread
        assert threaded._thread is not None
        # Read long before the watcher's quiet time (10 s) is over.
        path.write_text(text.replace("attempts: 4", "attempts: 5"), encoding="utf-8")
        assert threaded.reload_sync() is True
        assert threaded.config_version == 1
    assert [(r["action"], r["result"]) for r in records(path)] == [
        ("config.load", "applied"), ("config.reload", "applied")] * 2


async def test_reload_sync_refuses_a_running_loop(path: Path) -> None:
    mesh = ml.Mesh.from_config(str(path), environ=ENV)
    with pytest.raises(ml.ConfigError, match=r"use await mesh\.reload"):
        mesh.reload_sync()


async def test_changing_the_audit_section_needs_a_restart(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mesh = ml.Mesh.from_config(str(path), environ=ENV)
    first = mesh.audit
    put(path, GOOD.format(attempts=2).replace("audit.jsonl", "other.jsonl"))
    with caplog.at_level(logging.WARNING, logger="meshlite.config"):
        assert await mesh.reload() is True
    assert mesh.audit is first
    assert "takes effect at the next start" in caplog.text
    assert records(path)[-1]["result"] == "applied"  # recorded in the log in force


def test_check_summary_names_the_audit_log(path: Path) -> None:
    import io

    from meshlite.config._check import run_check

    out = io.StringIO()
    assert run_check(str(path), out, environ=ENV) == 0
    assert f"audit: {path.parent / 'audit.jsonl'}" in out.getvalue()
    assert not (path.parent / "audit.jsonl").exists()  # checking writes nothing
