"""A v2 job's MLflow metric histories as runyard samples, and its times. No SDK imports here."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.backends.azureml_progress import guess_counts, read_counts, write_counts
from service.backends.base import MetricSample

CURSOR_FILE = "azureml_v2_metrics.json"


def new_history_samples(
    run_dir: Path, cursor: int, histories: Mapping[str, Sequence[Any]]
) -> tuple[tuple[MetricSample, ...], int]:
    """The MLflow points (`Metric`: key, value, step, timestamp in ms) not stored yet, and the new cursor.

    The poller keeps one integer per job, while points arrive under any name: the per-name
    counts behind each cursor handed out are kept in the run folder, so a cursor the database
    did not commit is simply asked for again.
    """
    known = read_counts(run_dir, CURSOR_FILE)
    counts = known.get(str(cursor)) or (
        {} if cursor == 0 else guess_counts({name: len(points) for name, points in histories.items()}, cursor))
    samples: list[MetricSample] = []
    totals: dict[str, int] = {}
    for name in sorted(histories):
        points = sorted(histories[name], key=lambda m: (m.timestamp, m.step))
        seen = min(counts.get(name, 0), len(points))
        for metric in points[seen:]:
            value = float(metric.value)
            if math.isfinite(value):
                samples.append(MetricSample(name=name, value=value, step=int(metric.step),
                                            timestamp=from_millis(metric.timestamp) or datetime.now(UTC)))
        totals[name] = max(len(points), counts.get(name, 0))
    new_cursor = sum(totals.values())
    if new_cursor != cursor:
        known[str(new_cursor)] = totals
        write_counts(run_dir, CURSOR_FILE, known)
    return tuple(samples), new_cursor


def from_millis(value: Any) -> datetime | None:
    """MLflow's times (ms since the epoch) as aware UTC."""
    return datetime.fromtimestamp(value / 1000, UTC) if isinstance(value, int) and value > 0 else None
