"""A cached function called by a second process in test_redis_cache_keys.py (a module
both processes import, so the function has one name in both)."""

from __future__ import annotations

import json
import sys
from typing import Any

import meshlite as ml
from meshlite.state import RedisStore

calls = 0


def profile(email: str, *, token: str) -> dict[str, Any]:
    """A lookup whose result holds none of its arguments."""
    global calls
    calls += 1
    return {"plan": "gold"}


def main(url: str, prefix: str, email: str, token: str) -> None:
    """Call ``profile`` through a Cache on the store; print the value and the calls made."""
    store = RedisStore(url, prefix=prefix, timeout=5.0)
    value = ml.Cache(ttl=60.0, store=store)(profile)(email, token=token)
    print(json.dumps({"value": value, "calls": calls}))
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
