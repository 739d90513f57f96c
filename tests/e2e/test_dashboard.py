"""The dashboard at /ui in a real Chromium against a real server: live jobs table, live log, charts,
canceling and registering from the page, a sweep's best child and charts, signing in with a key. Any console error,
failed request or error response fails the test. Screenshots go to tests/output/ui/."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from service.jobs.schemas import TUTORIAL_JOB
from tests.e2e.conftest import LiveServer
from tests.e2e.dashboard_support import CHROMIUM, PHONE, Problems, browser_context, screenshot, wait_api

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed (.ci/run installs it)")
STATUS = "[data-label=Status] .status"


def sleeper(*args: str) -> dict[str, object]:
    return {"experiment": "ui-tests", "source": "testscripts", "script": "sleeper.py", "arguments": list(args)}


def test_tutorial_job_live_in_the_table_and_its_page_then_registered(
    server_factory: Callable[..., LiveServer],
) -> None:
    server = server_factory(RUNYARD_LOCAL_MAX_CONCURRENT="1")  # one slot: the tutorial waits, queued
    http = httpx.Client(base_url=server.url, timeout=10)
    blocker = http.post("/v1/jobs", json=sleeper("--steps", "200", "--step-seconds", "0.3")).json()
    tutorial = http.post("/v1/jobs", json=TUTORIAL_JOB).json()
    problems = Problems()

    with browser_context(server, problems) as context:
        jobs = context.new_page()
        jobs.goto("/ui")
        row = jobs.locator(f"#job-{tutorial['id']}")
        assert row.locator(STATUS).inner_text().endswith("queued")
        jobs.evaluate("window.__notReloaded = true")

        # A second tab follows the blocker's log live, then cancels it, which lets the tutorial run.
        job = context.new_page()
        job.goto("/ui")
        job.click(f"#job-{blocker['id']} a >> nth=0")
        job.wait_for_url(f"**/ui/jobs/{blocker['id']}")
        log = job.locator("#log")
        log.get_by_text("step 1", exact=False).first.wait_for(timeout=30_000)
        seen = len(log.inner_text().splitlines())
        # More lines arrive while the page stays open (the run prints one every 0.3 s).
        deadline = time.monotonic() + 30
        while len(log.inner_text().splitlines()) <= seen + 3:
            assert time.monotonic() < deadline, "no new log lines arrived"
            time.sleep(0.2)
        assert job.locator("#log-state").inner_text() == "live"
        job.locator("figure[data-metric=loss] svg polyline").wait_for(timeout=10_000)
        job.click("#cancel-job")
        job.locator("#cancel-dialog").get_by_role("button", name="Keep it running").click()
        assert job.locator("#live [data-status=running]").count() == 1
        job.click("#cancel-job")
        job.locator("#cancel-dialog").get_by_role("button", name="Cancel job").click()
        job.locator("#live .status.s-canceled").wait_for(timeout=30_000)
        job.locator("#log-state", has_text="ended: canceled").wait_for(timeout=15_000)
        assert job.locator("#cancel-job").is_disabled()
        assert "cancel requested" in job.locator(".timeline").inner_text()

        row.locator(".status.s-completed").wait_for(timeout=90_000)
        assert jobs.evaluate("window.__notReloaded") is True
        assert row.locator("[data-label=Metric]").inner_text().startswith("accuracy 0.9")
        screenshot(jobs, "jobs")

        jobs.click(f"#job-{tutorial['id']} a >> nth=0")
        jobs.locator("#log-state", has_text="ended: completed").wait_for(timeout=15_000)
        assert "Accuracy is" in jobs.locator("#log").inner_text()
        accuracy = jobs.locator("figure[data-metric=accuracy] svg")
        assert accuracy.get_attribute("aria-label") == "accuracy by step"
        assert accuracy.locator("circle").count() == 1
        assert jobs.locator("#cancel-job").is_disabled()
        jobs.click("#register-model")
        dialog = jobs.locator("#register-dialog")
        assert dialog.locator("#model-path").input_value() == "outputs/sklearn_mnist_model.pkl"
        dialog.locator("#model-name").fill("sklearn_mnist")
        dialog.get_by_role("button", name="Register").click()
        jobs.locator("#toast", has_text="Registered sklearn_mnist version 1").wait_for()
        jobs.locator("#live .models", has_text="sklearn_mnist version 1").wait_for()
        screenshot(jobs, "job")

        jobs.get_by_role("link", name="Models").click()
        version = jobs.locator("#model-sklearn_mnist-v1")
        assert tutorial["id"] in version.inner_text()
        assert "accuracy 0.9" in version.inner_text()
        screenshot(jobs, "models")
        jobs.get_by_role("link", name="Compute").click()
        assert "0 of 1" in jobs.locator("#target-local").inner_text()
        screenshot(jobs, "compute")

        jobs.set_viewport_size(PHONE)
        jobs.goto("/ui")
        assert jobs.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        screenshot(jobs, "jobs-390px")

    assert problems.found == []
    registered = http.get("/v1/models/sklearn_mnist/versions/1").json()
    assert registered["job_id"] == tutorial["id"]


def test_a_six_child_sweep_marks_its_best_child_and_draws_its_charts(live_server: LiveServer) -> None:
    body = {
        "job": {"experiment": "ui-sweep", "source": "testscripts", "script": "scorer.py",
                "arguments": ["--steps", "4", "--step-seconds", "0.2"]},
        "search_space": {"--quality": {"type": "loguniform", "low": 0.01, "high": 1}},
        "sampling": "random", "seed": 3, "primary_metric": "score", "goal": "maximize",
        "max_total_runs": 6, "max_concurrent_runs": 2,
    }
    sweep = httpx.post(f"{live_server.url}/v1/sweeps", json=body, timeout=10).json()
    problems = Problems()
    with browser_context(live_server, problems) as context:
        page = context.new_page()
        page.goto(f"/ui/sweeps/{sweep['id']}")
        page.evaluate("window.__notReloaded = true")
        page.locator("#live [data-status=completed]").wait_for(timeout=90_000)
        done = wait_api(live_server, f"/v1/sweeps/{sweep['id']}", lambda s: s["status"] == "completed")

        assert page.evaluate("window.__notReloaded") is True
        assert page.locator("#sweep-progress").get_attribute("value") == "6"
        best = page.locator("tr.best")
        assert best.count() == 1
        assert done["best_job_id"] in best.inner_text()
        assert "★ best" in best.inner_text()
        # Sorted by the metric, best first (the goal is to maximize).
        assert page.locator("table.children tbody tr").first.get_attribute("class") == "best"
        scatter = page.locator("figure[data-param='--quality'] svg")
        assert "log scale" in (scatter.get_attribute("aria-label") or "")
        assert scatter.locator("circle").count() == 6
        assert scatter.locator("circle.best").count() == 1
        assert page.locator(".parallel polyline").count() == 6
        screenshot(page, "sweep")

        page.get_by_role("link", name="#").click()
        page.wait_for_url("**sort=index**")
        indexes = page.locator("table.children tbody tr [data-label='#']").all_inner_texts()
        assert [int(i.split()[0]) for i in indexes] == sorted(int(i.split()[0]) for i in indexes)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Sweeps").click()
        page.locator(f"a[href='/ui/sweeps/{sweep['id']}']").wait_for()
    assert problems.found == []


def test_with_api_keys_the_page_asks_for_a_key_and_guards_changes(
    server_factory: Callable[..., LiveServer],
) -> None:
    key = "ui-test-key-7f3a9c"
    server = server_factory(RUNYARD_API_KEYS=key)
    job = httpx.post(f"{server.url}/v1/jobs", json=sleeper("--seconds", "60"), headers=server.headers(),
                     timeout=10).json()
    # The wrong key's form answer (401) and the CSRF-less POST (403) are expected here.
    problems = Problems(expected=lambda url, status: (url.endswith("/ui/login") and status == 401)
                        or (url.endswith("/cancel") and status == 403))
    with browser_context(server, problems) as context:
        page = context.new_page()
        page.goto(f"/ui/jobs/{job['id']}")
        assert "/ui/login?next=" in page.url
        page.fill("#key", "not-the-key")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("alert").get_by_text("That key is not valid.").wait_for()
        # The answer page's deferred ui.js may still be loading: signing in now would abort it
        # (a request the browser dropped, seen once in CI), which the check below counts.
        page.wait_for_load_state("load")
        assert context.cookies() == []
        page.fill("#key", key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**/ui/jobs/{job['id']}")
        screenshot(page, "login-then-job")
        [cookie] = context.cookies()
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert key not in page.content()
        assert key not in page.url
        assert key not in cookie["value"]

        no_csrf = page.evaluate(f"fetch('/v1/jobs/{job['id']}/cancel', {{method: 'POST'}}).then(r => r.status)")
        assert no_csrf == 403
        page.locator("#log", has_text="sleeper starting").wait_for(timeout=30_000)
        page.click("#cancel-job")
        page.locator("#cancel-dialog").get_by_role("button", name="Cancel job").click()
        page.locator("#live .status.s-canceled").wait_for(timeout=30_000)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/ui/login")
        page.goto("/ui/models")
        assert "/ui/login?next=%2Fui%2Fmodels" in page.url
    console = problems.only_expected_console("status of 401", "status of 403")
    assert console == []
    assert key not in server.log_text()
    assert httpx.get(f"{server.url}/v1/jobs", timeout=10).status_code == 401
    statuses = [json.loads(line).get("status") for line in server.log_text().splitlines()
                if line.startswith("{") and '"runyard.access"' in line and "/cancel" in line]
    assert 403 in statuses
    assert 202 in statuses
