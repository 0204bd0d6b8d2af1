"""The installed version of a dependency, for the few tests of a behaviour that only its
newer releases have (the suite also runs at the lowest versions pyproject.toml allows:
`make test-lowest`). Such a test is marked ``xfail(older_than(...), strict=True)``, not
skipped: under CI a skip fails, and the old behaviour is proven, not assumed."""

from __future__ import annotations

from importlib import metadata

from packaging.version import Version

__all__ = ["older_than"]


def older_than(distribution: str, version: str) -> bool:
    """Whether the installed ``distribution`` is older than ``version``."""
    return Version(metadata.version(distribution)) < Version(version)
