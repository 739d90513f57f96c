"""Without keys, a server started by hand on every interface still answers loopback callers only."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO_ROOT, free_port, server_env


def outward_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing), if not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


ADDRESS = outward_address()


@pytest.mark.skipif(ADDRESS is None, reason="this machine has no address besides loopback")
def test_uvicorn_factory_on_all_interfaces_refuses_other_addresses_without_keys(tmp_path: Path) -> None:
    port = free_port()
    env = server_env(tmp_path / "data", port, {})
    command = [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app",
               "--host", "0.0.0.0", "--port", str(port)]  # noqa: S104 - the point of the test
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180  # start-up (imports, migrations) on a busy machine
        while True:
            try:
                inside = httpx.get(f"http://127.0.0.1:{port}/v1/jobs", timeout=30)
                break
            except httpx.HTTPError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        outside = httpx.get(f"http://{ADDRESS}:{port}/v1/jobs", timeout=30)
    finally:
        server.terminate()
        server.wait(20)

    assert inside.status_code == 200
    assert outside.status_code == 403
    assert "RUNYARD_API_KEYS" in outside.json()["detail"]
