"""Data plane in instructions: the CPU cost of a request, robust to a busy machine.

``benchmarks/dataplane.py`` measures requests per second and CPU time, which move by
10-20% (and more under load) on a shared VM. This script counts the instructions a
client process executes per request with valgrind's callgrind (``apt-get install
valgrind``), which other processes on the machine do not change: each client runs
twice against the same loopback nginx (``dataplane.py``'s), for ``--requests`` and
five times as many, and the difference divided by the extra requests is the cost of
one request (start-up and warm-up cancel out). Mesh rows use the default service, as
in ``dataplane.py``.

    .venv/bin/python benchmarks/dataplane_instructions.py     # a few minutes
    .venv/bin/python benchmarks/dataplane_instructions.py --opcodes

``--opcodes`` (no valgrind needed) runs whole requests through bare aiohttp and
``mesh.aiohttp()`` against the same nginx, counts the Python bytecodes each function
runs per request, and lists the functions whose counts differ, the mesh's own apart
from the rest (aiohttp, yarl, multidict, asyncio): what aiohttp itself does
differently inside a mesh session.

``--kinds`` picks the clients (default: the four with targets below); ``httpx`` and
``mesh.http()`` (32 in flight) have no target but can be counted the same way. With
``--opcodes`` the first two kinds named are compared, the first as the bare one:

    .venv/bin/python benchmarks/dataplane_instructions.py --kinds "mesh.http()" "mesh.http_sync()"
    .venv/bin/python benchmarks/dataplane_instructions.py --opcodes --kinds httpx "mesh.http()"

The targets of ``dataplane.py`` in instructions: ``mesh.aiohttp()`` at most 1/0.85 =
1.18x bare aiohttp's at 32 in flight (a CPU-bound client's rate is inverse to its
cost), ``mesh.http_sync()`` at most 1.5x urllib3's. Instructions are not time (a
larger program runs fewer instructions a cycle), so this is a lower bound of the
wall-clock ratio. Exits with 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _bytecodes import counting
from dataplane import _async_client, _sync_client, nginx

KINDS = {"aiohttp": 32, "aiohttp, no total": 32, "mesh.aiohttp()": 32, "urllib3": 1,
         "mesh.http_sync()": 1, "httpx": 32, "mesh.http()": 32, "httpx.Client": 1}
"""Client kinds and the requests each keeps in flight."""

TARGETED = ("aiohttp", "mesh.aiohttp()", "urllib3", "mesh.http_sync()")
"""The kinds measured by default: those of the two targets."""


def child(kind: str, requests: int, urls: list[str]) -> None:
    """Run ``requests`` through one client (under callgrind, from the parent)."""
    concurrency = KINDS[kind]
    sync = concurrency == 1
    (_sync_client if sync else _async_client)(kind, urls)(requests, concurrency)


def instructions(kind: str, requests: int, urls: list[str], tmp: Path) -> int:
    out = tmp / f"callgrind.{requests}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q",
         sys.executable, __file__, "--child", kind, str(requests), *urls],
        check=True, stdout=subprocess.DEVNULL)
    found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in callgrind's output for {kind}")
    return int(found.group(1))


def opcodes(requests: int, pair: tuple[str, str]) -> None:
    """Print the bytecodes a request of the two kinds of ``pair`` (bare aiohttp and
    ``mesh.aiohttp()`` by default), and each function whose count differs between
    them (the second minus the first)."""
    ours = {p.name for p in (Path(__file__).parent.parent / "meshlite").rglob("*.py")}
    per: dict[str, Counter[str]] = {}
    with nginx(2) as urls:
        for kind in pair:
            counts: Counter[str] = Counter()

            @contextlib.contextmanager
            def counted(into: Counter[str] = counts) -> Iterator[None]:
                with counting() as found:
                    yield
                into.update(found)

            client = _sync_client if KINDS[kind] == 1 else _async_client
            client(kind, urls, around=counted)(requests, KINDS[kind])
            per[kind] = counts
            print(f"{kind:18} {sum(counts.values()) / requests:>8,.0f} bytecodes a request")
    bare, mesh = per[pair[0]], per[pair[1]]
    rows = sorted(((mesh[k] - bare[k]) / requests, k) for k in bare.keys() | mesh.keys())
    for title, mine in (("the mesh's own", True), ("aiohttp, yarl, multidict, asyncio", False)):
        chosen = [(d, k) for d, k in rows if abs(d) >= 0.5 and (k.split(":")[0] in ours) == mine]
        print(f"\n{title}: {sum(d for d, _ in chosen):+,.0f} bytecodes a request")
        for d, k in sorted(chosen, key=lambda row: -abs(row[0]))[:25]:
            print(f"{d:+8.1f}  {k}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--opcodes", action="store_true",
                        help="count the Python bytecodes of a request by function, bare "
                             "aiohttp against mesh.aiohttp() (no valgrind needed)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, metavar="KIND",
                        help=f"the clients to measure, of {', '.join(KINDS)} (default: "
                             f"{', '.join(TARGETED)}; with --opcodes, the first two)")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2:])
        return 0
    kinds = args.kinds or (["aiohttp", "mesh.aiohttp()"] if args.opcodes else TARGETED)
    if args.opcodes:
        if len(kinds) < 2:
            parser.error("--opcodes compares two kinds: name two with --kinds")
        opcodes(args.requests, (kinds[0], kinds[1]))
        return 0
    if shutil.which("valgrind") is None or shutil.which("nginx") is None:
        print("cannot run: needs valgrind and nginx (apt-get install valgrind nginx)",
              file=sys.stderr)
        return 2
    small, large = args.requests, args.requests * 5
    per: dict[str, float] = {}
    with nginx(2) as urls, tempfile.TemporaryDirectory() as where:
        for kind in kinds:
            counts = [instructions(kind, n, urls, Path(where)) for n in (small, large)]
            per[kind] = (counts[1] - counts[0]) / (large - small)
            print(f"{kind:18} {per[kind]:>12,.0f} instructions/request "
                  f"({KINDS[kind]} in flight)", flush=True)
    lines = []
    for kind, bare, limit in (("mesh.aiohttp()", "aiohttp", 1 / 0.85),
                              ("mesh.http_sync()", "urllib3", 1.5)):
        if kind not in per or bare not in per:
            continue
        ratio = per[kind] / per[bare]
        lines.append(f"{kind} / {bare} instructions per request = {ratio:.2f} (target "
                     f"<= {limit:.2f}): {'met' if ratio <= limit else 'NOT met'}")
    print("\n".join(lines))
    with open("/proc/loadavg") as f:
        print(f"load average after: {f.read().split()[0]} (instruction counts do not "
              "depend on it)")
    return 1 if any("NOT met" in line for line in lines) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts in both runs
    sys.exit(main())
