"""What docs/routing.md and docs/security.md say of outlier detection's reasons,
checked with real loopback servers: a request's query token in the error that ejects
a backend is masked in the ejection's reason, which is logged, sent to hooks and
shown by ``mesh.health()`` and the dashboard."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import httpx
import pytest
from _logs import all_log_records
from _raw_http import answering

import meshlite as ml
from meshlite.testing import FakeBackend

SECRET = "s3cr3t-qu3ry-t0ken"


@pytest.mark.parametrize(("rule", "says"), [
    ({"consecutive_failures": 2}, "2 consecutive failures (last: RemoteProtocolError("),
    ({"consecutive_failures": None, "failure_rate": 1.0, "failure_rate_window": 2},
     "failure rate 100% over its last 2 attempts (last: RemoteProtocolError("),
], ids=["consecutive", "rate"])
async def test_an_ejection_reason_shows_no_token_of_the_request(rule: dict[str, Any],
                                                                says: str) -> None:
    # aiohttp's parse errors end with the request's URL, query and all
    # (url='http://...?token=...'), and the reason quoted that message as it was.
    async with answering(b"garbage\r\n\r\n") as bad, FakeBackend() as good:
        service = ml.Service("users", [bad, good.url], balancer="round_robin",
                             pipeline=ml.Pipeline(), outlier_detection=ml.OutlierDetection(**rule))
        events: list[ml.Event] = []
        service.add_hook(events.append)
        with all_log_records() as records:
            async with ml.Mesh([service]) as mesh:
                for _ in range(4):
                    with contextlib.suppress(httpx.HTTPError):
                        await mesh.http("users").get(f"/orders?token={SECRET}&page=2")
                health = {b.address: b for b in mesh.health()["users"].backends}
    (ejected,) = [e for e in events if isinstance(e, ml.BackendEjected)]
    assert ejected.address == bad
    assert says in ejected.reason
    assert f"{bad}/orders?token=***" in ejected.reason  # (the message is cut after it)
    assert health[bad].status == "ejected"
    assert SECRET not in health[bad].reason + repr(events) + "\n".join(
        r.getMessage() for r in records if r.name.startswith("meshlite"))
    assert any(r.levelno == logging.WARNING and "ejected" in r.getMessage() for r in records)
