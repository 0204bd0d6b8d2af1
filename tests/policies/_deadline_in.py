"""A test stand-in for an outer ``ml.Timeout``: it sets the call's deadline on a
clock and nothing else (no timer), so a test sees what a policy inside does with it."""

from __future__ import annotations

from typing import Any

import meshlite as ml


class DeadlineIn(ml.Policy):
    """Sets the call's deadline ``seconds`` ahead on ``clock``."""

    kind = "deadline"

    def __init__(self, seconds: float, clock: ml.Clock) -> None:
        super().__init__()
        self.seconds, self.clock = seconds, clock

    def wrap(self, call_next: ml.Handler) -> ml.Handler:
        def handle(ctx: ml.CallContext) -> Any:
            ctx.deadline, ctx.clock = self.clock.monotonic() + self.seconds, self.clock
            return call_next(ctx)

        return handle

    def awrap(self, call_next: ml.AsyncHandler) -> ml.AsyncHandler:
        async def handle(ctx: ml.CallContext) -> Any:
            ctx.deadline, ctx.clock = self.clock.monotonic() + self.seconds, self.clock
            return await call_next(ctx)

        return handle
