"""The real page in headless Chromium (Debian ``chromium``, driven by Playwright)
with a read and an admin token: it opens its WebSocket with a single-use ticket,
no URL it requests carries a token, and no log record of the whole session does."""

from __future__ import annotations

import pytest
from _chromium import no_playwright
from _logs import all_log_records, keep_uvicorn_lines, records_holding

import meshlite as ml

try:
    from playwright.async_api import Browser
except ImportError:  # pragma: no cover - depends on the environment
    no_playwright()

READ = "browser-read-token-0123456789abcdef"
ADMIN = "browser-admin-token-0123456789abcdef"



async def test_page_session_puts_no_token_in_urls_or_logs(
        browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    keep_uvicorn_lines(monkeypatch)
    mesh = ml.Mesh([ml.Service("users", ["http://127.0.0.1:80"])])
    urls: list[str] = []
    sockets: list[str] = []
    with all_log_records() as records:
        server = await mesh.serve_dashboard(port=0, token=READ, admin_token=ADMIN)
        try:
            page = await browser.new_page()
            page.on("request", lambda r: urls.append(r.url))
            page.on("websocket", lambda ws: sockets.append(ws.url))
            await page.goto(f"{server.url}/#token={READ}")
            await page.wait_for_selector("#conn.live", timeout=10_000)
            await page.reload()  # the token kept in the tab's sessionStorage: a new ticket
            await page.wait_for_selector("#conn.live", timeout=10_000)
            await page.close()
        finally:
            await server.stop()
    assert sockets == [server.url.replace("http://", "ws://") + "/ws"] * 2
    assert f"{server.url}/api/ws-ticket" in urls
    assert [u for u in urls if READ in u] == []
    assert any(r.name == "uvicorn.error" and "WebSocket /ws" in r.getMessage()
               for r in records)
    assert records_holding(records, (READ, ADMIN, "Bearer")) == []
