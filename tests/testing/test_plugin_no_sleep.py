"""The ``meshlite_no_sleep`` marker and ini option skip real sleeps only: a retry given
a FakeClock still sleeps on it (fake time moves, ``.sleeps`` records the backoff),
so a suite that turns the option on can still assert backoff schedules."""

from __future__ import annotations

import time

# As in test_plugin.py: an inner in-process session must not be the first to import
# httpcore (pytester removes what it imported when it ends).
import httpcore  # noqa: F401
import pytest
from _pytester import INI, run_inner

import meshlite as ml
from meshlite._switches import no_real_sleeps
from meshlite.testing import FakeClock, ScriptedService

pytest_plugins = ["pytester"]


# Each test retries on the fake clock (its sleeps must happen, in fake time) and on
# the system clock (an hour of backoff: its sleeps must not).
TESTS = """
import pytest
import meshlite as ml
from meshlite.testing import ScriptedService

def flaky():
    return ScriptedService([ConnectionError, ConnectionError, ConnectionError, "ok"])

def hour():
    return ml.Pipeline(ml.Retry(attempts=4, backoff=ml.backoff.constant(3600.0)))

{mark}
def test_sync(fake_clock):
    assert ml.is_testing()
    retry = ml.Pipeline(ml.Retry(attempts=4, backoff=ml.backoff.constant(1.0),
                                 clock=fake_clock))
    assert retry.call(flaky()) == "ok"
    assert fake_clock.sleeps == [1.0, 1.0, 1.0]
    assert fake_clock.monotonic() == 3.0
    assert hour().call(flaky()) == "ok"             # two hours otherwise

{mark}
async def test_async(fake_clock):
    assert ml.is_testing()
    retry = ml.Pipeline(ml.Retry(attempts=4, backoff=ml.backoff.constant(2.0),
                                 clock=fake_clock))
    assert await retry.acall(flaky().acall) == "ok"
    assert fake_clock.sleeps == [2.0, 2.0, 2.0]
    assert fake_clock.monotonic() == 6.0
    assert await hour().acall(flaky().acall) == "ok"
"""




def test_the_ini_option_leaves_a_fake_clock_s_sleeps_alone(pytester: pytest.Pytester
                                                            ) -> None:
    pytester.makeini(INI + "meshlite_no_sleep = true\n")
    pytester.makepyfile(TESTS.format(mark=""))
    started = time.monotonic()
    run_inner(pytester).assert_outcomes(passed=2)
    assert time.monotonic() - started < 25.0  # no hour of backoff was slept
    assert not ml.is_testing()


def test_the_marker_leaves_a_fake_clock_s_sleeps_alone(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(TESTS.format(mark="@pytest.mark.meshlite_no_sleep"))
    run_inner(pytester).assert_outcomes(passed=2)
    assert not ml.is_testing()


def test_set_testing_inside_the_plugin_s_mode_skips_every_sleep_until_it_ends() -> None:
    # ml.set_testing(True) keeps its meaning (no sleep on any clock, docs/policies/
    # retry.md), also inside the plugin's mode, which comes back when it ends.
    clock = FakeClock()
    retry = ml.Pipeline(ml.Retry(attempts=2, backoff=ml.backoff.constant(1.0), clock=clock))
    with no_real_sleeps():
        with ml.set_testing(True):
            assert retry.call(ScriptedService([ConnectionError, "ok"])) == "ok"
        assert clock.sleeps == []
        assert ml.is_testing()
        assert retry.call(ScriptedService([ConnectionError, "ok"])) == "ok"
        assert clock.sleeps == [1.0]
    assert not ml.is_testing()
    assert retry.call(ScriptedService([ConnectionError, "ok"])) == "ok"
    assert clock.sleeps == [1.0, 1.0]
