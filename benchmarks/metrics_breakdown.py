"""Where the metrics recording cost of a mesh call goes: ``mesh.call_sync`` on meshes
whose dispatch leaves out one piece of the recording each, against ``metrics=False``.

Rows (thread CPU ns added per call, medians, interleaved as in ``metrics.py``):

- ``full``: the real recording (what ``metrics.py`` measures);
- ``no attempt histogram``: the endpoints keep no histogram;
- ``no clock reads``: the latency appended is a constant (the gate, the append and
  the batch counts remain);
- ``no append``: the gate, the two clock reads and the subtraction, nothing recorded;
- ``gate only``: the service's lane looked up and a token taken from its gate (the
  call counted in flight), nothing timed or recorded.

The last three rows run their recording in a method of their own, one Python call
more than the real dispatch: compare them with ``gate only``, which pays it too.

    .venv/bin/python benchmarks/metrics_breakdown.py
    .venv/bin/python benchmarks/metrics_breakdown.py --quick
"""

from __future__ import annotations

import argparse
from typing import Any

from metrics import measure_cpu, work

import meshlite as ml
from meshlite._context import CallContext
from meshlite._mesh import Mesh, _current
from meshlite.routing import Service


class _Partial(Mesh):
    """A mesh whose sync dispatch records only what :meth:`record` keeps."""

    def dispatch_sync(self, service: Service, ctx: CallContext) -> Any:
        handler = service._handler or service.sync_handler()
        assert self._lanes is not None
        gate, pending, series, monotonic = self._lanes[service]
        try:
            gate.pop()
        except IndexError:
            if not series.reopen():
                raise self._refused() from None
        token = _current.set(ctx)
        try:
            return self.record(handler, ctx, pending, monotonic)
        finally:
            _current.reset(token)

    def record(self, handler: Any, ctx: CallContext, pending: Any, monotonic: Any) -> Any:
        return handler(ctx)


class _NoClock(_Partial):
    def record(self, handler: Any, ctx: CallContext, pending: Any, monotonic: Any) -> Any:
        start = 1.0
        result = handler(ctx)
        pending.append(1.0005 - start)
        return result


class _NoAppend(_Partial):
    """Times the call but drops the latency: the gate still counts the call as
    started, so this row measures the clock reads (calls in flight grow)."""

    def record(self, handler: Any, ctx: CallContext, pending: Any, monotonic: Any) -> Any:
        start = monotonic()
        result = handler(ctx)
        self.last = monotonic() - start
        return result


def _mesh(cls: type[Mesh] = Mesh, *, metrics: bool = True, attempts: bool = True) -> Mesh:
    mesh = cls([ml.Service("users", ["127.0.0.1", "127.0.0.2"], pipeline=ml.Pipeline())],
               metrics=metrics)
    if not attempts:
        for e in mesh.service("users").endpoints:
            e._histogram, e._count_at = None, 1 << 62
    return mesh


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few calls: a smoke run")
    args = parser.parse_args()
    calls, rounds, runs = (300, 3, 1) if args.quick else (4000, 21, 3)
    meshes = {
        "metrics=False": _mesh(metrics=False),
        "full": _mesh(),
        "no attempt histogram": _mesh(attempts=False),
        "no clock reads": _mesh(_NoClock),
        "no append": _mesh(_NoAppend),
        "gate only": _mesh(_Partial),
    }
    candidates = {name: (lambda m=m: m.call_sync("users", work, 1))
                  for name, m in meshes.items()}
    print("thread CPU ns added per call against metrics=False, medians; one column per run")
    results = [measure_cpu(candidates, calls, rounds) for _ in range(runs)]
    for name in meshes:
        if name != "metrics=False":
            cells = "".join(f"{r[name] - r['metrics=False']:>9.0f}" for r in results)
            print(f"  {name:<24}{cells}")


if __name__ == "__main__":
    main()
