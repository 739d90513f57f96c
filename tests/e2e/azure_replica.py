"""`python -m tests.e2e.azure_replica --store PATH --origin T --speed S`: one runyard replica whose
`cpu-cluster` is the stubbed Azure ML workspace shared by every replica (tests/fakes/azureml_shared.py).

Settings come from the `RUNYARD_*` environment, as for `python -m service`; the workspace's identity
is the stub's. Served like `python -m service` (service/server.py), with the stub's backend.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from service.app import create_app
from service.backends.azureml import AzureMLBackend
from service.backends.base import Backend
from service.backends.local import LocalBackend
from service.core.logs import configure_logging
from service.core.settings import Settings
from service.server import limited_protocol
from tests.fakes.azureml import WORKSPACE_SETTINGS
from tests.fakes.azureml_shared import SharedFakeAzure, WallClock


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--origin", type=float, required=True, help="time.time() at which the stub's clock is 0")
    parser.add_argument("--speed", type=float, required=True, help="stub seconds per real second")
    args = parser.parse_args()
    fake = SharedFakeAzure(args.store, WallClock(args.origin, args.speed))
    settings = Settings(**WORKSPACE_SETTINGS)

    def backends(cfg: Settings) -> list[Backend]:
        return [LocalBackend(max_concurrent=cfg.local_max_concurrent, models_dir=cfg.models_dir),
                AzureMLBackend(cfg.for_azureml_sdk("v1"), sdk=fake.sdk())]

    configure_logging(settings.log_level, settings.resolved_log_format())
    uvicorn.run(create_app(settings, backends=backends), host=settings.host, port=settings.port,
                log_level=settings.log_level.lower(), log_config=None, access_log=False,
                http=limited_protocol(settings))


if __name__ == "__main__":
    main()
