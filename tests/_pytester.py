"""Inner pytest sessions (``pytester``) that see meshlite's plugin as an installed
project's suite does: the ini they run with, and how they are run."""

from __future__ import annotations

import pytest

__all__ = ["INI", "run_inner"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
timeout = 30
"""


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the inner session in this process, without the outer run's plugins that
    would change it (the cache, hypothesis, xdist, anyio)."""
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                                        "-p", "no:xdist", "-p", "no:anyio", *args)
