"""No secret (API key, Azure client secret) appears in logs, errors or responses."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.e2e.conftest import LiveServer

API_KEY = "rk-live-6a1f0c93e2b84d57"
CLIENT_SECRET = "azsecret-Q9v~TqZ1x8pLm3Wn"


def test_secrets_never_leave_the_process(server_factory: Callable[..., LiveServer]) -> None:
    server = server_factory(
        RUNYARD_API_KEYS=API_KEY,
        RUNYARD_LOG_LEVEL="DEBUG",
        # A workspace that cannot be reached here: its auth failure is logged and reported.
        RUNYARD_AZUREML_SUBSCRIPTION_ID="00000000-0000-0000-0000-000000000000",
        RUNYARD_AZUREML_RESOURCE_GROUP="rg",
        RUNYARD_AZUREML_WORKSPACE_NAME="ws",
        AZURE_TENANT_ID="11111111-1111-1111-1111-111111111111",
        AZURE_CLIENT_ID="22222222-2222-2222-2222-222222222222",
        AZURE_CLIENT_SECRET=CLIENT_SECRET,
    )
    good = {"Authorization": f"Bearer {API_KEY}"}
    bad = {"Authorization": f"Bearer {API_KEY}x"}
    bodies: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path in ("/v1/jobs", "/v1/compute", "/readyz", "/metrics", "/openapi.json", "/v1/datasets"):
            for headers in (good, bad, {}):
                bodies.append(http.get(path, headers=headers).text)
        job = {"experiment": "secrets", "source": "testscripts", "script": "sleeper.py",
               "compute_target": "cpu-cluster"}
        bodies.append(http.post("/v1/jobs", json=job, headers=good).text)
        bodies.append(http.post("/v1/jobs", json={"experiment": API_KEY}, headers=bad).text)
        bodies.append(http.post("/v1/jobs", content=b"{" + API_KEY.encode(), headers=good).text)
        time.sleep(2)  # let the background loops log what they log about the unreachable workspace
        bodies.append(http.get("/readyz").text)
    log = server.log_text()
    assert log  # the service did log; the secrets just aren't in it
    for secret in (API_KEY, CLIENT_SECRET):
        assert secret not in log
        for body in bodies:
            assert secret not in body
