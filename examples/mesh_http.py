"""A mesh over three loopback backends, one slow and one failing, with an httpx client.

Needs the ``http`` extra (httpx: ``pip install 'meshlite-mesh[http]'``)::

    python examples/mesh_http.py
"""

from __future__ import annotations

import asyncio

import meshlite as ml
from meshlite.testing import FakeBackend


async def main() -> None:
    async with (FakeBackend() as fast, FakeBackend(latency=0.2) as slow,
                FakeBackend(error_rate=0.5) as flaky):
        mesh = ml.Mesh([
            ml.Service(
                "users",
                backends=[fast.url, slow.url, flaky.url],   # p2c_ewma balances them
                pipeline=ml.Pipeline(ml.Timeout(2.0), ml.Retry(attempts=3)),
                outlier_detection=ml.OutlierDetection(consecutive_failures=3),
            ),
        ])
        async with mesh:
            users = mesh.http("users")
            statuses = [(await users.get(f"/users/{i}")).status_code for i in range(50)]
            print("statuses:", {s: statuses.count(s) for s in set(statuses)})
            for backend in mesh.snapshot()["users"].backends:
                print(f"  {backend.address}: {backend.requests} requests, "
                      f"{backend.errors} errors, {backend.status}")


if __name__ == "__main__":
    asyncio.run(main())
