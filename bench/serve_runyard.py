"""`python -m bench.serve_runyard`: exactly `python -m service`, and at exit it writes which
azureml/azure modules the process had loaded (to $RUNYARD_BENCH_MODULES_FILE). A module list
can only be read from inside the process; uvicorn stops gracefully on SIGTERM, so atexit runs."""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path


def _dump() -> None:
    target = os.environ.get("RUNYARD_BENCH_MODULES_FILE")
    if target:
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("azureml", "azure"))
        Path(target).write_text(json.dumps({"modules_total": len(sys.modules), "azure_modules": loaded}))


atexit.register(_dump)

from service.__main__ import main  # noqa: E402 - after the hook, so a failing import still reports

if __name__ == "__main__":
    main()
