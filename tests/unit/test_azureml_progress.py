"""What a run reports, as runyard records it: metric points once each, log text appended."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from service.backends.azureml_progress import append_new_log_text, failure_reason, flatten_metrics, new_samples

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def test_flatten_normalises_every_get_metrics_shape() -> None:
    raw = {
        "accuracy": 0.91,  # logged once: a scalar
        "loss": [0.5, 0.4, 0.3],
        "perf": {"epoch": [1, 2], "err": [0.2, 0.1]},  # log_row twice
        "once_row": {"a": 1, "b": "x"},  # log_row once: scalars
        "img": "aml://artifactId/ExperimentRun/dcid.x/img.png",  # log_image
        "flag": True,
    }
    assert flatten_metrics(raw) == {
        "accuracy": [0.91], "loss": [0.5, 0.4, 0.3], "perf.epoch": [1.0, 2.0], "perf.err": [0.2, 0.1],
        "once_row.a": [1.0], "once_row.b": [None], "img": [None], "flag": [None],
    }


def test_new_points_only_and_a_cursor_that_can_be_replayed(tmp_path: Path) -> None:
    first, cursor = new_samples(tmp_path, 0, {"loss": [0.5], "acc": [None]}, NOW)
    assert ([(s.name, s.value) for s in first], cursor) == ([("loss", 0.5)], 2)
    # A point arrives under a name that sorts first: still only the new ones come out.
    second, cursor2 = new_samples(tmp_path, cursor, {"a": [1.0], "loss": [0.5, 0.4], "acc": [None]}, NOW)
    assert ([(s.name, s.value) for s in second], cursor2) == ([("a", 1.0), ("loss", 0.4)], 4)
    # The poller did not commit cursor2: asking with the old cursor gives the same points again.
    again, _ = new_samples(tmp_path, cursor, {"a": [1.0], "loss": [0.5, 0.4], "acc": [None]}, NOW)
    assert again == second
    assert new_samples(tmp_path, cursor2, {"a": [1.0], "loss": [0.5, 0.4], "acc": [None]}, NOW) == ((), 4)


def test_log_text_is_appended_never_rewritten(tmp_path: Path) -> None:
    part = tmp_path / "part"
    part.write_text("line 1\n")
    assert append_new_log_text(tmp_path, part) == 7
    part.write_text("line 1\nline 2\n")
    assert append_new_log_text(tmp_path, part) == 7
    assert append_new_log_text(tmp_path, part) == 0
    assert (tmp_path / "user_logs" / "std_log.txt").read_text() == "line 1\nline 2\n"


def test_failure_reason_digs_out_the_message() -> None:
    details = {"error": {"error": {"code": "UserError", "message": "Execution failed: exit code 1"}}}
    assert failure_reason(details) == "the Azure ML run failed: UserError: Execution failed: exit code 1"
    assert failure_reason({}) == "the Azure ML run failed without an error message"


def test_the_cursor_never_moves_back_when_a_read_comes_back_empty(tmp_path: Path) -> None:
    _, cursor = new_samples(tmp_path, 0, {"loss": [0.5, 0.4], "acc": [0.9]}, NOW)
    # get_metrics() == {} (the SDK swallows a failed listing of the metric names): nothing new.
    assert new_samples(tmp_path, cursor, {}, NOW) == ((), cursor)
    # One name missing from a read: its points are not forgotten, so not stored again later.
    partial, cursor2 = new_samples(tmp_path, cursor, {"loss": [0.5, 0.4, 0.3]}, NOW)
    assert ([(s.name, s.value) for s in partial], cursor2) == ([("loss", 0.3)], 4)
    assert new_samples(tmp_path, cursor2, {"loss": [0.5, 0.4, 0.3], "acc": [0.9]}, NOW) == ((), 4)
    # The run folder lost its record: an empty read still does not move the cursor back.
    assert new_samples(tmp_path / "restored", cursor2, {}, NOW) == ((), 4)
