"""ScriptedService: an in-process stand-in for a service that answers as a test says."""

from __future__ import annotations

import random as _random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._arguments import explained
from .._clock import Clock
from .._errors import ScriptExhausted
from .._validate import clock_option, fail, fail_choice, non_negative

__all__ = ["ScriptExhausted", "ScriptedCall", "ScriptedService", "Step", "step"]

_OWNER = "ScriptedService"
Latency = float | Callable[[], float]
ErrorSpec = BaseException | type[BaseException]


def _is_error(value: Any) -> bool:
    return isinstance(value, BaseException) or (
        isinstance(value, type) and issubclass(value, BaseException)
    )


def _check_latency(owner: str, value: Any) -> Latency:
    return value if callable(value) else non_negative(owner, "latency", value)


@explained
@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One scripted outcome; build it with :func:`step`."""

    result: Any = None
    error: ErrorSpec | None = None
    latency: Latency | None = None

    def __post_init__(self) -> None:
        if self.error is not None and not _is_error(self.error):
            fail("step", "error", self.error, "an exception instance or class")
        if self.error is not None and self.result is not None:
            fail("step", "error/result", (self.result, self.error),
                 "at most one of result and error= (a step either returns or raises)")
        if self.latency is not None:
            _check_latency("step", self.latency)


def step(result: Any = None, *, error: ErrorSpec | None = None,
         latency: Latency | None = None) -> Step:
    """One step of a script: wait ``latency``, then raise ``error`` or return ``result``.

    Args:
        result: The value returned (returned as is, even an exception class).
        error: An exception instance (raised as is, the same object each time) or
            class (instantiated per call) to raise instead of returning.
        latency: Seconds to wait on the service's clock (or a callable drawing
            them); ``None`` uses the service's ``latency``.

    Raises:
        ConfigError: ``error`` is not an exception, both ``result`` and ``error`` are
            given, or ``latency`` is negative.
    """
    return Step(result=result, error=error, latency=latency)


def _check_kinds(script: object, name: object, random: object) -> None:
    """Refuse a ``script``, ``name`` or ``random`` of the wrong kind."""
    if script is not None and (isinstance(script, str | bytes | bytearray)
                               or not isinstance(script, Iterable)):
        fail(_OWNER, "script", script, "a list of outcomes (values, errors or steps)")
    if not isinstance(name, str) or not name:
        fail(_OWNER, "name", name, "a non-empty string")
    if random is not None and not isinstance(random, _random.Random):
        fail(_OWNER, "random", random, "a random.Random or None")


def _as_step(item: Any) -> Step:
    if isinstance(item, Step):
        return item
    return Step(error=item) if _is_error(item) else Step(result=item)


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """One call a :class:`ScriptedService` received.

    Attributes:
        args: Positional arguments.
        kwargs: Keyword arguments.
        time: ``clock.monotonic()`` when the call began.
        result: What it returned (``None`` when it raised).
        error: What it raised, or ``None`` (cancellation during the latency included).
        latency: Seconds it waited on the clock.
    """

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0
    result: Any = None
    error: BaseException | None = None
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the call returned instead of raising."""
        return self.error is None


