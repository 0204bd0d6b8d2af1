"""Tests that need a real system program (prometheus, redis-server, chromium).

``require_program(name, package)`` returns the program's path; when it is missing
the test is skipped with a message naming the Debian package to install, except
on CI (``CI=true``), where a missing program fails the test: CI installs them all
(.ci/run), so a skip there would hide a broken setup.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ["free_port", "on_ci", "read_page", "require_program", "wait_for"]

_ports = random.Random()  # which free port does not matter: no seed to keep


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (and ``bind(0)``)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
    except (OSError, ValueError):
        return 49152, 65535  # the IANA range, which other systems use
    return low, high


def free_port() -> int:
    """A loopback TCP port that nothing uses now, for a server a test starts on it.

    Taken outside the kernel's ephemeral range where there is room: a port from
    ``bind(0)`` lies inside it, where any process's next outgoing connection may take
    it as its own local port before the server binds it (which then fails with
    EADDRINUSE), and a busy machine makes many connections while a server starts.
    """
    low, high = _ephemeral_range()
    spans = [(lo, hi) for lo, hi in ((10_000, low - 1), (high + 1, 65_535)) if hi - lo > 1000]
    for _ in range(200 if spans else 0):
        port = _ports.randint(*spans[0])  # below the range if there is room, else above
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_ci() -> bool:
    """Whether the environment variable ``CI`` is ``true`` (any case) or ``1``."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require_program(name: str, package: str) -> str:
    """The full path of program ``name``; skip (fail on CI) when it is not installed.

    Args:
        name: The executable, looked up on ``PATH`` (and in /usr/sbin, /sbin).
        package: The Debian package that provides it, named in the message.

    Returns:
        The path of the executable.
    """
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    message = (f"{name} is not installed: install the Debian package {package!r} "
               f"(apt-get install -y {package})")
    if on_ci():
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


def wait_for(check: Callable[[], Any], seconds: float, what: str,
             step: float = 0.1) -> Any:
    """``check()``'s first true value within ``seconds`` (a check that raises an
    HTTP, OS, value or key error is not true yet), else a test failure naming
    ``what`` and the last result."""
    import httpx

    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            last = error
        else:
            if last:
                return last
        time.sleep(step)
    pytest.fail(f"{what}: not true within {seconds} s (last: {last!r})")


def read_page(url: str, ready: str, script: str) -> Any:
    """Open ``url`` in the system Chromium (headless), wait for the CSS selector
    ``ready`` and return what ``script`` (a JavaScript function of the elements
    matching ``ready``) gives. Skips (fails on CI) without chromium or playwright."""
    chromium = require_program("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - depends on the environment
        if on_ci():
            pytest.fail("playwright is not installed; CI=true, so this is a failure")
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector(ready, timeout=30_000)  # a bound for a loaded machine
            return page.eval_on_selector_all(ready, script)
        finally:
            browser.close()
