"""The ``meshlite`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from ._demo_policies import run_policy_demo

    run_policy_demo(sys.stdout, sys.stderr, seed=args.seed)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ._bench import run_bench

    run_bench(sys.stdout, calls=args.calls)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshlite",
        description="Resilience, routing and telemetry for service calls, without a sidecar.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run the demonstration: a flaky service through a full pipeline"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.set_defaults(run=_demo)
    bench = commands.add_parser("bench", help="measure meshlite's per-call overhead here")
    bench.add_argument("--calls", type=int, default=200_000, help="calls per measurement")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
