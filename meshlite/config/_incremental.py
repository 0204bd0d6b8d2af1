"""A reload's config, away from the event loop: parsed in a worker thread, or, for a
large file or one with YAML anchors, in a separate Python process (whose parse
holds no lock the event loop needs); then, on the loop a slice at a time
(``_steps.in_slices``), only the services whose section changed are validated,
built and prepared. The others keep their plan as it is: their section has the
same bytes (``_parsed``), so the same data built that plan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from .._clock import Clock
from .._errors import ConfigError
from ..routing._service import Service
from ._apply import prepare_steps
from ._build import Plan, ServicePlan, build_steps
from ._check_schema import validate_steps
from ._parsed import Parsed, fingerprint, parse
from ._steps import Steps

__all__ = ["OUT_OF_PROCESS_BYTES", "PARSE_TIMEOUT", "parse_apart", "plan_steps"]

OUT_OF_PROCESS_BYTES = 64 * 1024
"""A config file at least this large is parsed in a separate process on reload."""

PARSE_TIMEOUT = 60.0
"""Seconds the separate process may take to parse a file before the reload is
rejected."""

_log = logging.getLogger("meshlite.config")


def _apart(path: str, text: str) -> bool:
    yaml = not path.endswith((".toml", ".json"))
    return len(text) >= OUT_OF_PROCESS_BYTES or (yaml and "&" in text and "*" in text)


class _ChildFailed(Exception):
    """The separate process could not parse (not a problem of the file)."""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _parse_in_child(path: str, text: str, environ: Mapping[str, str] | None,
                    profile: str | None) -> Parsed:
    python = sys.executable
    if not os.path.basename(python).lower().startswith(("python", "pypy")):
        raise _ChildFailed(f"{python!r} is not a Python interpreter")  # embedded: uwsgi...
    import pickle

    request = pickle.dumps((path, text, dict(os.environ if environ is None else environ),
                            profile), protocol=pickle.HIGHEST_PROTOCOL)
    try:
        done = subprocess.run([python, "-m", "meshlite.config._child"],
                              input=request, capture_output=True, timeout=PARSE_TIMEOUT,
                              env=_child_env(), check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{path}: parsing took longer than {PARSE_TIMEOUT:g} s",
                          policy="config") from None
    except OSError as error:
        raise _ChildFailed(str(error)) from error
    try:
        reply = pickle.loads(done.stdout) if done.returncode == 0 else None
    except Exception:
        reply = None
    if reply is None:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise _ChildFailed(f"exit status {done.returncode}: {lines[-1] if lines else ''}")
    if reply[0] == "error":
        raise ConfigError(reply[1], errors=reply[2], policy="config")
    parsed: Parsed = reply[1]
    return parsed


async def parse_apart(path: str, text: str, environ: Mapping[str, str] | None,
                      profile: str | None) -> Parsed:
    """:func:`parse`, away from the event loop: in a separate process when the file
    is large (:data:`OUT_OF_PROCESS_BYTES`) or uses YAML anchors (aliases are where
    a few bytes expand into millions of values), else in a worker thread. If the
    process cannot run (``sys.executable`` is not a Python interpreter, as when
    embedded in another program), in a worker thread too, with a warning."""
    if _apart(path, text):
        try:
            return await asyncio.to_thread(_parse_in_child, path, text, environ, profile)
        except _ChildFailed as failure:
            _log.warning("parsing %s in a separate process failed (%s); parsing it in a "
                         "worker thread", path, failure)
    return await asyncio.to_thread(parse, path, text, environ, profile)


def _loaded(plan: Plan) -> dict[str, Any]:
    """Each service's section data as read when ``plan`` was loaded."""
    data = plan.document.data.get("services")
    return {str(name): section for name, section in data.items()} \
        if isinstance(data, dict) else {}


def _sections(parsed: Parsed, previous: Plan | None,
              reuse: dict[str, ServicePlan]) -> Steps[None]:
    """Put each changed service's section in the document (unpickled); record in
    ``reuse`` the plans of those unchanged. A plan loaded, not reloaded (the first
    reload after ``from_config``), gets its sections' bytes here."""
    import pickle

    assert parsed.services is not None
    data: dict[str, Any] = {}
    before = previous.services if previous is not None else {}
    loaded: dict[str, Any] | None = None
    for name, raw in parsed.services.items():
        yield
        old = before.get(name)
        if old is not None and old.raw is None:
            assert previous is not None
            loaded = _loaded(previous) if loaded is None else loaded
            old.raw = fingerprint(loaded.get(name))
        if old is not None and old.raw == raw:
            reuse[name] = old
            data[name] = None
        else:
            data[name] = pickle.loads(raw)
    parsed.document.data["services"] = data


def plan_steps(parsed: Parsed, *, previous: Plan | None,
               others: Mapping[str, Service] | None = None, clock: Clock | None = None,
               environ: Mapping[str, str] | None = None) -> Steps[Plan]:
    """Validate, build and prepare (``_apply.prepare``) ``parsed`` over ``previous``, a
    changed service at a time; a service whose section has the bytes of its plan in
    ``previous`` keeps that plan.

    Raises:
        ConfigError: every problem of the file at once.
    """
    document, problems = parsed.document, parsed.problems
    reuse: dict[str, ServicePlan] = {}
    if parsed.services is not None:
        yield from _sections(parsed, previous, reuse)
    config = yield from validate_steps(document.data, problems,
                                       {name: p.section for name, p in reuse.items()})
    if config is None:
        raise problems.error()
    plan = yield from build_steps(document, config, problems, previous=previous,
                                  others=others, clock=clock, environ=environ, reuse=reuse)
    problems.check()
    if parsed.services is not None:
        for name, service in plan.services.items():
            if service.raw is None:
                service.raw = parsed.services.get(name)
    yield from prepare_steps(previous, plan)
    return plan
