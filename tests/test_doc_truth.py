"""The docs' tables and claims, checked against the code they describe.

The code blocks of the pages run in tests/test_docs.py; this module checks what is
written around them: each table of a callable's arguments (names, order, defaults,
the "valid range" of a number) against the callable, the order and options pages
list against the code's own lists, and the behaviours the prose states where no
other test holds them to the page's words.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from _docblocks import ROOT

import meshlite as ml
from meshlite.config._sections import POLICY_SECTIONS
from meshlite.discovery import DnsProvider, FileProvider
from meshlite.testing import FakeClock, ScriptedService

_ROW = re.compile(r"^\|\s*`(?P<names>[\w` /]+?)`\s*\|\s*(?P<default>[^|]*?)\s*\|\s*(?P<rest>.*)$")


def _page(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def _table_after(page: str, anchor: str) -> list[tuple[str, str, str]]:
    """(argument, default cell, valid-range cell) of each row of the first table after
    the line holding ``anchor``; a row naming two arguments (``seed` / `random``)
    gives one row each."""
    lines = _page(page).splitlines()
    start = next(i for i, line in enumerate(lines) if anchor in line)
    first = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("|"))
    rows: list[tuple[str, str, str]] = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        match = _ROW.match(line)
        if match is None:
            continue  # the header and its rule
        valid = match.group("rest").split("|")[0].strip()
        for name in re.split(r"`\s*/\s*`", match.group("names")):
            rows.append((name, match.group("default"), valid))
    assert rows, f"no table after {anchor!r} on {page}"
    return rows


def _documented_default(cell: str) -> tuple[bool, Any]:
    """(True, value) when the cell's default is a Python literal (`` `0.5` ``,
    ``None``, ``2.0``), else (False, None): prose defaults are not compared."""
    match = re.match(r"^`([^`]+)`(?:\s*\([^)]*\))?$", cell) or re.match(r"^([\d.]+)$", cell)
    if match is None:
        return False, None
    try:
        return True, ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return False, None


_REQUIRED = {"required", "(required)"}


@dataclass(frozen=True)
class Table:
    """One argument table: the page, a line just above it, and what it describes."""

    page: str
    anchor: str
    target: Callable[..., Any]
    not_listed: frozenset[str] = frozenset()  # parameters the table leaves to the prose

    @property
    def id(self) -> str:
        return f"{self.page}:{getattr(self.target, '__qualname__', self.target)}"


TABLES = [
    *(Table(f"policies/{page}.md", "## Options", cls) for page, cls in [
        ("adaptive_concurrency", ml.AdaptiveConcurrency), ("bulkhead", ml.Bulkhead),
        ("cache", ml.Cache), ("circuit_breaker", ml.CircuitBreaker),
        ("fallback", ml.Fallback), ("fault_injection", ml.FaultInjection),
        ("hedge", ml.Hedge), ("rate_limit", ml.RateLimit), ("retry", ml.Retry),
        ("timeout", ml.Timeout), ("trace", ml.Trace), ("validate", ml.Validate)]),
    Table("policies/retry.md", "`ml.RetryBudget(ratio=", ml.RetryBudget),
    Table("routing.md", "forms are for services built in code.", ml.Backend),
    Table("routing.md", "`ml.OutlierDetection(consecutive_failures=", ml.OutlierDetection,
          frozenset({"clock"})),
    Table("routing.md", "counts from when its thread starts it.", ml.HealthCheck,
          frozenset({"probe"})),
    Table("routing.md", "`ml.TLS` options:", ml.TLS),
    Table("dashboard.md", "`ml.AlertRule(name, condition, *, ...)`:", ml.AlertRule),
    Table("discovery.md", "mesh opens (the file itself need not", FileProvider),
    Table("discovery.md", "the last backends stay.", DnsProvider),
    Table("jaeger.md", "### `configure(service_name=None", ml.telemetry.configure),
    Table("metrics.md", 'assert collector.requests[0].path == "/v1/metrics"',
          ml.telemetry.export_metrics),
    Table("gather.md", "## Signatures", ml.gather),
    Table("gather.md", "## Signatures", ml.gather_sync),
    Table("testing.md", "- none: every call returns `result`.", ScriptedService),
]


def _parameters(table: Table) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(table.target).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in table.not_listed]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.id)
def test_an_argument_table_lists_the_parameters_in_order(table: Table) -> None:
    rows = [name for name, _, _ in _table_after(table.page, table.anchor)]
    assert rows == [p.name for p in _parameters(table)]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.id)
def test_an_argument_table_gives_the_parameters_defaults(table: Table) -> None:
    parameters = {p.name: p for p in _parameters(table)}
    wrong = []
    for name, cell, _ in _table_after(table.page, table.anchor):
        default = parameters[name].default
        if cell.strip("*") in _REQUIRED:
            if default is not inspect.Parameter.empty:
                wrong.append(f"{name}: documented as required, has a default {default!r}")
            continue
        literal, value = _documented_default(cell)
        if not literal:
            continue  # a default described in words
        same = (value is default if isinstance(value, bool) or value is None
                else value == default and not isinstance(default, bool))
        if not same:
            wrong.append(f"{name}: documented {value!r}, is {default!r}")
    assert wrong == []


# What each policy needs to be built, beside the argument tried.
_BASE: dict[type[Any], dict[str, Any]] = {
    ml.Bulkhead: {"max_concurrent": 1}, ml.Cache: {"ttl": 1.0}, ml.Hedge: {"delay": 0.0},
    ml.RateLimit: {"rate": 1.0}, ml.Timeout: {"seconds": 1.0},
    ml.FaultInjection: {"rate": 0.5},
    ml.Backend: {"address": "http://127.0.0.1:1"}, ml.HealthCheck: {"probe": print},
    ml.AlertRule: {"name": "a", "condition": "p99", "threshold": 0.1},
}
_NOT_NUMBERS = {(ScriptedService, "outcomes")}  # (its weights are, inside a list)
_NUMBER_RANGE = re.compile(r"(?:^|[\s,(])(?:>=?|<=?)\s*\d")
_INTEGER = re.compile(r"\bint(?:eger)?\b")


def _numeric_rows() -> Iterator[tuple[str, type[Any], str, str]]:
    for table in TABLES:
        if not isinstance(table.target, type):
            continue  # (a function's arguments are checked when it runs)
        for name, _, valid in _table_after(table.page, table.anchor):
            if (_NUMBER_RANGE.search(valid) and not _INTEGER.search(valid)
                    and (table.target, name) not in _NOT_NUMBERS):
                yield table.page, table.target, name, valid


def test_a_number_the_code_refuses_infinite_is_documented_finite() -> None:
    """Every policy (and backend, health check, alert rule, scripted service) refuses
    ``inf`` for a number of seconds, a rate or a ratio bound (no limit is ``None``); a
    valid range that does not say "finite" promises it works."""
    unsaid = []
    rows = list(_numeric_rows())
    assert ("policies/circuit_breaker.md", ml.CircuitBreaker, "open_seconds", "> 0, finite") in rows
    assert ("routing.md", ml.HealthCheck, "interval", "> 0, finite") in rows
    for page, cls, name, valid in rows:
        try:
            cls(**{**_BASE.get(cls, {}), name: math.inf})
        except ml.ConfigError:
            if "finite" not in valid:
                unsaid.append(f"{page}: {name} ({valid})")
    assert unsaid == []


def test_the_config_file_builds_policies_in_the_order_the_page_lists() -> None:
    text = " ".join(_page("recommended-order.md").split())
    match = re.search(r"A config file's sections are built in this order: ([\w, ]+)\.", text)
    assert match is not None
    assert match.group(1).split(", ") == list(POLICY_SECTIONS)


def test_the_resilient_table_names_every_option() -> None:
    text = _page("recommended-order.md").split("## What `ml.resilient` takes")[1]
    table = text.split("\n\n")[1]
    documented = [name for line in table.splitlines()[2:]
                  for name in re.findall(r"`(\w+)=", line.split("|")[1])]
    unknown: dict[str, Any] = {"no_such_option": 1}
    with pytest.raises(ml.ConfigError, match="valid: ") as refused:
        ml.resilient(**unknown)
    valid = str(refused.value).split("valid: ")[1].split(", ")
    assert sorted(documented) == sorted(valid)


def test_gather_sync_threads_are_named_as_the_page_says() -> None:
    match = re.search(r"threads \(named `([\w-]+)`, `([\w-]+)`\.\.\.\)", _page("gather.md"))
    assert match is not None, "gather.md no longer names gather_sync's threads"
    barrier = threading.Barrier(2, timeout=30)
    names: set[str] = set()

    def work(item: int) -> None:
        names.add(threading.current_thread().name)
        barrier.wait()  # both items run at once, so two threads are used

    ml.gather_sync(work, [1, 2], concurrency=2)
    assert names == {match.group(1), match.group(2)}


def test_an_outer_timeout_raises_its_own_error_with_the_inner_one_as_cause(
        clock: FakeClock) -> None:
    """timeout.md, "Nested timeouts": code inside the outer call sees the inner
    Timeout's "ran out of time"; the outer caller gets the outer Timeout's error."""
    text = " ".join(_page("policies/timeout.md").split())
    assert "That is the error code inside the outer call sees." in text
    outer = ml.Pipeline(ml.Timeout(1.0, clock=clock))
    inner = ml.Pipeline(ml.Timeout(5.0, clock=clock))
    seen: list[BaseException] = []

    def late() -> None:
        clock.advance(2.0)  # returns after both deadlines

    def call() -> None:
        try:
            inner.call(late)
        except ml.TimeoutExceeded as error:
            seen.append(error)
            raise

    with pytest.raises(ml.TimeoutExceeded, match=r"timed out after 1\.0 s") as raised:
        outer.call(call)
    assert raised.value.__cause__ is seen[0]
    assert "ran out of time: an outer deadline left it 1 s of its 5.0 s timeout" in str(seen[0])


def test_an_async_outer_timeout_cancels_with_its_own_error() -> None:
    outer, inner = ml.Pipeline(ml.Timeout(0.05)), ml.Pipeline(ml.Timeout(5.0))

    async def call() -> None:
        await inner.acall(asyncio.sleep, 10)

    with pytest.raises(ml.TimeoutExceeded, match=r"timed out after 0\.05 s") as raised:
        asyncio.run(outer.acall(call))
    assert isinstance(raised.value.__cause__, asyncio.CancelledError)


def test_the_inbound_route_answers_the_keys_the_dashboard_page_lists() -> None:
    row = next(line for line in _page("dashboard.md").splitlines()
               if line.startswith("| `GET /api/inbound` |"))
    documented = re.findall(r'"(\w+)"', row.split("|")[2].split("`")[1])
    httpx = pytest.importorskip("httpx")

    async def answer() -> dict[str, Any]:
        mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:1"])])
        async with mesh:
            server = await mesh.serve_dashboard(port=0)
            try:
                async with httpx.AsyncClient(base_url=server.url) as client:
                    response = await client.get("/api/inbound")
                    assert response.status_code == 200
                    body: dict[str, Any] = response.json()
                    return body
            finally:
                await server.stop()

    assert documented == list(asyncio.run(answer()))
