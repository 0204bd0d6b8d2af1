"""`meshlite demo`, part one: a flaky, sometimes slow function through a full pipeline.

The function fails a fifth of its calls, is slow for some, and goes through a bad
spell in the middle of the run. Hooks count what each policy did, and the demo ends
with a table of it. Deterministic (seeded), non-interactive, a few seconds long.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import TextIO

from . import backoff
from ._console import Progress, render_table
from ._events import Event
from ._pipeline import Pipeline
from .policies._bulkhead import Bulkhead
from .policies._circuit_breaker import CircuitBreaker
from .policies._fallback import Fallback
from .policies._retry import Retry
from .policies._timeout import Timeout

__all__ = ["run_policy_demo"]

CALLS = 400
CONCURRENCY = 8
PACE = 0.03  # seconds each worker waits between calls: about 250 calls a second
BAD_SPELL = range(160, 240)  # calls for these items fail almost always (about 0.3 s)


class _FlakyService:
    """A stand-in for a remote call: mostly fast, sometimes slow, sometimes failing,
    and failing almost always for a stretch of the run (an outage the breaker sees)."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.attempts = 0

    async def __call__(self, item: int) -> str:
        self.attempts += 1
        roll = self.random.random()
        failure_rate = 0.95 if item in BAD_SPELL else 0.15
        await asyncio.sleep(0.002)
        if roll < failure_rate:
            raise ConnectionError(f"connection reset while fetching item {item}")
        if roll > 0.95:
            await asyncio.sleep(0.2)  # a slow answer, past the per-call timeout
        return f"item-{item}"


def _pipeline(counts: Counter[str]) -> Pipeline:
    breaker = CircuitBreaker(
        failure_rate=0.5, window=20, min_calls=10, open_seconds=0.1, half_open_calls=2,
        name="inventory",
    )
    pipeline = Pipeline(
        Fallback("fallback"),
        Timeout(0.5),
        Retry(attempts=3, backoff=backoff.exponential(initial=0.005, maximum=0.05),
              budget=None, random=random.Random(7)),
        breaker,
        Timeout(0.05),
        Bulkhead(max_concurrent=CONCURRENCY),
        service="inventory",
    )

    def count(event: Event) -> None:
        counts[type(event).__name__] += 1

    pipeline.add_hook(count)
    return pipeline


async def _drive(service: _FlakyService, pipeline: Pipeline, progress: Progress) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(CALLS):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            await asyncio.sleep(PACE)
            result = await pipeline.acall(service, item)
            outcomes["fallback" if result == "fallback" else "ok"] += 1
            progress.advance()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes


def run_policy_demo(out: TextIO, err: TextIO, seed: int = 1) -> dict[str, int]:
    """Run the demo, print its table to ``out`` (progress to ``err``), return the counts."""
    counts: Counter[str] = Counter()
    service = _FlakyService(seed)
    pipeline = _pipeline(counts)
    out.write(
        f"Sending {CALLS} calls ({CONCURRENCY} at a time) to a flaky inventory service through\n"
        "Fallback > Timeout(0.5 s total) > Retry(3) > CircuitBreaker > Timeout(50 ms) > "
        "Bulkhead\n\n"
    )
    outcomes = asyncio.run(_drive(service, pipeline, Progress(CALLS, "calls", err)))
    rows = [
        ("calls", "logical calls made", CALLS),
        ("service", "attempts that reached the service", service.attempts),
        ("retry", "retries scheduled", counts["RetryScheduled"]),
        ("retry", "calls that ran out of attempts", counts["RetriesExhausted"]),
        ("circuit_breaker", "opened", counts["CircuitOpened"]),
        ("circuit_breaker", "half-opened", counts["CircuitHalfOpened"]),
        ("circuit_breaker", "closed again", counts["CircuitClosed"]),
        ("circuit_breaker", "calls rejected while open", counts["CallRejected"]),
        ("timeout", "attempts timed out", counts["TimedOut"]),
        ("fallback", "answers from the fallback", counts["FallbackUsed"]),
        ("result", "calls answered by the service", outcomes["ok"]),
    ]
    out.write("\n" + render_table(("policy", "what it did", "count"), rows) + "\n")
    return {f"{p}:{what}": n for p, what, n in rows}
