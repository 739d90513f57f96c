"""/docs and /redoc work with no network: assets from the installed package, the API described well.

The browser test opens the page of a real server in headless Chromium (Debian's package,
installed by .ci/run), lets it reach 127.0.0.1 only, and saves a screenshot in tests/output/.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings
from tests.e2e.conftest import REPO_ROOT, LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OUTPUT = REPO_ROOT / "tests" / "output"
SUBMIT_OPERATION = "#operations-jobs-submit_job"


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_outside(app_client: TestClient, page: str) -> None:
    html = app_client.get(page)
    assert html.status_code == 200

    assert not re.search(r"https?://", html.text), "an absolute URL (a CDN?) in the page"
    assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert assets
    for asset in assets:
        assert asset.startswith("/docs-assets/")
        served = app_client.get(asset)
        assert served.status_code == 200
        assert len(served.content) > 100


def test_every_operation_is_summarised_and_its_errors_documented(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), f"{where} has no summary"
            errors = {code for code in operation["responses"] if code.startswith(("4", "5"))}
            if "{" in path:
                assert "404" in errors, f"{where} does not document its 404"
            for code in errors if path != "/readyz" else ():
                content = operation["responses"][code].get("content", {})
                assert "application/problem+json" in content, f"{where} {code} is not a problem document"


def test_the_job_request_example_is_the_tutorial_job(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    example: dict[str, Any] = schema["examples"][0]
    assert example["experiment"] == "Tutorial-sklearn-mnist"
    assert example["arguments"][1] == {"dataset": "digits", "mode": "mount"}
    logs = spec["paths"]["/v1/jobs/{job_id}/logs"]["get"]
    assert "text/event-stream" in logs["responses"]["200"]["content"]
    assert {"follow", "Last-Event-ID"} <= {p["name"] for p in logs["parameters"]}


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_docs_page_renders_offline_in_chromium(live_server: LiveServer) -> None:
    from playwright.sync_api import Route, sync_playwright

    outside: list[tuple[str, str]] = []

    def only_this_server(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append((route.request.resource_type, route.request.url))
            route.abort()

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.route("**/*", only_this_server)
            page.goto(f"{live_server.url}/docs", wait_until="networkidle")
            page.wait_for_selector(".opblock-summary", timeout=30_000)
            operations = page.locator(".opblock").count()
            page.click(f"{SUBMIT_OPERATION} .opblock-summary")
            body = page.locator(f"{SUBMIT_OPERATION} .opblock-body")
            body.locator("text=Tutorial-sklearn-mnist").first.wait_for(timeout=15_000)
            example = body.inner_text()
            page.screenshot(path=str(OUTPUT / "docs-page.png"))
            from_docs = list(outside)

            page.goto(f"{live_server.url}/redoc", wait_until="networkidle")
            page.locator("h1", has_text="runyard").first.wait_for(timeout=30_000)
            redoc_operations = page.locator("text=Submit a training job").count()
        finally:
            browser.close()

    assert from_docs == []
    # ReDoc's bundle links its "API docs by Redocly" logo from its CDN; offline the image just
    # does not show. Nothing else (scripts, styles, fonts, the spec) may come from outside.
    assert [kind for kind, _ in outside if kind != "image"] == []
    assert operations >= 15
    assert '"dataset": "digits"' in example
    assert '"--regularization"' in example
    assert (OUTPUT / "docs-page.png").stat().st_size > 10_000
    assert redoc_operations >= 1
