"""The real azureml-core's client-side CPU per listed run, offline (no Azure, no stub).

`python -m bench.azure_sdk_cost [--runs 500] [--repeats 5]`: one `runs:query` reply page of N
runs, shaped like the service's (every `RunDto` field a ScriptRun on AmlCompute carries), is read
the way the SDK reads it (`json.loads`, then msrest's `Deserializer` into `PaginatedRunDto`), then
turned into Run objects the way `Experiment.get_runs()` does (`Run._rehydrate_runs`, a ScriptRun
each), and, for comparison, the way runyard's poller uses it since issue 17 (the DTOs only; a Run
is built with `Run._dto_to_run` only for the runs read in detail).

Offline: the workspace is built with `_disable_service_check`, the service endpoints are given
(`ServiceContext._fetch_endpoints` answers without discovery) and the service principal hands out
a JWT-shaped token, because `Run.__init__` asks for an ARM token (core/_portal.py) — the real
class caches it, so a live service pays that once, not per run. HTTP time is not included.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

from bench.common import machine_info, print_table, say, write_results

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
ENDPOINT = "https://westeurope.api.azureml.ms"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def run_dict(i: int) -> dict[str, Any]:
    """One listed run as the run history service returns it (RunDto's wire names)."""
    return {
        "runNumber": i, "rootRunId": f"exp_{i}", "experimentId": str(uuid.uuid4()),
        "createdUtc": "2026-12-02T10:00:00.123456+00:00", "userId": str(uuid.uuid4()), "runId": f"exp_{i}",
        "status": "Running", "startTimeUtc": "2026-12-02T10:01:00.123456+00:00", "heartbeatEnabled": False,
        "name": None, "displayName": f"run {i}", "dataContainerId": f"dcid.exp_{i}", "hidden": False,
        "runType": "azureml.scriptrun",
        "runTypeV2": {"orchestrator": None, "traits": ["azureml.scriptrun"], "attribution": None,
                      "computeType": "AmlCompute"},
        "runUuid": str(uuid.uuid4()), "rootRunUuid": str(uuid.uuid4()),
        "properties": {"_azureml.ComputeTargetType": "amlcompute", "ContentSnapshotId": str(uuid.uuid4()),
                       "ProcessInfoFile": "azureml-logs/process_info.json",
                       "ProcessStatusFile": "azureml-logs/process_status.json"},
        "scriptName": "train.py", "target": "cpu-cluster",
        "tags": {"runyard_job_id": f"J{i:025d}",
                 "_aml_system_ComputeTargetStatus": '{"AllocationState":"steady","PreparingNodeCount":0,'
                                                    '"RunningNodeCount":1,"CurrentNodeCount":1}'},
        "runDefinition": None,
        "createdBy": {"userObjectId": str(uuid.uuid4()), "userPuId": "1003", "userIdp": None, "userAltSecId": None,
                      "userIss": "https://sts.windows.net/x/", "userTenantId": str(uuid.uuid4()), "userName": "sp",
                      "upn": None},
        "cancelUri": None, "completeUri": None, "diagnosticsUri": None, "error": None, "warnings": None,
    }


def offline_experiment() -> Any:
    """A real Workspace and Experiment that never reach the network."""
    from azureml._restclient import service_context
    from azureml.core import Experiment, Workspace
    from azureml.core.authentication import ServicePrincipalAuthentication

    token = ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64({"exp": 4102444800, "oid": "x", "tid": "t"}), "s"])

    class OfflineAuth(ServicePrincipalAuthentication):  # type: ignore[misc]
        def _get_arm_token(self) -> str:
            return token

        def _get_azureml_client_token(self) -> str:
            return token

        def _get_graph_token(self) -> str:
            return token

        def _get_all_subscription_ids(self) -> tuple[list[str], list[str]]:
            return [SUBSCRIPTION], ["t"]

    keys = service_context._ServiceKeys.get_discovery_keys()
    service_context.ServiceContext._fetch_endpoints = lambda _self: dict.fromkeys(keys, ENDPOINT)
    ws = Workspace(SUBSCRIPTION, "rg", "ws", auth=OfflineAuth("t", "sp", "pw"), _disable_service_check=True,
                   _workspace_id=str(uuid.uuid4()), _location="westeurope")
    return Experiment(ws, "exp", _create_in_cloud=False, _id=str(uuid.uuid4()))


