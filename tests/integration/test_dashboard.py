"""The dashboard's pages and its sign-in, in process: HTML answers, sessions, CSRF, no key leaks."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.session import COOKIE, Sessions
from service.app import create_app
from service.core.settings import Settings
from tests.conftest import script_job, wait_for
from tests.integration.sweep_support import scorer_sweep, wait_for_sweep

KEY = "dash-9c1e-secret"
PAGES = ("/ui", "/ui/jobs", "/ui/sweeps", "/ui/models", "/ui/compute")


@pytest.fixture
def secured(settings: Settings) -> Iterator[TestClient]:
    settings.api_keys = SecretStr(KEY)
    with TestClient(create_app(settings)) as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient) -> str:
    """Sign in through the form; returns the CSRF token the jobs page carries."""
    response = client.post("/ui/login", data={"key": KEY, "next": "/ui"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/ui").text)


def test_every_page_renders_with_assets_from_this_server_only(client: TestClient) -> None:
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert not re.search(r"https?://", page.text), f"an absolute URL in {path}"
        for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page.text):
            served = client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 1000, asset


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/ui/jobs/nope", 404, "job &#39;nope&#39; does not exist"),
    ("/ui/sweeps/nope", 404, "sweep &#39;nope&#39; does not exist"),
    ("/ui?tag=no-colon", 422, "tag filter must look like key:value"),
    ("/ui?status=sleeping", 422, "status must be one of"),
    ("/ui?cursor=%%%", 422, "cursor is not valid"),
])
def test_bad_input_is_an_html_page_saying_what_is_wrong(client: TestClient, path: str, status: int, says: str) -> None:
    page = client.get(path)
    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html")
    assert says in page.text


def test_a_rows_fragment_changes_only_when_the_job_does(client: TestClient) -> None:
    job = client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", "0.2")).json()
    wait_for(client, job["id"])
    rows = client.get("/ui?fragment=rows")
    assert rows.status_code == 200
    assert "<html" not in rows.text
    first = re.search(rf'id="job-{job["id"]}" data-v="(\w+)" data-status="completed"', rows.text)
    assert first
    assert first.group(1) in client.get("/ui?fragment=rows").text  # unchanged job, unchanged version
    client.post("/v1/jobs", json=script_job("sleeper.py", "--seconds", "30"))
    time.sleep(0.2)
    assert client.get("/ui?fragment=rows").text.count("<tr ") == 2


def test_without_a_session_pages_send_to_the_key_form_and_the_api_refuses(secured: TestClient) -> None:
    page = secured.get("/ui/models?x=1", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/login?next=%2Fui%2Fmodels%3Fx%3D1"
    assert secured.get("/ui?fragment=rows").status_code == 401  # the page's script reloads into the form
    form = secured.get(page.headers["location"])
    assert 'type="password"' in form.text
    assert secured.get("/v1/jobs").status_code == 401


def test_a_wrong_key_is_refused_and_sets_no_cookie(secured: TestClient) -> None:
    refused = secured.post("/ui/login", data={"key": "nope", "next": "/ui"}, follow_redirects=False)
    assert refused.status_code == 401
    assert "That key is not valid." in refused.text
    assert "set-cookie" not in refused.headers
    assert "nope" not in refused.text


def test_a_session_is_an_httponly_strict_cookie_that_never_holds_the_key(secured: TestClient) -> None:
    signed_in = secured.post("/ui/login", data={"key": KEY, "next": "/ui/compute"}, follow_redirects=False)
    assert signed_in.headers["location"] == "/ui/compute"
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert KEY not in cookie
    for path in PAGES:
        page = secured.get(path)
        assert page.status_code == 200
        assert KEY not in page.text
    assert secured.get("/v1/jobs").status_code == 200  # the API accepts the session for reads


def test_state_changes_with_the_session_need_the_pages_csrf_token(secured: TestClient) -> None:
    token = sign_in(secured)
    body = script_job("sleeper.py")
    missing = secured.post("/v1/jobs", json=body)
    assert missing.status_code == 403
    assert "X-CSRF-Token" in missing.json()["detail"]
    assert secured.post("/v1/jobs", json=body, headers={"X-CSRF-Token": token[:-1] + "0"}).status_code == 403
    created = secured.post("/v1/jobs", json=body, headers={"X-CSRF-Token": token})
    assert created.status_code == 201
    # A Bearer key needs no CSRF token: it is never sent by a browser on its own.
    secured.cookies.clear()
    other = secured.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert other.status_code == 201


def test_sign_out_needs_the_token_and_ends_the_session(secured: TestClient) -> None:
    token = sign_in(secured)
    assert secured.post("/ui/logout", data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    out = secured.post("/ui/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    assert f'{COOKIE}=""' in out.headers["set-cookie"]
    assert secured.get("/ui", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/v1/jobs", "/\\evil"])
def test_sign_in_only_returns_to_our_own_pages(secured: TestClient, target: str) -> None:
    signed_in = secured.post("/ui/login", data={"key": KEY, "next": target}, follow_redirects=False)
    assert signed_in.headers["location"] == "/ui"


def test_forged_expired_and_foreign_session_cookies_are_refused() -> None:
    sessions = Sessions(b"s" * 32, lifetime=60)
    token = sessions.issue("kid", now=1000)
    assert sessions.key_id(token, now=1030) == "kid"
    assert sessions.key_id(token, now=1061) is None
    assert sessions.key_id(token.replace(".kid.", ".other."), now=1030) is None
    assert Sessions(b"t" * 32).key_id(token, now=1030) is None
    assert sessions.key_id("garbage", now=1030) is None


def test_removing_a_key_ends_the_sessions_it_opened(settings: Settings) -> None:
    settings.api_keys = SecretStr(f"{KEY},other-key")
    app = create_app(settings)
    with TestClient(app) as client:
        sign_in(client)
        assert client.get("/v1/jobs").status_code == 200
        app.state.api_keys = type(app.state.api_keys).from_settings(
            settings.model_copy(update={"api_keys": SecretStr("other-key")}))
        assert client.get("/v1/jobs").status_code == 401


def test_a_sweep_page_shows_children_stopped_early_and_marks_the_best(client: TestClient) -> None:
    args = ["--steps", 8, "--step-seconds", 0.2, "--slow-below", 0.5, "--slow-step-seconds", 2]
    policy = {"policy": "median", "evaluation_interval": 1, "delay_evaluation": 2}
    body = scorer_sweep([0.2, 0.7, 0.8, 0.9], extra_args=args, early_termination=policy)
    sweep = wait_for_sweep(client, client.post("/v1/sweeps", json=body).json()["id"], timeout=90)
    assert sweep["progress"]["early_terminated"] == 1

    page = client.get(f"/ui/sweeps/{sweep['id']}").text
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr id="child-(\d)"[\s\S]*?</tr>', page)}
    assert "stopped early" in rows["0"]
    assert 'class=" stopped"' in rows["0"]
    assert "★ best" in rows["3"]
    assert sum("★ best" in row for row in rows.values()) == 1
    assert "1 stopped early" in page
    assert page.count('<circle class="stopped"') == 1
    assert page.count('<circle class="best"') == 1
    # Sorted by score, best first; ascending on request; by index as asked.
    assert list(rows) == ["3", "2", "1", "0"]
    ascending = client.get(f"/ui/sweeps/{sweep['id']}?sort=metric&order=asc").text
    assert re.findall(r'<tr id="child-(\d)"', ascending) == ["0", "1", "2", "3"]
    assert 'aria-sort="ascending"' in ascending
    assert sweep["id"] in client.get("/ui/sweeps").text
