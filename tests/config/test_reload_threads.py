"""A reload that changes a service's backends and its pipeline, seen by calls that
threads start while it applies: each sees the old config, or the new one, or (as a
call begun before the reload does with its later attempts) the old pipeline on the
new backends; never the new pipeline on the old backends."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import meshlite as ml


def config(generation: int) -> str:
    # Generation g: backends "g<g>a:1" and "g<g>b:1", 2 + g attempts, every one failing.
    return ("services:\n  users:\n"
            f'    backends: ["g{generation}a:1", "g{generation}b:1"]\n'
            f"    retry: {{attempts: {2 + generation}, backoff: {{type: constant, delay: 0}}, "
            "budget: null}\n    outlier_detection: null\n")


def attempts_of(mesh: ml.Mesh) -> list[str]:
    """One call's attempts: the address each went to."""
    seen: list[str] = []

    def fail(backend: Any) -> None:
        seen.append(str(backend.address))
        raise ConnectionError("down")

    with contextlib.suppress(ConnectionError):
        mesh.call_sync("users", fail)
    return seen


class CallsAtEachStep:
    """Stands for a service's lock: each time the reloading thread takes it (each
    step of the switch), a call from another thread runs first, and its attempts
    are kept in ``calls``."""

    def __init__(self, mesh: ml.Mesh, lock: Any) -> None:
        self.mesh, self.lock = mesh, lock
        self.reloading = threading.get_ident()
        self.calls: list[list[str]] = []

    def __enter__(self) -> bool:
        if threading.get_ident() == self.reloading:
            thread = threading.Thread(target=lambda: self.calls.append(attempts_of(self.mesh)))
            thread.start()
            thread.join(30)
            assert not thread.is_alive()
        return bool(self.lock.__enter__())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.lock.__exit__(exc_type, exc, tb)


def test_a_call_during_the_switch_never_runs_the_new_pipeline_on_the_old_backends(
        tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(config(0), encoding="utf-8")
    mesh = ml.Mesh.from_config(str(path), environ={}, hot_reload=False)
    assert sorted(attempts_of(mesh)) == ["g0a:1", "g0b:1"]
    service = mesh.service("users")
    steps = service._lock = CallsAtEachStep(mesh, service._lock)  # type: ignore[assignment]
    path.write_text(config(1), encoding="utf-8")
    assert mesh.reload_sync()
    assert mesh.config_version == 1
    assert steps.calls  # a call ran at each step of the switch
    for call in steps.calls:
        generations = {address[:2] for address in call}
        # 2 attempts: the old pipeline (on either backends); 3: the new one, on the
        # new backends only (was: 3 attempts on g0's backends)
        assert len(call) == 2 or generations == {"g1"}, call
    assert len(attempts_of(mesh)) == 3
