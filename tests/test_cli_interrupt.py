"""Ctrl+C (or SIGTERM) during a ``meshlite`` command: one line on standard error,
exit 130 (143), as a shell reports a command the signal ended, no traceback, and
nothing the command started left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from meshlite.cli import INTERRUPTED, TERMINATED

_MAIN = "import sys; from meshlite.cli import main; sys.exit(main())"


def _interrupt(args: list[str], marker: str, group: bool = True,
               signum: int = signal.SIGINT, after: float = 0.0) -> tuple[int, str]:
    """Run ``meshlite ARGS`` in a process group of its own, send ``signum`` once
    ``marker`` is in its output, to the whole group (Ctrl+C in a terminal) or to the
    command alone (``kill``, ``timeout``, a supervisor); return its exit status and
    output (standard output and error), once every process of the group has ended."""
    with subprocess.Popen([sys.executable, "-c", _MAIN, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as child:
        assert child.stdout is not None
        seen = ""
        try:
            while marker not in seen:
                line = child.stdout.readline()
                assert line, f"meshlite {args} ended before {marker!r}:\n{seen}"
                seen += line
            time.sleep(after)
            if group:
                os.killpg(child.pid, signum)
            else:
                child.send_signal(signum)
            seen += child.stdout.read()
            code = child.wait(timeout=60)
            _wait_group_gone(child.pid)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    return code, seen


def _wait_group_gone(pgid: int) -> None:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return
    raise AssertionError(f"processes of group {pgid} outlived the command")


def _services_gone(output: str) -> None:
    """The shop's services run in sessions of their own (a terminal's Ctrl+C reaches
    the command alone, which stops them callers first) and the command waits for
    them: once it has exited, none may still hold its port."""
    ports = [int(port) for port in re.findall(r"starting \w+ on http://127\.0\.0\.1:(\d+)",
                                              output)]
    assert ports, output
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "marker"), [
    (["demo"], "calls: 100/"),                     # the policy part, sync
    (["demo"], "plain round robin: 1/"),           # the mesh part, on an event loop
], ids=["policies", "mesh"])
def test_ctrl_c_during_the_demo_exits_130_without_a_traceback(
        args: list[str], marker: str) -> None:
    code, err = _interrupt(args, marker)
    assert code == INTERRUPTED, err
    assert "Traceback" not in err, err
    assert err.endswith("meshlite demo: interrupted\n"), err


@pytest.mark.timeout(180)
def test_ctrl_c_while_the_shop_demo_starts_stops_its_services() -> None:
    pytest.importorskip("uvicorn")
    code, err = _interrupt(["demo", "--services", "--requests", "5"], "starting orders")
    assert code == INTERRUPTED, err
    assert "Traceback" not in err, err
    assert "meshlite demo: interrupted\n" in err, err
    _services_gone(err)


@pytest.mark.timeout(180)
def test_ctrl_c_while_the_shop_serves_checkouts_stops_it_without_a_traceback() -> None:
    pytest.importorskip("uvicorn")
    # The command terminated the four services at once (and a terminal's Ctrl+C
    # reached them all): the gateway or orders, still serving a checkout, could fail
    # on a service already gone, with a traceback (in about one run of six here).
    code, err = _interrupt(["demo", "--services", "--requests", "2000"], "driving",
                           group=False, after=1.0)  # checkouts flowing
    assert code == INTERRUPTED, err
    assert "Traceback" not in err, err
    assert "Exception in ASGI application" not in err, err
    _services_gone(err)


@pytest.mark.timeout(180)
def test_sigterm_to_the_shop_demo_stops_its_services_and_exits_143() -> None:
    pytest.importorskip("uvicorn")
    # SIGTERM's default action ended the command at once, its four services left
    # running (holding their ports) for ever.
    code, err = _interrupt(["demo", "--services", "--requests", "5"], "starting orders",
                           group=False, signum=signal.SIGTERM)
    assert code == TERMINATED, err
    assert "Traceback" not in err, err
    assert err.endswith("meshlite demo: terminated\n"), err
    _services_gone(err)


@pytest.mark.timeout(120)
def test_sigterm_during_the_mesh_demo_exits_143_without_a_traceback() -> None:
    code, err = _interrupt(["demo"], "plain round robin: 1/", group=False,
                           signum=signal.SIGTERM)
    assert code == TERMINATED, err
    assert "Traceback" not in err, err
    assert err.endswith("meshlite demo: terminated\n"), err