@explained
class ScriptedService:
    """A fake service that answers each call as the test scripted it.

    Call it like a function (``svc(*args)``) from sync code and
    ``await svc.acall(*args)`` from async code; every call is logged in
    :attr:`calls`. Choose one mode:

    - ``script``: a sequence of outcomes used in order, each a value to return,
      an exception (instance or class) to raise, or a :func:`step`;
    - ``outcomes``: ``[(outcome, weight), ...]`` drawn at random per call;
    - ``error_rate``: each call raises ``error`` with that probability, else
      returns ``result``;
    - none of those: every call returns ``result``.

    Args:
        script: The outcomes in call order.
        outcomes: Weighted outcomes drawn (seeded) at random.
        error_rate: Probability (0..1) of raising ``error``.
        result: The value returned by the random and the default modes.
        error: The error of ``error_rate`` (default ``ConnectionError``).
        latency: Seconds each call waits on ``clock`` first, or a callable
            drawing them (a step's own latency wins).
        exhausted: When the script runs out: ``"raise"`` :class:`ScriptExhausted`
            (default) or ``"repeat"`` the last step forever.
        name: Named in errors and in ``repr``.
        clock: Where latency is slept (``sleep`` / ``asleep``); pass a
            :class:`FakeClock` so no real time passes.
        seed: Seed of the random modes; ``random`` passes a generator instead.

    Raises:
        ConfigError: more than one mode, or an invalid option.
    """

    def __init__(
        self,
        script: Sequence[Any] | None = None,
        *,
        outcomes: Sequence[tuple[Any, float]] | None = None,
        error_rate: float | None = None,
        result: Any = None,
        error: ErrorSpec = ConnectionError,
        latency: Latency = 0.0,
        exhausted: Literal["raise", "repeat"] = "raise",
        name: str = "scripted",
        clock: Clock | None = None,
        seed: int | None = None,
        random: _random.Random | None = None,
    ) -> None:
        if sum(mode is not None for mode in (script, outcomes, error_rate)) > 1:
            fail_choice(_OWNER, "at most one of script=, outcomes= or error_rate=",
                        [n for n, v in (("script", script), ("outcomes", outcomes),
                                        ("error_rate", error_rate)) if v is not None])
        if exhausted not in ("raise", "repeat"):
            fail(_OWNER, "exhausted", exhausted, '"raise" or "repeat"')
        if not _is_error(error):
            fail(_OWNER, "error", error, "an exception instance or class")
        _check_kinds(script, name, random)
        clock = clock_option(_OWNER, clock)
        self._latency = _check_latency(_OWNER, latency)
        self._script = None if script is None else tuple(_as_step(s) for s in script)
        if exhausted == "repeat" and self._script == ():
            fail(_OWNER, "script", script, 'at least one step when exhausted="repeat"')
        self._choices, self._weights = _weighted(outcomes, error_rate, result, error)
        self._default = Step(result=result)
        self._exhausted = exhausted
        self.name = name
        self._clock = clock
        self._random = random or _random.Random(seed)
        self._lock = threading.Lock()
        self._count = 0
        self.calls: list[ScriptedCall] = []
        """Every call received, oldest first."""

    @property
    def call_count(self) -> int:
        """How many calls were made."""
        return self._count

    @property
    def remaining(self) -> int | None:
        """Script steps not used yet (``None`` outside script mode)."""
        if self._script is None:
            return None
        return max(0, len(self._script) - self._count)

    def reset(self) -> None:
        """Rewind the script to its first step and forget the calls."""
        with self._lock:
            self._count = 0
            self.calls.clear()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Wait the step's latency with ``clock.sleep``, then return or raise."""
        chosen, began, delay = self._begin(args, kwargs)
        if delay > 0:
            try:
                self._clock.sleep(delay)
            except BaseException as error:
                self._log(args, kwargs, began, delay, None, error)
                raise
        return self._finish(chosen, args, kwargs, began, delay)

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        """Wait the step's latency with ``await clock.asleep``, then return or raise."""
        chosen, began, delay = self._begin(args, kwargs)
        if delay > 0:
            try:
                await self._clock.asleep(delay)
            except BaseException as error:  # cancellation too: log it, then propagate
                self._log(args, kwargs, began, delay, None, error)
                raise
        return self._finish(chosen, args, kwargs, began, delay)

    def __repr__(self) -> str:
        return f"ScriptedService({self.name!r}, calls={self._count})"

    def _begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Step, float, float]:
        began = self._clock.monotonic()
        with self._lock:
            index = self._count
            self._count += 1
            chosen = self._pick(index)
        if chosen is None:
            total = len(self._script or ())
            error = ScriptExhausted(
                f"ScriptedService {self.name!r}: call #{index + 1} but the script has "
                f"{total} step(s); add steps, or pass exhausted=\"repeat\" to repeat the last",
                service=self.name,
            )
            self._log(args, kwargs, began, 0.0, None, error)
            raise error
        latency = self._latency if chosen.latency is None else chosen.latency
        delay = latency() if callable(latency) else latency
        return chosen, began, max(0.0, float(delay))

    def _pick(self, index: int) -> Step | None:
        script = self._script
        if script is not None:
            if index < len(script):
                return script[index]
            return script[-1] if self._exhausted == "repeat" else None
        if self._choices:
            return self._random.choices(self._choices, self._weights)[0]
        return self._default

    def _finish(self, chosen: Step, args: tuple[Any, ...], kwargs: dict[str, Any],
                began: float, delay: float) -> Any:
        spec = chosen.error
        if spec is None:
            self._log(args, kwargs, began, delay, chosen.result, None)
            return chosen.result
        error = spec if isinstance(spec, BaseException) else _instantiate(spec, self.name)
        self._log(args, kwargs, began, delay, None, error)
        raise error

    def _log(self, args: tuple[Any, ...], kwargs: dict[str, Any], began: float, delay: float,
             result: Any, error: BaseException | None) -> None:
        with self._lock:
            self.calls.append(ScriptedCall(args, kwargs, began, result, error, delay))


def _instantiate(cls: type[BaseException], name: str) -> BaseException:
    try:
        return cls()
    except TypeError:  # the class needs a message (MeshliteError and friends)
        return cls(f"scripted failure of {name!r}")


def _weighted(
    outcomes: Sequence[tuple[Any, float]] | None, error_rate: float | None,
    result: Any, error: ErrorSpec,
) -> tuple[tuple[Step, ...], tuple[float, ...]]:
    if error_rate is not None:
        rate = non_negative(_OWNER, "error_rate", error_rate)
        if rate > 1:
            fail(_OWNER, "error_rate", error_rate, "in [0, 1]")
        return (Step(error=error), Step(result=result)), (rate, 1.0 - rate)
    if outcomes is None:
        return (), ()
    pairs = list(outcomes)
    if not pairs or not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
        fail(_OWNER, "outcomes", outcomes, "a non-empty sequence of (outcome, weight) pairs")
    weights = tuple(non_negative(_OWNER, "outcomes weight", w) for _, w in pairs)
    if not sum(weights) > 0:
        fail(_OWNER, "outcomes", outcomes, "weights adding up to more than 0")
    return tuple(_as_step(o) for o, _ in pairs), weights
