"""``from meshlite import *`` as type checkers read it (tests/test_typing.py; never run)."""

# ruff: noqa: F405 (every name below comes from the star imports: what is checked)
from __future__ import annotations

from typing import assert_type

from meshlite import *  # noqa: F403 (the star import is what is checked)
from meshlite.discovery import *  # noqa: F403

assert_type(Pipeline(Timeout(1.0), Retry(attempts=2)), Pipeline)
assert_type(Mesh([Service("users", "http://127.0.0.1:8001")]), Mesh)
assert_type(StaticProvider(["http://127.0.0.1:8001"]), StaticProvider)
