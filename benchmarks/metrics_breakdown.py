"""Where the metrics recording cost of a mesh call goes: ``mesh.call_sync`` with the
real recording, and with the endpoints keeping no attempt histogram, against
``metrics=False`` (thread CPU ns added per call, medians, interleaved as in
``metrics.py``). The difference between the two rows is what attempts cost; the
rest is the call series (``observability._recording.recorded``).

    .venv/bin/python benchmarks/metrics_breakdown.py
    .venv/bin/python benchmarks/metrics_breakdown.py --quick
"""

from __future__ import annotations

import argparse

from metrics import measure_cpu, work

import meshlite as ml
from meshlite.mesh._mesh import Mesh


def _mesh(cls: type[Mesh] = Mesh, *, metrics: bool = True, attempts: bool = True) -> Mesh:
    mesh = cls([ml.Service("users", ["127.0.0.1", "127.0.0.2"], pipeline=ml.Pipeline())],
               metrics=metrics)
    if not attempts:
        for e in mesh.service("users").endpoints:
            e._histogram = None
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
