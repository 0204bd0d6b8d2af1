"""The ``meshlite`` command."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._extras import is_missing_extra, requires_extra
from ._version import __version__

__all__ = ["main"]

_T = TypeVar("_T")


def _demo(args: argparse.Namespace) -> int:
    if args.services:
        return _demo_services(args)
    from ._demo_policies import run_policy_demo

    run_policy_demo(sys.stdout, sys.stderr, seed=args.seed)
    try:
        with requires_extra("The routing part of the demo", "http"):
            from ._demo_mesh import run_mesh_demo
    except ModuleNotFoundError as error:
        if not is_missing_extra(error):
            raise
        sys.stdout.write(f"\n{error}\n")
        return 0
    run_mesh_demo(sys.stdout, sys.stderr, seed=args.seed)
    return 0


SHOP_LIBRARIES = ("httpx", "starlette", "uvicorn", "opentelemetry.sdk",
                  "opentelemetry.exporter.otlp.proto.http")
"""What ``meshlite demo --services`` runs on: its client, its services' server and the
telemetry their configs set up (the extras of ``SHOP_EXTRAS``)."""

SHOP_EXTRAS = "http,dashboard,otlp"
"""The extras that bring ``SHOP_LIBRARIES``."""


def _demo_services(args: argparse.Namespace) -> int:
    from ._errors import ConfigError

    try:
        with requires_extra("meshlite demo --services", SHOP_EXTRAS):
            for name in SHOP_LIBRARIES:  # before any service starts (and dies unseen)
                importlib.import_module(name)
            from ._demo_shop import run_shop_demo
    except ModuleNotFoundError as error:
        if not is_missing_extra(error):
            raise
        sys.stderr.write(f"{error}\n")
        return 1
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


TOKEN_VARIABLE = "MESHLITE_DASHBOARD_TOKEN"
"""The environment variable ``meshlite dashboard`` reads the read token from."""

ADMIN_TOKEN_VARIABLE = "MESHLITE_DASHBOARD_ADMIN_TOKEN"
"""The environment variable ``meshlite dashboard`` reads the admin token from."""


def _token(args: argparse.Namespace, name: str, variable: str) -> tuple[Any, str]:
    """The token of the flag, else of the file, else of the variable when it is set,
    else None, and where it came from; checked here, where it is known which of the
    three gave it (the message names it)."""
    from ._errors import ConfigError
    from .observability._dashboard._tokens import check_token, resolve_token

    flag, path = getattr(args, name, None), getattr(args, f"{name}_file")
    option = "--" + name.replace("_", "-")
    if flag is not None and path is not None:
        raise ConfigError(f"give {option} or {option}-file, not both", policy="dashboard")
    token: Any = flag
    source = option
    if flag is None and path is not None:
        token, source = {"file": path}, f"{option}-file {path}"
    elif flag is None:
        token, source = ({"env": variable} if os.environ.get(variable) else None), variable
    token = resolve_token(token, name, owner=source)  # read once: a file, a variable
    check_token(source, "the token it gives" if flag is None else "the token", token)
    return token, source


def _dashboard(args: argparse.Namespace) -> int:
    from ._errors import ConfigError
    from .observability._dashboard import run_dashboard

    try:
        (token, source), (admin, admin_source) = (
            _token(args, "token", TOKEN_VARIABLE),
            _token(args, "admin_token", ADMIN_TOKEN_VARIABLE))
        if token is not None and token == admin:  # (named by where each came from)
            raise ConfigError(f"{source} and {admin_source} give the same token; give the "
                              "admin token its own value, or leave the read token out (the "
                              "admin token also grants reading)", policy="dashboard")
        return run_dashboard(args.config, args.host, args.port, token, admin,
                             max_clients=args.max_clients,
                             max_connections=args.max_connections)
    except ConfigError as error:
        sys.stderr.write(f"meshlite dashboard: {error}\n")
        return 2
    except ModuleNotFoundError as error:
        if not is_missing_extra(error):
            raise  # a bug, not a missing extra
        sys.stderr.write(f"meshlite dashboard: {error}\n")
        return 1
    except OSError as error:
        if isinstance(error, socket.gaierror):
            sys.stderr.write(f"meshlite dashboard: cannot listen on {args.host}:{args.port}: "
                             "the host does not resolve here; pass another --host\n")
        elif getattr(error, "__notes__", None):  # binding failed (note_cannot_listen)
            # The bare "[Errno 98] Address already in use" named neither the address
            # nor the option to change.
            sys.stderr.write(f"meshlite dashboard: cannot listen on {args.host}:{args.port}: "
                             f"{error.strerror or error}; pick another --port (0 picks a "
                             "free one)\n")
        else:
            sys.stderr.write(f"meshlite dashboard: {error}\n")
        return 1


def _alerts_export(args: argparse.Namespace) -> int:
    from .observability._dashboard._prom_rules import run_export

    return run_export(args.config, sys.stdout, sys.stderr, group=args.group,
                      scrape_interval=args.scrape_interval)


def _option(convert: Callable[[str], _T], accept: Callable[[_T], bool],
            what: str) -> Callable[[str], _T]:
    """An option's type: its text converted, and refused (a usage error saying
    ``what`` it must be) when it does not convert or ``accept`` refuses the value."""

    def parse(text: str) -> _T:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_seconds = _option(float, lambda v: 0.0 < v < math.inf, "a number of seconds > 0")
_count = _option(int, lambda v: v >= 1, "a whole number >= 1")
_share = _option(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
_port = _option(int, lambda v: 0 <= v <= 65535, "a port number in [0, 65535] (0 picks a "
                "free one)")


def _bench(args: argparse.Namespace) -> int:
    from ._bench import run_bench

    run_bench(sys.stdout, calls=args.calls)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshlite",
        description="Resilience, routing and telemetry for service calls, without a sidecar.",
    )
    parser.add_argument("--version", action="version", version=f"meshlite {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(commands)
    check = commands.add_parser(
        "check", help="validate a config file and print what it describes (exit 0 valid, "
        "2 invalid or unreadable)", description="Validate a config file and print what it "
        "describes: exit 0 valid, 2 invalid (every problem is printed) or unreadable."
    )
    check.add_argument("config", metavar="CONFIG", help="the config file (YAML, TOML or JSON)")
    check.set_defaults(usage=check, run=_check)
    _add_dashboard(commands)
    _add_alerts(commands)
    bench = commands.add_parser("bench",
                                help="measure meshlite's per-call overhead on this machine")
    bench.add_argument("--calls", type=_count, default=200_000, metavar="N",
                       help="calls per measurement (default 200000)")
    bench.set_defaults(usage=bench, run=_bench)
    return parser


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``demo`` command."""
    demo = commands.add_parser(
        "demo", help="run the demonstration: a flaky service through a full pipeline, then "
        "plain round robin against the mesh on four loopback backends"
    )
    demo.add_argument("--seed", type=int, default=1, metavar="N",
                      help="random seed (default 1)")
    demo.add_argument("--services", action="store_true",
                      help="run the shop of examples/shop instead: four services under "
                           "uvicorn calling each other through meshlite, one of them flaky")
    demo.add_argument("--dir", default=None, metavar="PATH",
                      help="with --services: the examples/shop directory (default: found "
                      "in a checkout)")
    demo.add_argument("--requests", type=_count, default=60, metavar="N",
                      help="with --services: checkouts to send (default 60)")
    demo.add_argument("--fault-rate", type=_share, default=0.3, metavar="F",
                      help="with --services: share of charges payments fails (default 0.3)")
    demo.set_defaults(usage=demo, run=_demo)


