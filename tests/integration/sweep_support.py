"""Helpers the sweep tests share: request bodies, waiting, overlap of children's run times."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient

OPEN = {"running", "canceling"}
# The values the stubbed Azure sweeps (v1 and v2) search, and the accuracy each gives.
REGULARIZATIONS = [0.001, 0.01, 0.1, 0.5, 2.0, 10.0]


def accuracy_for(regularization: float) -> float:
    """A made-up curve with its peak at 0.5, as digits has."""
    return round(0.97 - 0.01 * abs(math.log10(regularization / 0.5)), 6)


def scorer_sweep(qualities: list[float], *, extra_args: list[Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A grid sweep over tests/scripts/scorer.py's `--quality`, maximizing `score`."""
    body: dict[str, Any] = {
        "job": {"experiment": "sweep-tests", "source": "testscripts", "script": "scorer.py",
                "arguments": extra_args or []},
        "search_space": {"--quality": {"type": "choice", "values": qualities}},
        "sampling": "grid", "primary_metric": "score", "goal": "maximize", "max_concurrent_runs": 2,
    }
    body.update(overrides)
    return body


def wait_for_sweep(client: TestClient, sweep_id: str, *, until: set[str] | None = None,
                   timeout: float = 120) -> dict[str, Any]:
    """Poll GET /v1/sweeps/{id} until its status leaves running/canceling (or is in `until`)."""
    deadline = time.monotonic() + timeout
    while True:
        sweep: dict[str, Any] = client.get(f"/v1/sweeps/{sweep_id}").json()
        if (sweep["status"] in until) if until else (sweep["status"] not in OPEN):
            return sweep
        if time.monotonic() > deadline:
            raise AssertionError(f"sweep {sweep_id} still {sweep['status']} after {timeout}s: {sweep['progress']}")
        time.sleep(0.1)


def max_overlap(children: list[dict[str, Any]]) -> int:
    """The most children whose [started_at, ended_at] intervals overlap at one instant."""
    events: list[tuple[datetime, int]] = []
    for child in children:
        assert child["started_at"], child
        assert child["ended_at"], child
        events.append((datetime.fromisoformat(child["started_at"]), 1))
        events.append((datetime.fromisoformat(child["ended_at"]), -1))
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += delta
        peak = max(peak, running)
    return peak