def measure(runs: int, repeats: int) -> dict[str, Any]:
    import azureml._restclient.models as models
    from azureml.core import Run
    from msrest import Deserializer

    experiment = offline_experiment()
    deserialize = Deserializer({k: v for k, v in vars(models).items() if isinstance(v, type)})
    body = json.dumps({"value": [run_dict(i) for i in range(runs)], "continuationToken": "next"})
    read, rehydrate, one_handle = [], [], []
    for _ in range(repeats):
        cpu = time.process_time()
        page = deserialize("PaginatedRunDto", json.loads(body))
        read.append((time.process_time() - cpu) / runs)
        cpu = time.process_time()
        handles = list(Run._rehydrate_runs(experiment, page.value, clean_up=False))
        rehydrate.append((time.process_time() - cpu) / runs)
        cpu = time.process_time()
        for dto in page.value[:10]:
            Run._dto_to_run(experiment, dto, clean_up=False)
        one_handle.append((time.process_time() - cpu) / 10)
        if handles[0].status != "Running" or type(handles[0]).__name__ != "ScriptRun":
            raise RuntimeError(f"the SDK read the page differently: {handles[0]!r}")
    return {"runs_per_page": runs, "repeats": repeats,
            "read_reply_ms_per_run": statistics.median(read) * 1000,
            "run_object_ms_per_run": statistics.median(rehydrate) * 1000,
            "dto_to_run_ms_per_run": statistics.median(one_handle) * 1000,
            "read_reply_ms_per_run_min": min(read) * 1000, "run_object_ms_per_run_min": min(rehydrate) * 1000}


def measure_offline(runs: int = 500, repeats: int = 5) -> dict[str, Any]:
    """`measure` with the SDK's files in a scratch HOME (it writes ~/.azureml)."""
    home_before = os.environ.get("HOME")
    with tempfile.TemporaryDirectory() as home:
        os.environ["HOME"] = home
        os.environ.setdefault("AZUREML_CURRENT_CLOUD", "AzureCloud")
        try:
            return measure(runs, repeats)
        finally:
            if home_before is not None:
                os.environ["HOME"] = home_before


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.azure_sdk_cost", description=__doc__)
    parser.add_argument("--runs", type=int, default=500, help="runs per reply page (the SDK's page: 500)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args(argv)
    say(f"azure_sdk_cost: {args.runs} listed runs per page, {3 if args.quick else args.repeats} repeats")
    result = measure_offline(args.runs, 3 if args.quick else args.repeats)
    per_run_get_runs = result["read_reply_ms_per_run"] + result["run_object_ms_per_run"]
    per_run_runyard = result["read_reply_ms_per_run"]
    result["at_10000_runs_s"] = {"experiment_get_runs": per_run_get_runs * 10, "dto_listing": per_run_runyard * 10}
    print_table("azureml-core client CPU per listed run (ms, median over repeats)", ["step", "ms per run",
                "s per poll at 10,000 runs"], [
        ["read the reply (json + msrest RunDto)", f"{result['read_reply_ms_per_run']:.3f}",
         f"{result['read_reply_ms_per_run'] * 10:.2f}"],
        ["a ScriptRun per listed run (Experiment.get_runs)", f"{result['run_object_ms_per_run']:.3f}",
         f"{result['run_object_ms_per_run'] * 10:.2f}"],
        ["Experiment.get_runs in all", f"{per_run_get_runs:.3f}", f"{per_run_get_runs * 10:.2f}"],
        ["runyard since issue 17: the DTOs only (+ a Run per detail read)", f"{per_run_runyard:.3f}",
         f"{per_run_runyard * 10:.2f}"],
    ])
    write_results("azure_sdk_cost", config=vars(args), results=result, targets=[], machine=machine_info())
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