def _add_dashboard(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``dashboard`` command."""
    dashboard = commands.add_parser(
        "dashboard", help="serve the live dashboard of the mesh a config file describes"
    )
    dashboard.add_argument("config", metavar="CONFIG", help="the config file")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    dashboard.add_argument("--port", type=_port, default=8686, metavar="PORT",
                           help="port (8686; 0 picks one)")
    dashboard.add_argument("--token", default=None, metavar="TOKEN",
                           help="read token required by every data request (needed off "
                           f"loopback without an admin token); better: {TOKEN_VARIABLE} or "
                           "--token-file, which other users cannot see in the process list")
    dashboard.add_argument("--token-file", metavar="PATH", default=None,
                           help=f"read the read token from this file (else {TOKEN_VARIABLE})")
    dashboard.add_argument("--admin-token-file", metavar="PATH", default=None,
                           help="read the admin token (admin API and reading) from this file "
                           f"(else {ADMIN_TOKEN_VARIABLE})")
    dashboard.add_argument("--max-clients", type=_count, default=32, metavar="N",
                           help="WebSocket clients at once (32)")
    dashboard.add_argument("--max-connections", type=_count, default=100, metavar="N",
                           help="open connections at once; more are closed at once (100)")
    dashboard.set_defaults(usage=dashboard, run=_dashboard)


def _add_alerts(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``alerts`` command and its actions."""
    alerts = commands.add_parser("alerts", help="alerts export: print a config's alert "
                                 "rules as Prometheus rules")
    alert_commands = alerts.add_subparsers(dest="alerts_command", required=True,
                                           metavar="ACTION")
    export = alert_commands.add_parser(
        "export", help="print the config's alert rules as Prometheus alerting rules "
        "(exit 0, 2 invalid or unreadable config)")
    export.add_argument("config", metavar="CONFIG", help="the config file")
    export.add_argument("--group", default="meshlite", metavar="NAME",
                        help="rule group name (meshlite)")
    export.add_argument("--scrape-interval", type=_seconds, default=60.0, metavar="SECONDS",
                        help="your Prometheus's scrape interval: each rule's range spans at "
                        "least four (60, Prometheus's default)")
    export.set_defaults(usage=export, run=_alerts_export)


INTERRUPTED = 130
"""The exit status after Ctrl+C (SIGINT), as shells report a command it ended:
128 + the signal's number."""

TERMINATED = 143
"""The exit status after SIGTERM (128 + 15)."""


_SIGTERM_SEEN = threading.Event()
"""Set when SIGTERM arrived: the interruption it caused is reported as a termination."""


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM takes Ctrl+C's way, whose stop is graceful everywhere: on an event loop
    # asyncio.run()'s own SIGINT handler cancels the main task (an exception raised
    # from here in the middle of a task's step left asyncio's streams logging
    # tracebacks), elsewhere KeyboardInterrupt unwinds the stack.
    _SIGTERM_SEEN.set()
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (:data:`INTERRUPTED` after
    Ctrl+C, :data:`TERMINATED` after SIGTERM, each with one line on standard error,
    not a traceback: what the command had started is stopped on the way out; the
    foreground ``dashboard`` exits 0 on either, its way to stop)."""
    args, unknown = _parser().parse_known_args(argv)
    if unknown:
        # argparse reports them with the top-level usage, which does not show the
        # options the command does take: the command's usage does.
        args.usage.error(f"unrecognized arguments: {' '.join(unknown)}")
    # SIGTERM's default action ends the process at once: `meshlite demo --services`
    # left its four services running. (Only the main thread may set a handler.)
    main_thread = threading.current_thread() is threading.main_thread()
    _SIGTERM_SEEN.clear()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        code: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (`meshlite check big.yaml | head`): as other tools, quietly.
        # Standard output goes to /dev/null first, so the interpreter's own flush at
        # exit does not fail on the closed pipe again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        if _SIGTERM_SEEN.is_set():
            sys.stderr.write(f"meshlite {args.command}: terminated\n")
            return TERMINATED
        sys.stderr.write(f"meshlite {args.command}: interrupted\n")
        return INTERRUPTED
    finally:
        if main_thread:  # (None: a handler not set from Python; the default then)
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
