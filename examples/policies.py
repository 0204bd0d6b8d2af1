"""A flaky function made dependable with one decorator, then with a pipeline.

Needs no extra::

    python examples/policies.py
"""

from __future__ import annotations

import asyncio
import random

import meshlite as ml

rng = random.Random(3)


@ml.resilient(timeout=2.0, retries=3, breaker=True, cache_ttl=30.0)
def price(sku: str) -> float:
    if rng.random() < 0.3:
        raise ConnectionError("the pricing service dropped the connection")
    return 9.99


pipeline = ml.Pipeline(
    ml.Fallback(value={"stock": "unknown"}, on=(ml.CircuitOpenError, ml.TimeoutExceeded)),
    ml.Timeout(1.0),
    ml.Retry(attempts=3, backoff=ml.backoff.exponential(initial=0.01, maximum=0.2)),
    ml.CircuitBreaker(failure_rate=0.5, window=20, min_calls=10, open_seconds=5.0),
    ml.Bulkhead(max_concurrent=8),
)


@pipeline
async def stock(sku: str) -> dict[str, object]:
    await asyncio.sleep(0.005)
    if rng.random() < 0.2:
        raise ConnectionError("the inventory service reset the connection")
    return {"sku": sku, "stock": 3}


async def main() -> None:
    print("price:", price("sku-1"), "(retried if it failed, then cached)")
    results = await ml.gather(stock, [f"sku-{i}" for i in range(20)], concurrency=8)
    answered = sum(1 for r in results if isinstance(r, dict) and r.get("stock") == 3)
    fallback = sum(1 for r in results if isinstance(r, dict) and r.get("stock") == "unknown")
    failed = [r for r in results if isinstance(r, BaseException)]
    print(f"stock: {answered} answered by the service, {fallback} by the fallback, "
          f"{len(failed)} failed after 3 attempts {[type(e).__name__ for e in failed]}")


if __name__ == "__main__":
    asyncio.run(main())
