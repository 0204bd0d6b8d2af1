"""Where ``mesh.aiohttp()``'s whole-request cost goes: the service's layers switched
off one at a time, against bare aiohttp, side by side at 32 requests in flight.

``dataplane.py`` measures the default service; ``dataplane_layers.py`` counts the
mesh's own work in instructions, apart from sockets and parsing. This script measures
whole requests against ``dataplane.py``'s loopback nginx with the same variants of the
service, so the rate each layer costs shows where a client is CPU-bound (the mesh's
Python runs between aiohttp's, and costs more there than in a tight loop):

    .venv/bin/python benchmarks/dataplane_breakdown.py     # about a minute

Rows: bare aiohttp; the default service (``p2c_ewma``, ``Retry(attempts=2)``, the call
span, outlier detection, metrics on); ``round_robin``; metrics off; and everything off
(``round_robin``, an empty pipeline, no call span, no outlier detection, no metrics).
Each runs ``--rounds`` times, interleaved; the best round counts. Reports only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import meshlite as ml

sys.path.insert(0, str(Path(__file__).parent))
from dataplane import (
    Figure,
    Steady,
    _async_client,
    _measure,
    nginx,
    nginx_arguments,
    nginx_ready,
)

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]] | None] = {
    "aiohttp": None,
    "mesh.aiohttp(), default service": ({}, {}),
    "  round_robin": ({"balancer": "round_robin"}, {}),
    "  metrics off": ({}, {"metrics": False}),
    "  all of these off": ({"balancer": "round_robin", "pipeline": "empty", "trace": False,
                            "outlier_detection": None}, {"metrics": False}),
}
"""Service and Mesh options of each row (None: bare aiohttp)."""


def _run(variant: str, urls: list[str], requests: int, around: Steady) -> None:
    options = VARIANTS[variant]
    if options is None:
        _async_client("aiohttp", urls, around=around)(requests, 32)
        return
    service, mesh = options
    if service.get("pipeline") == "empty":
        service = {**service, "pipeline": ml.Pipeline()}
    _async_client("mesh.aiohttp()", urls, service, mesh, around=around)(requests, 32)


def main() -> int:
    args = nginx_arguments(__doc__.split("\n")[0]).parse_args()
    if not nginx_ready(args):
        return 2
    best: dict[str, Figure] = {}
    with nginx(2) as urls:
        for _ in range(args.rounds):
            for variant in VARIANTS:
                figure = _measure(lambda around: _run(
                    variant, urls, args.requests, around), args.requests)  # noqa: B023
                if variant not in best or figure.rps > best[variant].rps:
                    best[variant] = figure
    bare = best["aiohttp"]
    print(f"{'client (32 in flight)':34} {'req/s':>7} {'CPU us/request':>15} {'vs aiohttp':>11}")
    for variant, figure in best.items():
        print(f"{variant:34} {figure.rps:>7,.0f} {figure.cpu_us:>15.0f} "
              f"{figure.rps / bare.rps:>10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
