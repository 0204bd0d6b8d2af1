"""The system Chromium (Debian ``chromium``), headless, driven by Playwright: never
Playwright's own browser download. A test module that uses it skips when Playwright
is not installed (``no_playwright()``; fails on CI, which installs it)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from _system import on_ci, require_program

__all__ = ["CHROMIUM_ARGS", "chromium", "no_playwright"]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def no_playwright() -> None:
    """In a test module whose import of Playwright failed: skip the module (on CI,
    which installs Playwright: fail)."""
    if on_ci():
        pytest.fail("playwright is not installed (pip install playwright); CI=true, so "
                    "this is a failure", pytrace=False)
    pytest.skip("playwright is not installed (pip install playwright)", allow_module_level=True)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless ``playwright.async_api.Browser`` of the system Chromium."""
    from playwright.async_api import async_playwright

    path = require_program("chromium", "chromium")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
