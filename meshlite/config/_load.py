"""Loading: a file to a validated, built :class:`Plan`; a plan to a :class:`Mesh`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._clock import Clock
from .._fork import fork_safe
from ..routing._service import Service
from ._build import Plan, build_plan
from ._check_schema import validate_document
from ._schema import MeshConfig
from ._source import read_document

if TYPE_CHECKING:
    from ..mesh._mesh import Mesh
    from ._extras import DashboardComponent
    from ._watcher import ConfigWatcher

__all__ = [
    "Managed",
    "config_of",
    "digest",
    "gc_paused",
    "load_config",
    "load_plan",
    "managed_of",
    "masked_config",
    "set_managed",
]


_pause_lock = fork_safe(threading.Lock())
_pauses = 0
_resume = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a config is loaded and built: building
    allocates many objects and few cycles, and the collections it would trigger are
    ~5% of a mesh's start-up and, during a reload of thousands of services, the
    longest pause of every thread, the event loop's included (a full collection
    stops them all). Collection resumes (as it was) when the last of the pauses
    that overlap ends (a reload pauses across turns of its event loop, so pauses of
    two meshes may interleave), with the objects made meanwhile counted as old:
    left young, the first collection after would scan every one of them at once
    (0.1-0.5 s for 3,000 services, the GIL held, so every thread stalls); as old
    ones they wait for the next full collection, as the rest of the mesh does
    (``gc.freeze`` then ``gc.unfreeze``: two list splices)."""
    global _pauses, _resume
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0:
                gc.freeze()
                gc.unfreeze()
                if _resume:
                    gc.enable()


def digest(text: str) -> str:
    """A fingerprint of a config file's text (a save that changes nothing is skipped)."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def load_plan(path: str, *, environ: Mapping[str, str] | None = None,
              profile: str | None = None, text: str | None = None,
              previous: Plan | None = None, others: Mapping[str, Service] | None = None,
              clock: Clock | None = None) -> Plan:
    """Read, validate and build ``path``.

    Raises:
        ConfigError: every problem at once (``.errors``), secrets masked.
    """
    document, problems = read_document(path, environ=environ, profile=profile, text=text)
    config = validate_document(document.data, problems)
    if config is None:
        raise problems.error()
    plan = build_plan(document, config, problems, previous=previous, others=others,
                      clock=clock, environ=environ)
    problems.check()
    return plan


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None,
                profile: str | None = None) -> MeshConfig:
    """Read and fully check a config file (building every policy, as a mesh would)
    without making a mesh.

    Args:
        path: A YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON file (a ``str``
            or a ``pathlib.Path``).
        environ: The environment for ``${VAR}``, ``MESHLITE_ENV`` and ``MESHLITE_*``
            overrides (default ``os.environ``).
        profile: The profile to overlay (default: ``MESHLITE_ENV``).

    Returns:
        The validated config model.

    Raises:
        ConfigError: every problem at once, each as ``"path: what is wrong"`` in
            ``.errors``; values from the environment are masked as ``***``.
    """
    return load_plan(os.fspath(path), environ=environ, profile=profile).config


@dataclass
class Managed:
    """What a config file put into a mesh, and how to read it again."""

    path: str
    plan: Plan
    environ: Mapping[str, str] | None
    profile: str | None
    clock: Clock | None
    digest: str
    watcher: ConfigWatcher | None = None
    sha256: str = ""
    """The SHA-256 of the text in force (last applied): audit records' ``old_sha256``."""
    reloader: ConfigWatcher | None = None
    """What ``mesh.reload()`` uses when no watcher follows the file (never started)."""
    dashboard: DashboardComponent | None = None
    serve_dashboard: bool = True
    drain_from_file: bool = True
    """Whether the file's ``drain_timeout`` is the mesh's (the code gave none)."""
    drains: set[asyncio.Task[None]] = field(default_factory=set)
    turn: threading.Lock = field(default_factory=lambda: fork_safe(threading.Lock()))
    """Held by the reload under way (``ConfigWatcher.reload_as``), whatever thread or
    event loop runs it: two reloads (the watcher's, ``mesh.reload()`` and
    ``mesh.reload_sync()`` from other threads) apply one after the other. Taken
    before the mesh's registration lock, never while holding it."""

    def others(self, mesh: Mesh) -> dict[str, Service]:
        """The mesh's services that the config does not manage (registered in code)."""
        return {n: s for n, s in mesh.registered_now().items() if n not in self.plan.services}


def managed_of(mesh: Mesh) -> Managed | None:
    """The config state of ``mesh``, or None when no config file manages it."""
    managed: Managed | None = mesh.config_record
    return managed


def set_managed(mesh: Mesh, managed: Managed) -> None:
    """Record that ``managed`` describes ``mesh``. The mesh holds it (not a table of
    this module's, even a weak one: ``managed`` holds the mesh's services, and they
    hold the mesh, so an entry would keep every mesh made from a file alive, with
    its services, pipelines and metrics, long after it closed)."""
    mesh.config_record = managed
    mesh.config_sha256 = managed.sha256 or None


def config_of(mesh: Mesh) -> MeshConfig | None:
    """The config model in force in ``mesh`` (None when it was not built from one)."""
    managed = managed_of(mesh)
    return managed.plan.config if managed is not None else None


def masked_config(mesh: Mesh) -> dict[str, Any] | None:
    """The config in force, as plain data with every value that came from the
    environment shown as ``***`` (what a dashboard or an audit record may show)."""
    managed = managed_of(mesh)
    if managed is None:
        return None
    data = managed.plan.config.dump(exclude_unset=True)
    masked: dict[str, Any] = managed.plan.document.secrets.mask_data(data)
    return masked
