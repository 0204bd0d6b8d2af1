"""Recorded errors come back from a cassette as they were raised: same class, same
arguments when they are simple, and a meshlite error's ``retry_after`` and ``policy``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import meshlite as ml
from meshlite.testing import FakeClock, Recorder, replay


def round_trip(tmp_path: Path, error: Exception) -> tuple[Exception, Exception]:
    """``error`` as a recorded call raised it, and as its replay raises it."""
    cassette = tmp_path / "c.json"

    def fail() -> None:
        raise error

    with Recorder(cassette) as rec, pytest.raises(type(error)) as recorded:
        rec.wrap(fail, name="fail")()
    with pytest.raises(Exception) as replayed:  # noqa: PT011 (its class is checked below)
        replay(cassette).call("fail")
    return recorded.value, replayed.value


@pytest.mark.parametrize("error", [
    KeyError("user-7"),               # its str() quotes it: "'user-7'"
    FileNotFoundError(2, "No such file"),
    ValueError("plain", 3, None, 1.5, True),
    ValueError("just a message"),
], ids=repr)
def test_simple_error_arguments_round_trip(tmp_path: Path, error: Exception) -> None:
    # The error was rebuilt as cls(str(error)): KeyError("user-7") came back with
    # args ("'user-7'",), so code reading error.args[0] saw another key.
    recorded, replayed = round_trip(tmp_path, error)
    assert type(replayed) is type(recorded)
    assert replayed.args == recorded.args
    assert str(replayed) == str(recorded)


def test_an_error_whose_arguments_json_cannot_hold_is_rebuilt_from_its_message(
        tmp_path: Path) -> None:
    recorded, replayed = round_trip(tmp_path, ValueError("bad", object()))
    assert type(replayed) is ValueError
    assert replayed.args == (str(recorded),)


def test_a_meshlite_error_keeps_its_retry_after_and_policy(tmp_path: Path) -> None:
    # A replayed RateLimitedError had retry_after None: code waiting as told did not.
    limited = ml.Pipeline(ml.RateLimit(rate=1.0, burst=1, max_wait=0, clock=FakeClock()))
    limited.call(lambda: 1)
    with pytest.raises(ml.RateLimitedError) as raised:
        limited.call(lambda: 1)
    assert raised.value.retry_after is not None
    recorded, replayed = round_trip(tmp_path, raised.value)
    assert type(replayed) is ml.RateLimitedError
    assert isinstance(recorded, ml.RateLimitedError)
    assert isinstance(replayed, ml.RateLimitedError)
    assert (replayed.retry_after, replayed.policy) == (recorded.retry_after, recorded.policy)
    assert replayed.args == recorded.args
    stored = json.loads((tmp_path / "c.json").read_text())["interactions"][0]["error"]
    assert "args" not in stored  # only the message: not written twice
