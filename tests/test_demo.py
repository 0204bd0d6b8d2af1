"""`meshlite demo` runs to the end, shows the mesh beating plain round robin, and
leaves nothing running."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

from meshlite._demo_mesh import CALLS

# Runs the command's main() in a fresh interpreter, then reports what is still alive
# in that process: threads, and sockets (Linux only; -1 elsewhere).
DRIVER = textwrap.dedent("""
    import os, sys, threading
    from meshlite.cli import main
    code = main(["demo"])
    sys.stdout.flush()
    fds = "/proc/self/fd"
    sockets = -1
    if os.path.isdir(fds):
        sockets = 0
        for name in os.listdir(fds):
            try:
                sockets += os.readlink(os.path.join(fds, name)).startswith("socket:")
            except OSError:
                pass
    print(f"@@ threads={threading.active_count()} sockets={sockets}")
    sys.exit(code)
""")


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def demo() -> Run:
    done = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True,
                          timeout=90, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


def _row(out: str, label: str) -> list[str]:
    for line in out.splitlines():
        if line.startswith(label):
            return line[len(label):].split()
    raise AssertionError(f"no {label!r} row in the demo's output:\n{out}")


def test_demo_exits_zero(demo: Run) -> None:
    assert demo.code == 0, demo.err


def _policy_count(out: str, what: str) -> int:
    for line in out.splitlines():
        label, _, count = line.rstrip().rpartition(" ")
        if label.rstrip().endswith(what) and count.isdigit():
            return int(count)
    raise AssertionError(f"no {what!r} row in the policy table:\n{out}")


def test_demo_policy_table_shows_every_policy_at_work(demo: Run) -> None:
    counts = {what: _policy_count(demo.out, what) for what in (
        "retries scheduled", "opened", "half-opened", "closed again",
        "calls rejected while open", "attempts timed out", "answers from the fallback",
        "calls answered by the service")}
    assert all(n > 0 for n in counts.values()), counts
    answered = counts["calls answered by the service"] + counts["answers from the fallback"]
    assert answered == _policy_count(demo.out, "logical calls made")  # none lost


def test_table_has_both_columns(demo: Run) -> None:
    header = next(line for line in demo.out.splitlines() if "plain round robin" in line
                  and "meshlite" in line and "success" not in line)
    assert header.index("plain round robin") < header.index("meshlite")
    for label in ("success rate", "p50 latency", "p99 latency", "retries", "ejections"):
        assert len(_row(demo.out, label)) >= 2, label


def test_mesh_succeeds_more_often_than_plain_round_robin(demo: Run) -> None:
    plain, meshed = (float(v.rstrip("%")) for v in _row(demo.out, "success rate"))
    assert meshed > plain
    # One backend in four is down: plain round robin loses at least that quarter.
    assert plain < 80.0


def test_mesh_retried_and_ejected(demo: Run) -> None:
    assert _row(demo.out, "retries")[0] == "0"
    assert int(_row(demo.out, "retries")[1]) > 0
    assert int(_row(demo.out, "ejections")[1]) >= 1


def test_progress_goes_to_stderr(demo: Run) -> None:
    assert f"meshlite: {CALLS}/{CALLS}" in demo.err
    assert f"plain round robin: {CALLS}/{CALLS}" in demo.err


def test_nothing_left_running(demo: Run) -> None:
    match = re.search(r"@@ threads=(\d+) sockets=(-?\d+)", demo.out)
    assert match is not None, demo.out
    threads, sockets = int(match[1]), int(match[2])
    assert threads == 1  # only the main thread
    assert sockets in (0, -1)  # no server or client socket left open
