"""Where ``mesh.aiohttp()``'s own work per request goes, layer by layer, in instructions.

``dataplane_instructions.py`` counts a whole request against nginx; this script counts
only the mesh's part: the session's routing middleware, called as aiohttp calls it
(through its per-request middleware closure) around a handler that answers at once,
so no socket, parser or event-loop turn is counted. Each configuration of the service
runs twice under valgrind's callgrind (``apt-get install valgrind``), for
``--requests`` and five times as many; the difference divided by the extra requests
is the cost of one request. Switching one layer off at a time shows what it costs:

    .venv/bin/python benchmarks/dataplane_layers.py     # about two minutes
    .venv/bin/python benchmarks/dataplane_layers.py --opcodes "default service"

Rows: the default service (``p2c_ewma``, ``Retry(attempts=2)``, the call span, outlier
detection, metrics on); the same with one layer off or replaced; everything off
(``round_robin``, an empty pipeline, no call span, no outlier detection, no
metrics); and an empty middleware (what aiohttp's closure costs around a handler).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _bytecodes import counting, report

ROWS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default service": ({}, {}),
    "round_robin": ({"balancer": "round_robin"}, {}),
    "metrics off": ({}, {"metrics": False}),
    "no Retry": ({"pipeline": "empty"}, {}),
    "no call span": ({"trace": False}, {}),
    "no outlier detection": ({"outlier_detection": None}, {}),
    "all of these off": ({"balancer": "round_robin", "pipeline": "empty", "trace": False,
                          "outlier_detection": None}, {"metrics": False}),
    "empty middleware": ({}, {}),
}
"""Service and Mesh options of each row."""


def child(row: str, requests: int, opcodes: bool = False) -> None:
    """Send ``requests`` through the middleware of one row (under callgrind); with
    ``opcodes``, count the Python bytecodes each function runs per request instead."""
    import aiohttp
    from aiohttp.client_middlewares import build_client_middlewares
    from yarl import URL

    import meshlite as ml

    service_options, mesh_options = ROWS[row]
    if service_options.get("pipeline") == "empty":
        service_options = {**service_options, "pipeline": ml.Pipeline()}

    answer = SimpleNamespace(status=200, headers={})  # what _attempt reads of one

    async def handler(request: Any) -> Any:
        return answer

    async def empty(request: Any, handler: Any) -> Any:
        return await handler(request)

    async def main() -> None:
        mesh = ml.Mesh([ml.Service("bench", ["http://127.0.0.1:1", "http://127.0.0.1:2"],
                                   **service_options)], **mesh_options)
        session = mesh.aiohttp("bench")
        middlewares = (empty,) if row == "empty middleware" else session._middlewares
        loop = asyncio.get_running_loop()
        url = URL("http://bench/items/1")
        made = [aiohttp.ClientRequest("GET", url, loop=loop, session=session)
                for _ in range(64)]
        async def send(n: int) -> None:
            for i in range(n):
                request = made[i % 64]
                request.url = url  # each attempt re-pointed it at a backend
                await build_client_middlewares(handler, middlewares)(request)

        await send(1000)  # warm-up
        if opcodes:
            with counting() as counts:
                await send(requests)
            del counts["dataplane_layers.py:send"]  # this driver loop, not the mesh's work
            report(row, counts, requests, "request", 25)
        else:
            await send(requests)
        await session.close()

    asyncio.run(main())


def instructions(row: str, requests: int, tmp: str) -> int:
    out = os.path.join(tmp, f"callgrind.{requests}")
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q",
         sys.executable, __file__, "--child", row, str(requests)],
        check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        found = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in callgrind's output for {row}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--opcodes", metavar="ROW", choices=ROWS,
                        help="count one row's Python bytecodes per request, by function "
                             "(no valgrind needed)")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    if args.opcodes:
        child(args.opcodes, 500, opcodes=True)
        return 0
    if shutil.which("valgrind") is None:
        print("cannot run: needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    small, large = args.requests, args.requests * 5
    with tempfile.TemporaryDirectory() as tmp:
        for row in ROWS:
            counts = [instructions(row, n, tmp) for n in (small, large)]
            print(f"{row:22} {(counts[1] - counts[0]) / (large - small):>8,.0f} "
                  "instructions/request", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts in both runs
    sys.exit(main())
