"""Turning what an Azure ML run reports into runyard's records: metrics, log text, reasons.

No SDK imports here: these functions take the plain values the SDK returns.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.backends.base import MetricSample
from service.core.rundir import RunDir

CURSOR_FILE = "azureml_metrics.json"
KEPT_CURSORS = 8


def flatten_metrics(raw: Mapping[str, Any]) -> dict[str, list[float | None]]:
    """`run.get_metrics()` as one list of points per metric name.

    The SDK collapses a one-element list to a scalar and returns `log_row` tables as
    dicts of columns (facts §6.5); both are normalised here so that a metric's list only
    ever grows. Points that are not numbers (strings, image links) keep their place as None.
    """
    flat: dict[str, list[float | None]] = {}
    for name, value in raw.items():
        if isinstance(value, Mapping):
            for column, cells in value.items():
                flat[f"{name}.{column}"] = [_number(v) for v in _as_list(cells)]
        else:
            flat[str(name)] = [_number(v) for v in _as_list(value)]
    return flat


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def new_samples(
    run_dir: Path, cursor: int, flat: Mapping[str, list[float | None]], now: datetime
) -> tuple[tuple[MetricSample, ...], int]:
    """The points not stored yet, and the cursor (points stored in all) once they are.

    The poller keeps one integer per job, but new points can arrive under any metric
    name. So for each cursor value handed out, the per-name counts behind it are kept in
    the run folder; a cursor the database did not commit is simply asked for again.
    """
    known = read_counts(run_dir, CURSOR_FILE)
    counts = known.get(str(cursor))
    if counts is None:
        if sum(len(points) for points in flat.values()) < cursor:
            # Fewer points than already stored: `get_metrics` returns {} when listing the metric
            # names fails (_restclient/metrics_client.py get_metrics_for_run_v2). Wait for a full read.
            return (), cursor
        counts = {} if cursor == 0 else guess_counts({name: len(points) for name, points in flat.items()}, cursor)
    samples: list[MetricSample] = []
    for name in sorted(flat):
        points = flat[name]
        seen = min(counts.get(name, 0), len(points))
        # get_metrics gives neither steps nor times: points are stamped when first read.
        samples.extend(
            MetricSample(name=name, value=v, step=None, timestamp=now) for v in points[seen:] if v is not None
        )
    # A name missing from this read keeps its count: the cursor never moves back, so points
    # already stored are never stored again when the name reappears.
    total = {name: max(len(flat.get(name, ())), counts.get(name, 0)) for name in {*flat, *counts}}
    new_cursor = sum(total.values())
    if new_cursor != cursor:
        known[str(new_cursor)] = total
        write_counts(run_dir, CURSOR_FILE, known)
    return tuple(samples), new_cursor


def guess_counts(lengths: Mapping[str, int], cursor: int) -> dict[str, int]:
    """Per-name counts for a cursor whose record the run folder lost (restored from backup...): name order."""
    counts: dict[str, int] = {}
    for name in sorted(lengths):
        counts[name] = min(cursor, lengths[name])
        cursor -= counts[name]
    return counts


def read_counts(run_dir: Path, file_name: str) -> dict[str, dict[str, int]]:
    """The per-name counts behind each metric cursor handed out (v1 and v2 keep one file each)."""
    try:
        data = json.loads((RunDir(run_dir).state / file_name).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_counts(run_dir: Path, file_name: str, known: dict[str, dict[str, int]]) -> None:
    """Keep the last KEPT_CURSORS cursors' counts, written whole (temp file, then rename)."""
    state = RunDir(run_dir).state
    state.mkdir(parents=True, exist_ok=True)
    tmp = state / f"{file_name}.tmp"
    tmp.write_text(json.dumps(dict(list(known.items())[-KEPT_CURSORS:])))
    os.replace(tmp, state / file_name)


def append_new_log_text(run_dir: Path, downloaded: Path) -> int:
    """Append what `downloaded` (the run's whole log so far) has beyond the local copy.

    The SDK can only download a log file whole; readers of the local copy (the logs
    endpoint, `follow=true`) rely on it only ever growing, so only the new tail is written.
    Returns the number of bytes appended.
    """
    log_path = RunDir(run_dir).log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    have = log_path.stat().st_size if log_path.exists() else 0
    with open(downloaded, "rb") as source:
        source.seek(have)
        tail = source.read()
    if tail:
        with open(log_path, "ab") as target:
            target.write(tail)
    return len(tail)


def error_text(details: Mapping[str, Any]) -> str | None:
    """`code: message` of a run's `error` (v1 `get_details()`, v2 Run History's `RunDetails`), whatever its nesting."""
    error = details.get("error")
    while isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
        error = error["error"]
    if isinstance(error, Mapping):
        code, message = error.get("code"), error.get("message")
        text = f"{code}: {message}" if code and message else str(message or code or "")
        return text or None
    return None


def failure_reason(details: Mapping[str, Any]) -> str:
    """The message of `run.get_details()["error"]`, whatever its nesting."""
    text = error_text(details)
    return f"the Azure ML run failed: {text}" if text else "the Azure ML run failed without an error message"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from run details, as aware UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
