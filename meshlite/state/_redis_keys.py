"""Keyspace operations of a RedisStore that must work on one Redis and on a Cluster
alike: deleting keys that may sit in different slots, and scanning every node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["scan_keys", "unlink"]

SCAN_BATCH = 500


def unlink(store: RedisStore, keys: list[str]) -> int:
    """``UNLINK`` ``keys``: one command on one Redis, one per key on a Cluster (the
    keys of a command must share a slot). Returns how many existed."""
    if not keys:
        return 0
    if store._target.kind != "cluster":
        return int(store.command("UNLINK", *keys))
    return sum(int(store.command("UNLINK", key)) for key in keys)


def scan_keys(store: RedisStore, pattern: str) -> Iterator[list[str]]:
    """Batches of the keys matching ``pattern`` (``SCAN``; on a Cluster, on every
    primary). Not for the hot path: O(keys in Redis)."""
    if store._target.kind == "cluster":
        batch: list[str] = []
        for key in store._clients.sync().scan_iter(match=pattern, count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    cursor = 0
    while True:
        cursor, keys = store.command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_BATCH)
        if keys:
            yield list(keys)
        if int(cursor) == 0:
            return
