"""A chatty script (issue 19, problem 1): metrics are read in bounded batches, over-long lines are
skipped without being held, and a per-job cap stores what fits and counts the rest on the job."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.backends.local_metrics import BATCH_BYTES, MAX_LINE_BYTES, read_batch
from service.core.settings import Settings
from tests.conftest import script_job, wait_for


def _line(step: int) -> bytes:
    return json.dumps({"name": "loss", "value": 0.5, "step": step}).encode() + b"\n"


def test_a_backlog_is_read_in_bounded_batches(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(_line(i) for i in range(100_000)))  # ~4 MB
    cursor, batches, steps = 0, 0, []
    while True:
        batch = read_batch(path, cursor)
        assert batch.cursor - cursor <= BATCH_BYTES
        steps += [s.step for s in batch.samples]
        cursor, batches = batch.cursor, batches + 1
        if not batch.more:
            break
    assert steps == list(range(100_000))
    assert batches > 3
    assert cursor == path.stat().st_size


def test_an_endless_line_is_skipped_once_and_never_reread(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(_line(0) + b'{"name": "x", "pad": "' + b"y" * (3 * BATCH_BYTES))  # no newline yet
    seen, cursor, skipped = [], 0, 0
    for _ in range(10):
        batch = read_batch(path, cursor)
        seen += batch.samples
        cursor, skipped = batch.cursor, skipped + batch.skipped
    assert cursor == path.stat().st_size  # moved past the unfinished line, not stuck re-reading it
    with open(path, "ab") as handle:
        handle.write(b'"}\n' + _line(1) + b"z" * (MAX_LINE_BYTES + 1) + b"\n" + _line(2))
    for _ in range(3):
        batch = read_batch(path, cursor)
        seen += batch.samples
        cursor, skipped = batch.cursor, skipped + batch.skipped
    assert [s.step for s in seen] == [0, 1, 2]
    assert skipped == 2  # the endless line, once it ended, and the complete over-long one


def test_points_past_the_per_job_cap_are_counted_not_stored(settings: Settings) -> None:
    capped = settings.model_copy(update={"max_metric_points_per_job": 1_000})
    with TestClient(create_app(capped)) as client:
        body = script_job("chatty.py", "--points", 30_000, "--long-line-bytes", 2 * BATCH_BYTES)
        job = wait_for(client, client.post("/v1/jobs", json=body).json()["id"], timeout=120)
        assert job["status"] == "completed", job
        assert job["metrics_dropped"] == 30_000 - 1_000 + 1
        stored, cursor = 0, None
        while True:
            params: dict[str, object] = {"limit": 500} | ({"cursor": cursor} if cursor else {})
            page = client.get(f"/v1/jobs/{job['id']}/metrics/loss/history", params=params).json()
            stored += len(page["items"])
            if not (cursor := page["next_cursor"]):
                break
        assert stored == 1_000
