"""A headless Chromium that fails the test on any console error or failed request, for /ui tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from tests.e2e.conftest import REPO_ROOT, LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = REPO_ROOT / "tests" / "output" / "ui"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class Problems:
    """Console errors, failed requests and error responses a page met (minus those a test expects)."""

    expected: Callable[[str, int], bool] = lambda _url, _status: False
    found: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("console", lambda msg: msg.type == "error" and self.found.append(f"console: {msg.text}"))
        page.on("pageerror", lambda exc: self.found.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _failed(self, request: Any) -> None:
        # Leaving a page aborts its open log stream and any refresh in flight: the browser
        # dropping background requests of a page that is gone, not a request that failed.
        if request.failure == "net::ERR_ABORTED" and ("follow=true" in request.url or "fragment=" in request.url):
            return
        self.found.append(f"request failed: {request.url} {request.failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400 and not self.expected(response.url, response.status):
            self.found.append(f"HTTP {response.status}: {response.url}")

    def only_expected_console(self, *texts: str) -> list[str]:
        return [p for p in self.found if not any(t in p for t in texts)]


@contextmanager
def browser_context(server: LiveServer, problems: Problems) -> Iterator[Any]:
    """A browser context that may reach only this server."""
    from playwright.sync_api import Route, sync_playwright

    def only_this_server(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            problems.found.append(f"outside request: {route.request.url}")
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=WIDE, base_url=server.url)
            context.route("**/*", only_this_server)
            context.on("page", problems.watch)
            yield context
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_api(
    server: LiveServer, path: str, until: Callable[[dict[str, Any]], bool], timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = httpx.get(f"{server.url}{path}", headers=server.headers(), timeout=10).json()
        if until(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never got there: {body}")
        time.sleep(0.2)
