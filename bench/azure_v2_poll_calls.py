"""SDK calls per poll cycle of the v2 backend on the stub: n running jobs, default settings, 30 cycles 2 s apart.

Run: `PYTHONPATH=. .venv/bin/python -m bench.azure_v2_poll_calls` (needs the azure-v2 extra).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from statistics import mean

from service.backends.azureml_v2 import AzureMLV2Backend
from service.backends.base import RunRef
from service.core.settings import Settings
from tests.fakes.azureml import WORKSPACE_SETTINGS, FakeClock, RunScript
from tests.fakes.azureml_v2 import FakeAzureV2


def running() -> RunScript:
    return RunScript(statuses=[(0, "Running")], metrics=[(0, "loss", 1.0)], log=[(0, "x\n")])


def main() -> None:
    for n in (1, 100, 1000):
        tmp = Path(tempfile.mkdtemp())
        clock = FakeClock()
        fake = FakeAzureV2(clock)
        settings = Settings(data_dir=tmp, azureml_sdk="v2", **WORKSPACE_SETTINGS)
        backend = AzureMLV2Backend(settings, sdk=fake.sdk(), clock=clock)
        refs = [RunRef(job_id=f"J{i}", run_id=fake.add_job(f"job-{i}", script=running()).name, experiment="tests",
                       compute_target="cpu-cluster", run_dir=tmp / f"J{i}") for i in range(n)]
        counts = []
        for _ in range(31):
            fake.reset_calls()
            updates = {u.run_id: u for u in backend.poll(refs)}
            refs = [replace(r, metrics_cursor=updates[r.run_id].metrics_cursor) if r.run_id in updates else r
                    for r in refs]
            counts.append(sum(fake.calls.values()))
            clock.advance(2)
        print(f"{n} jobs: first {counts[0]}, mean after {mean(counts[1:]):.1f}, max after {max(counts[1:])}",
              flush=True)


if __name__ == "__main__":
    main()
