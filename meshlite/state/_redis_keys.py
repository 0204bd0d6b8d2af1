"""Keyspace operations of a RedisStore that must work on one Redis and on a Cluster
alike: naming the keys of one multi-key script so that they share a slot, deleting
keys that may sit in different slots, and scanning every node."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._validate import fail

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["check_prefix", "empty_tag", "hash_tag", "quota_key", "scan_keys", "unlink"]

SCAN_BATCH = 500

_QUOTA_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def quota_key(prefix: str, name: str) -> str:
    """The key of rate-limit quota ``name``: ``<prefix>:rl:<name>``, to which a
    per-call key is appended as ``:<key>``.

    The name's ``%``, ``:``, ``{`` and ``}`` are percent-escaped (``inbound:/a/{id}``
    is ``inbound%3A/a/%7Bid%7D``; most names hold none and read as written). With no
    raw ``:`` in it, the name ends at the first ``:`` after ``rl:`` and the rest is the
    per-call key, so no two pairs (name, key) share a key: unescaped, the quota
    ``api:gold`` and the key ``gold`` of the quota ``api`` were one budget. With no
    brace in it, a name opens no Cluster hash tag: a decision is one key, and the keys
    of a quota's tenants spread over every primary instead of all landing in the
    slot of a ``{id}`` in a route's pattern.
    """
    return f"{prefix}:rl:{name.translate(_QUOTA_ESCAPES)}"


def hash_tag(name: str) -> str:
    """``name`` as a Cluster ``{hash tag}``: ``"{<name>}"``, which keeps every key
    that starts with it in one slot.

    Redis hashes only what lies between the first ``{`` and the first ``}`` after
    it, and hashes the whole key when that is empty: a name holding a ``}`` would
    end the tag early, or leave it empty (``"}x"``), and then a breaker's hash and
    window would land in different slots (``CROSSSLOT``). Such a name is tagged by
    its digest instead, followed by the name itself (``"{#<sha1>}<name>"``), so keys
    stay readable. The two forms never collide: a tagged digest is followed by a
    name holding a ``}``, while a plain tag holds none and ends at its only ``}``.
    """
    if name and "}" not in name:
        return f"{{{name}}}"
    return "{#" + hashlib.sha1(name.encode()).hexdigest() + "}" + name


def check_prefix(prefix: object) -> None:
    """Refuse a key prefix that is not a non-empty string, or that opens an empty
    Cluster hash tag (:func:`empty_tag`)."""
    if not isinstance(prefix, str) or not prefix:
        fail("RedisStore", "prefix", prefix, "a non-empty string")
    if empty_tag(prefix):
        fail("RedisStore", "prefix", prefix,
             "a string whose first '{' is not followed by '}' (an empty Cluster hash "
             "tag would put the two keys of a breaker in different slots)")


def empty_tag(prefix: str) -> bool:
    """Whether ``prefix`` opens an empty Cluster hash tag (``"{}"``).

    A ``{`` in a prefix opens the hash tag there (every key of the store then
    shares one slot, which works); an empty one makes Redis hash whole keys, and a
    breaker's two keys would fall in different slots.
    """
    start = prefix.find("{")
    return start >= 0 and prefix[start + 1:start + 2] == "}"


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
    primary, each against its own health: a primary that does not answer raises
    :class:`StoreUnavailableError` after the others' batches). Not for the hot
    path: O(keys in Redis)."""
    if store._target.kind == "cluster":
        yield from store._scan_cluster(pattern, SCAN_BATCH)
        return
    cursor = 0
    while True:
        cursor, keys = store.command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_BATCH)
        if keys:
            yield list(keys)
        if int(cursor) == 0:
            return
