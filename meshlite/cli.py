"""The ``meshlite`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    if args.services:
        return _demo_services(args)
    from ._demo_policies import run_policy_demo

    run_policy_demo(sys.stdout, sys.stderr, seed=args.seed)
    try:
        from ._demo_mesh import run_mesh_demo
    except ModuleNotFoundError as error:
        if error.name != "httpx":
            raise
        sys.stdout.write("\nThe routing part of the demo needs httpx: "
                         "pip install 'meshlite[http]'\n")
        return 0
    run_mesh_demo(sys.stdout, sys.stderr, seed=args.seed)
    return 0


def _demo_services(args: argparse.Namespace) -> int:
    from ._demo_shop import run_shop_demo
    from ._errors import ConfigError

    try:
        run_shop_demo(sys.stdout, sys.stderr, directory=args.dir, requests=args.requests,
                      fault_rate=args.fault_rate)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    return 0


def _check(args: argparse.Namespace) -> int:
    from .config._check import run_check

    return run_check(args.config, sys.stdout, sys.stderr)


def _dashboard(args: argparse.Namespace) -> int:
    from ._errors import ConfigError
    from .observability._dashboard import run_dashboard

    try:
        return run_dashboard(args.config, args.host, args.port, args.token,
                             max_clients=args.max_clients)
    except ConfigError as error:
        sys.stderr.write(f"meshlite dashboard: {error}\n")
        return 2
    except OSError as error:
        sys.stderr.write(f"meshlite dashboard: {error}\n")
        return 1


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
        "demo", help="run the demonstration: a flaky service through a full pipeline, then "
        "plain round robin against the mesh on four loopback backends"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--services", action="store_true",
                      help="run the shop of examples/shop instead: four services under "
                           "uvicorn calling each other through meshlite, one of them flaky")
    demo.add_argument("--dir", default=None, help="with --services: the examples/shop "
                                                  "directory (default: found in a checkout)")
    demo.add_argument("--requests", type=int, default=60,
                      help="with --services: checkouts to send (default 60)")
    demo.add_argument("--fault-rate", type=float, default=0.3,
                      help="with --services: share of charges payments fails (default 0.3)")
    demo.set_defaults(run=_demo)
    check = commands.add_parser(
        "check", help="validate a config file and print what it describes (exit 0 valid, "
        "2 invalid, 1 unreadable)"
    )
    check.add_argument("config", metavar="CONFIG", help="the config file (YAML, TOML or JSON)")
    check.set_defaults(run=_check)
    dashboard = commands.add_parser(
        "dashboard", help="serve the live dashboard of the mesh a config file describes"
    )
    dashboard.add_argument("config", metavar="CONFIG", help="the config file")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8686, help="port (8686; 0 picks one)")
    dashboard.add_argument("--token", default=None,
                           help="bearer token required by every request (needed off loopback)")
    dashboard.add_argument("--max-clients", type=int, default=32,
                           help="WebSocket clients at once (32)")
    dashboard.set_defaults(run=_dashboard)
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
