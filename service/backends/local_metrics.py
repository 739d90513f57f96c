"""Reading a local run's metrics file (JSON lines the script appends) in bounded batches.

A script may log far faster than the service stores, or write a line with no end: each poll
reads at most `BATCH_BYTES` from the cursor, skips lines over `MAX_LINE_BYTES` without holding
them, and says whether more is waiting, so a finished run is drained over several polls.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.backends.base import MetricSample
from service.core.clock import utcnow

BATCH_BYTES = 1_048_576
MAX_LINE_BYTES = 65_536


@dataclass(frozen=True)
class MetricsBatch:
    samples: tuple[MetricSample, ...]
    cursor: int
    skipped: int  # lines dropped for their length
    more: bool  # bytes past the cursor that this batch did not reach


def read_batch(path: Path, offset: int) -> MetricsBatch:
    """The complete lines after byte `offset`, at most `BATCH_BYTES` of them."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return MetricsBatch((), offset, 0, False)
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if offset >= size:
            return MetricsBatch((), offset, 0, False)
        # The cursor sits after a newline, except inside an over-long line being skipped.
        mid_line = offset > 0 and os.pread(handle.fileno(), 1, offset - 1) != b"\n"
        handle.seek(offset)
        data = handle.read(BATCH_BYTES)
    skipped = 0
    if mid_line:
        newline = data.find(b"\n")
        if newline < 0:
            return MetricsBatch((), offset + len(data), 0, offset + len(data) < size)
        data, offset, skipped = data[newline + 1 :], offset + newline + 1, 1
    end = data.rfind(b"\n") + 1
    if end == 0:
        if len(data) >= MAX_LINE_BYTES:  # unfinished and already too long: skip it as it grows
            return MetricsBatch((), offset + len(data), skipped, offset + len(data) < size)
        return MetricsBatch((), offset, skipped, False)  # a line still being written
    samples = []
    for line in data[:end].splitlines():
        if len(line) > MAX_LINE_BYTES:
            skipped += 1
            continue
        sample = _parse(line)
        if sample is not None:
            samples.append(sample)
    return MetricsBatch(tuple(samples), offset + end, skipped, offset + end < size)


def _parse(line: bytes) -> MetricSample | None:
    try:
        item = json.loads(line)
        value = float(item["value"])
        if not math.isfinite(value):
            return None
        step = item.get("step")
        return MetricSample(
            name=str(item["name"])[:255],
            value=value,
            step=None if step is None else int(step),
            timestamp=_parse_time(item.get("timestamp")) or utcnow(),
        )
    except (ValueError, KeyError, TypeError, OverflowError):
        return None  # a malformed line from a user script is skipped, not fatal


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
