"""Start-up imports only what serving the API needs (issue 17: cold start to /readyz).

numpy, Mako, Alembic, httpx and the PostgreSQL dialect are loaded by the first request (or the first
migration) that needs them; each costs 0.1-0.3 s of every start otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service.core.settings import REPO_ROOT
from service.db import migrate

LAZY = ("numpy", "mako", "pygments", "alembic", "sqlalchemy.dialects.postgresql", "sklearn", "httpx")
_PROBE = """
import asyncio, json, sys
import service.server
from service.app import create_app

async def start_and_stop():
    app = create_app()
    async with app.router.lifespan_context(app):
        pass

asyncio.run(start_and_stop())
print(json.dumps(sorted(m for m in {lazy!r} if m in sys.modules)))
"""


def _loaded_after(code: str, env_dir: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={"RUNYARD_DATA_DIR": str(env_dir), "PATH": "/usr/bin:/bin"}, check=True)
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_a_restart_loads_no_heavy_module(tmp_path: Path) -> None:
    first = _loaded_after(_PROBE.format(lazy=LAZY), tmp_path)
    # A new data dir: migrations (Alembic loads the PostgreSQL dialect too); the digits files are
    # copied from the package, not made with scikit-learn and numpy.
    assert "alembic" in first
    assert not {"numpy", "sklearn"} & set(first)
    assert _loaded_after(_PROBE.format(lazy=LAZY), tmp_path) == []  # the same data dir again


def test_a_current_schema_is_checked_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runyard.db'}"
    migrate.upgrade(url)
    code = (f"import json, sys\nfrom service.db import migrate\nmigrate.upgrade({url!r})\n"
            "print(json.dumps(sorted(m for m in ('alembic',) if m in sys.modules)))")
    assert _loaded_after(code, tmp_path) == []


_GC_PROBE = """
import gc, json
import uvicorn
seen = {}

def run(app, **_kwargs):
    seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())

uvicorn.run = run
import service.__main__ as entry
seen["disabled_while_importing"] = not gc.isenabled()
entry.main()
print(json.dumps(seen))
"""


def test_no_collection_while_starting_and_the_collector_is_back_before_serving(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _GC_PROBE], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={"RUNYARD_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["disabled_while_importing"]
    # Left off, every cycle the service makes would leak: it must be on when uvicorn starts, with
    # the start-up heap (modules, classes, routes) frozen out of its sight.
    assert seen["enabled"]
    assert seen["frozen"] > 50_000
