"""`python -m bench.serve_runyard`: exactly `python -m service`, and at exit it writes which
azureml/azure modules the process had loaded (to $RUNYARD_BENCH_MODULES_FILE). A module list
can only be read from inside the process. uvicorn shuts down gracefully on SIGTERM, then raises
the signal again with the handler that was there before it started: ours, which writes the list."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType


def _dump() -> None:
    target = os.environ.get("RUNYARD_BENCH_MODULES_FILE")
    if target:
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("azureml", "azure"))
        Path(target).write_text(json.dumps({"modules_total": len(sys.modules), "azure_modules": loaded}))


def _on_term(signum: int, _frame: FrameType | None) -> None:
    _dump()
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)

from service.__main__ import main  # noqa: E402 - after the hook is in place

if __name__ == "__main__":
    main()
    _dump()
