"""Histogram: latencies appended, counted in batches, with nothing lost."""

from __future__ import annotations

import threading
from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlite._histogram import FOLD_AT, Histogram

BOUNDS = (0.001, 0.005, 0.01, 0.1, 1.0)


def reference(latencies: list[float]) -> list[int]:
    """One bisection per latency: the counts a batch fold must give."""
    counts = [0] * (len(BOUNDS) + 1)
    for seconds in latencies:
        counts[bisect_left(BOUNDS, seconds)] += 1
    return counts


latency = st.one_of(st.sampled_from([0.0, *BOUNDS, 2.0]),
                    st.floats(min_value=0.0, max_value=5.0, allow_nan=False))


@given(st.lists(st.lists(latency, max_size=FOLD_AT + 10), max_size=4))
def test_batches_count_as_one_bisection_per_latency(batches: list[list[float]]) -> None:
    histogram = Histogram(BOUNDS)
    everything: list[float] = []
    for batch in batches:
        for seconds in batch:
            histogram.observe(seconds)
        everything += batch
        histogram.read()  # a fold between batches changes nothing
    counts, total = histogram.read()
    assert list(counts) == reference(everything)
    assert total == pytest.approx(sum(everything))


def test_a_latency_equal_to_a_bound_counts_in_its_bucket() -> None:
    histogram = Histogram(BOUNDS)
    for seconds in (0.001, 0.001, 0.0010001):  # one bucket, then two: both fold paths
        histogram.observe(seconds)
    assert histogram.read()[0] == (2, 1, 0, 0, 0, 0)
    histogram.observe(0.01)
    assert histogram.read()[0] == (2, 1, 1, 0, 0, 0)


def test_the_append_that_reaches_the_limit_folds() -> None:
    histogram = Histogram(BOUNDS)
    for _ in range(FOLD_AT - 1):
        histogram.observe(0.5)
    assert len(histogram.pending) == FOLD_AT - 1
    histogram.observe(0.0005)
    assert histogram.pending == []
    assert histogram.read() == ((1, 0, 0, 0, FOLD_AT - 1, 0),
                                pytest.approx(0.5 * (FOLD_AT - 1) + 0.0005))


def test_threads_appending_while_others_fold_lose_nothing() -> None:
    histogram = Histogram(BOUNDS)
    threads, each = 6, 5000
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def writer(seconds: float) -> None:
        barrier.wait()
        for _ in range(each):
            histogram.observe(seconds)

    def reader() -> None:
        barrier.wait()
        while not stop.is_set():
            histogram.read()

    values = (0.0, 0.003, 0.007)  # one per bucket of the first three
    pool = [threading.Thread(target=writer, args=(values[i % 3],)) for i in range(threads)]
    scraper = threading.Thread(target=reader)
    for t in (*pool, scraper):
        t.start()
    for t in pool:
        t.join()
    stop.set()
    scraper.join()
    counts, total = histogram.read()
    assert sum(counts) == threads * each
    assert counts[:3] == (2 * each, 2 * each, 2 * each)  # two writers per value
    assert total == pytest.approx(each * 2 * (0.003 + 0.007))


def test_add_carries_counts_and_checks_their_number() -> None:
    histogram = Histogram(BOUNDS)
    histogram.add((1, 2, 3, 0, 0, 1), 9.5)
    histogram.observe(0.0005)
    assert histogram.read() == ((2, 2, 3, 0, 0, 1), pytest.approx(9.5005))
    with pytest.raises(ValueError, match="3 buckets given, 6 expected"):
        histogram.add((1, 2, 3), 1.0)
