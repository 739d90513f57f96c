"""The stubbed workspace's web services: `Model.deploy`, `Webservice(ws, name)`, and a real scoring server.

A deployment is `Transitioning` for DEPLOY_SECONDS of the fake clock; then its "container"
starts: the generated score.py is imported from the InferenceConfig's source_directory, the
model's files (the bytes its run produced) are laid out under AZUREML_MODEL_DIR as Azure does,
and `init()` runs. If it raises, the service is `Failed` with the error and the traceback in
its log, as ACI reports a crashed container; otherwise it is `Healthy` and a real HTTP server
on 127.0.0.1 answers POST /score with `run(body)`, behind the service's key. The v2 fake's
online deployments use the same server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEPLOY_SECONDS = 3.0
_ENV_LOCK = threading.Lock()  # AZUREML_MODEL_DIR is process-wide: one init() at a time


def load_score_script(script: Path, model_dir: Path) -> Any:
    """Import the entry script and run its init() with AZUREML_MODEL_DIR set, as the container does."""
    spec = importlib.util.spec_from_file_location(f"fake_score_{secrets.token_hex(4)}", script)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"entry script {script} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    with _ENV_LOCK:
        saved = os.environ.get("AZUREML_MODEL_DIR")
        os.environ["AZUREML_MODEL_DIR"] = str(model_dir)
        try:
            spec.loader.exec_module(module)
            module.init()
        finally:
            if saved is None:
                os.environ.pop("AZUREML_MODEL_DIR", None)
            else:
                os.environ["AZUREML_MODEL_DIR"] = saved
    return module


class ScoringServer:
    """Azure's inference server: POST /score runs `run(body)` of the script `route()` picks (behind `key`)."""

    def __init__(self, route: Callable[[], Any], key: str | None) -> None:
        self.route, self.key = route, key
        self.requests = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="fake scoring server", daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/score"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def _reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._reply(200, b"Healthy", "text/plain")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/score":
                    self._reply(404, b"Not Found", "text/plain")
                    return
                if server.key is not None and self.headers.get("Authorization") != f"Bearer {server.key}":
                    self._reply(401, b"Unauthorized", "text/plain")
                    return
                server.requests += 1
                module = server.route()
                if module is None:
                    self._reply(503, b"no deployment takes traffic", "text/plain")
                    return
                try:
                    result = module.run(raw.decode())
                except Exception as exc:  # the inference server answers 500 with the exception's text
                    self._reply(500, f"Encountered Exception: {exc!r}".encode(), "text/plain")
                    return
                self._reply(200, json.dumps(result).encode())

        return Handler


@dataclass
class ServiceRecord:
    """A web service (or an online deployment) as the stub stores it."""

    name: str
    model_files: dict[str, bytes]  # relative path under AZUREML_MODEL_DIR -> content
    script: Path  # the entry script, copied at deploy time as Azure snapshots it
    created_at: float
    model_subdir: str = "."  # AZUREML_MODEL_DIR under azureml-models/: `<name>/<version>` for one model
    auth_enabled: bool = True
    details: dict[str, Any] = field(default_factory=dict)  # what the deploy was given (configs, models)
    keys: tuple[str, str] = field(default_factory=lambda: (secrets.token_urlsafe(24), secrets.token_urlsafe(24)))
    module: Any = None  # the entry script, init() done
    server: ScoringServer | None = None
    error: dict[str, Any] | None = None
    logs: str = ""
    started: bool = False


class FakeServices:
    """The deployed services of one stubbed workspace, on its clock."""

    def __init__(self, clock: Callable[[], float], *, serve_http: bool = True) -> None:
        self.clock = clock
        self.serve_http = serve_http  # False: online deployments, reached through their endpoint's server
        self.records: dict[str, ServiceRecord] = {}
        self.deleted: list[str] = []
        self._root = Path(tempfile.mkdtemp(prefix="fake-azure-services-"))
        self._lock = threading.RLock()

    def create(self, name: str, *, source_dir: Path, entry_script: str, model_files: dict[str, bytes],
               model_subdir: str, auth_enabled: bool, details: dict[str, Any]) -> ServiceRecord:
        folder = self._root / f"{name}-{secrets.token_hex(3)}"
        shutil.copytree(source_dir, folder / "src")
        record = ServiceRecord(name=name, model_files=model_files, script=folder / "src" / entry_script,
                               created_at=self.clock(), model_subdir=model_subdir, auth_enabled=auth_enabled,
                               details=details)
        with self._lock:
            self.records[name] = record
        return record

    def state(self, record: ServiceRecord) -> str:
        """`Transitioning` until the container has had time to start; then `Healthy` or `Failed`."""
        if self.clock() < record.created_at + DEPLOY_SECONDS:
            return "Transitioning"
        with self._lock:
            if not record.started:
                record.started = True
                self._start(record)
        return "Healthy" if record.module is not None else "Failed"

    def _start(self, record: ServiceRecord) -> None:
        model_dir = record.script.parent.parent / "azureml-models" / record.model_subdir
        for rel, content in record.model_files.items():
            path = model_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        try:
            record.module = load_score_script(record.script, model_dir)
            if self.serve_http:
                module = record.module
                record.server = ScoringServer(lambda: module, record.keys[0] if record.auth_enabled else None)
            record.logs = "Initializing logger\nUsers's init has completed successfully\n"
        except Exception:
            record.logs = "Initializing logger\n" + traceback.format_exc()
            record.error = {
                "code": "AciDeploymentFailed", "statusCode": 400,
                "message": "Aci Deployment failed with exception: Your container application crashed. This may be "
                           "caused by errors in your scoring file's init() function.",
            }

    def delete(self, name: str) -> None:
        with self._lock:
            record = self.records.pop(name, None)
            self.deleted.append(name)
        if record is not None and record.server is not None:
            record.server.stop()

    def shutdown(self) -> None:
        for name in list(self.records):
            self.delete(name)
        shutil.rmtree(self._root, ignore_errors=True)
