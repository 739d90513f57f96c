"""OpenAPI links: how a response's values feed the next call (a job's id to read, cancel or follow it).

Clients and stateful testers (schemathesis' stateful phase) walk these from a created resource
to the operations on it. Each link names its target by `operationId`, looked up from the
target's path and method, so the table below reads like the API.
"""

from __future__ import annotations

from typing import Any

Target = tuple[str, str]  # (path, method)
# source (path, method, status) -> link name -> (target, parameters)
LINKS: dict[tuple[str, str, str], dict[str, tuple[Target, dict[str, str]]]] = {}


def _from(source: tuple[str, str, str], targets: dict[str, tuple[Target, dict[str, str]]]) -> None:
    LINKS[source] = targets


_JOB = {"job_id": "$response.body#/id"}
_from(("/v1/jobs", "post", "201"), {
    "GetJob": (("/v1/jobs/{job_id}", "get"), _JOB),
    "CancelJob": (("/v1/jobs/{job_id}/cancel", "post"), _JOB),
    "GetMetrics": (("/v1/jobs/{job_id}/metrics", "get"), _JOB),
    "GetLogs": (("/v1/jobs/{job_id}/logs", "get"), _JOB),
    "ListFiles": (("/v1/jobs/{job_id}/files", "get"), _JOB),
    "RegisterModel": (("/v1/jobs/{job_id}/models", "post"), _JOB),
})
_from(("/v1/jobs/{job_id}", "get", "200"), {
    "ListFiles": (("/v1/jobs/{job_id}/files", "get"), _JOB),
    "RegisterModel": (("/v1/jobs/{job_id}/models", "post"), _JOB),
})
_from(("/v1/jobs/{job_id}/files", "get", "200"), {
    "DownloadFile": (("/v1/jobs/{job_id}/files/{path}", "get"),
                     {"job_id": "$request.path.job_id", "path": "$response.body#/items/0/path"}),
})
_VERSION = {"name": "$response.body#/name", "version": "$response.body#/version"}
_from(("/v1/jobs/{job_id}/models", "post", "201"), {
    "GetModelVersion": (("/v1/models/{name}/versions/{version}", "get"), _VERSION),
    "ListModelVersions": (("/v1/models/{name}/versions", "get"), {"name": "$response.body#/name"}),
    "EvaluateModelVersion": (("/v1/models/{name}/versions/{version}/evaluate", "post"), _VERSION),
})
_ENDPOINT = {"name": "$response.body#/name"}
_from(("/v1/endpoints", "post", "201"), {
    "GetEndpoint": (("/v1/endpoints/{name}", "get"), _ENDPOINT),
    "UpdateEndpoint": (("/v1/endpoints/{name}", "patch"), _ENDPOINT),
    "Score": (("/v1/endpoints/{name}/score", "post"), _ENDPOINT),
    "DeleteEndpoint": (("/v1/endpoints/{name}", "delete"), _ENDPOINT),
})
_SWEEP = {"sweep_id": "$response.body#/id"}
_from(("/v1/sweeps", "post", "201"), {
    "GetSweep": (("/v1/sweeps/{sweep_id}", "get"), _SWEEP),
    "CancelSweep": (("/v1/sweeps/{sweep_id}/cancel", "post"), _SWEEP),
    "ListSweepJobs": (("/v1/jobs", "get"), {"sweep_id": "$response.body#/id"}),
})


def add_links(schema: dict[str, Any]) -> None:
    """Add LINKS to the document's responses; a link whose source or target is absent is left out."""
    paths: dict[str, Any] = schema.get("paths", {})
    for (path, method, status), targets in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        links = response.setdefault("links", {})
        for name, ((target_path, target_method), parameters) in targets.items():
            target = paths.get(target_path, {}).get(target_method)
            if target is None or "operationId" not in target:
                continue
            links[name] = {"operationId": target["operationId"], "parameters": dict(parameters)}
        if not links:
            response.pop("links")
