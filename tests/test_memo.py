"""The one policy of the small caches on a request's path (``meshlite._memo``): at
most the bound, emptied when full, the value built once per miss."""

from __future__ import annotations

from meshlite._memo import remember


def test_a_miss_stores_and_returns_the_value() -> None:
    cache: dict[str, object] = {}
    value = object()
    assert remember(cache, "a", value, 4) is value
    assert cache == {"a": value}


def test_a_full_cache_is_emptied_before_the_new_entry() -> None:
    cache = {n: str(n) for n in range(3)}
    remember(cache, 3, "3", 4)
    assert cache == {0: "0", 1: "1", 2: "2", 3: "3"}  # not full until it holds the bound
    remember(cache, 4, "4", 4)
    assert cache == {4: "4"}  # every earlier entry forgotten, the new one kept


def test_the_cache_never_holds_more_than_its_bound() -> None:
    cache: dict[int, int] = {}
    sizes = set()
    for n in range(1000):
        remember(cache, n, n, 16)
        sizes.add(len(cache))
        assert cache[n] == n
    assert sizes == set(range(1, 17))


def test_a_stale_entry_is_replaced() -> None:
    cache = {"a": 1}
    assert remember(cache, "a", 2, 4) == 2
    assert cache == {"a": 2}


def test_the_value_is_built_once_per_miss() -> None:
    # The way each cache uses it: a dict read on every call, remember() on a miss.
    built: list[str] = []
    cache: dict[str, str] = {}

    def lookup(key: str) -> str:
        found = cache.get(key)
        if found is None:
            built.append(key)
            found = remember(cache, key, key.upper(), 2)
        return found

    assert [lookup(k) for k in ("a", "a", "b", "a", "b")] == ["A", "A", "B", "A", "B"]
    assert built == ["a", "b"]  # hits build nothing
    assert lookup("c") == "C"  # full: emptied, then c kept
    assert [lookup(k) for k in ("c", "a")] == ["C", "A"]
    assert built == ["a", "b", "c", "a"]  # a was forgotten and built again, once
