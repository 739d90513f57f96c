"""service.sweeps.sampling: what a sweep request must satisfy, and the plan of child parameters."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from pydantic import ValidationError

from service.core.errors import InvalidRequest
from service.sweeps.sampling import grid_size, plan, validate
from service.sweeps.schemas import SweepCreate


def sweep(**overrides: Any) -> SweepCreate:
    body: dict[str, Any] = {
        "job": {"experiment": "tests", "arguments": ["--data-folder", {"dataset": "digits"}]},
        "search_space": {"--regularization": {"type": "loguniform", "low": 0.001, "high": 10}},
        "sampling": "random", "seed": 1, "primary_metric": "accuracy", "max_total_runs": 8,
    }
    body.update(overrides)
    return SweepCreate.model_validate(body)


def test_grid_is_the_cartesian_product_in_order() -> None:
    spec = sweep(sampling="grid", max_total_runs=None, search_space={
        "--solver": {"type": "choice", "values": ["lbfgs", "saga"]},
        "--regularization": {"type": "choice", "values": [0.1, 1, 10]},
    })
    validate(spec)
    points = plan(spec, seed=0)
    assert grid_size(spec) == 6
    assert points == [
        {"--solver": s, "--regularization": r} for s in ("lbfgs", "saga") for r in (0.1, 1, 10)
    ]


def test_grid_is_capped_by_max_total_runs() -> None:
    spec = sweep(sampling="grid", max_total_runs=4,
                 search_space={"--regularization": {"type": "choice", "values": [1, 2, 3, 4, 5, 6]}})
    assert plan(spec, seed=0) == [{"--regularization": v} for v in (1, 2, 3, 4)]


def test_random_sampling_is_reproducible_from_its_seed() -> None:
    spec = sweep(max_total_runs=20)
    assert plan(spec, seed=7) == plan(spec, seed=7)
    assert plan(spec, seed=7) != plan(spec, seed=8)
    assert len(plan(spec, seed=7)) == 20


def test_loguniform_spreads_evenly_in_log_space_within_bounds() -> None:
    spec = sweep(max_total_runs=400)
    values = [p["--regularization"] for p in plan(spec, seed=3)]
    assert all(0.001 <= v <= 10 for v in values)
    logs = [math.log10(v) for v in values]
    # log10 is uniform on [-3, 1]: its mean is near -1, and each decade gets about a quarter.
    assert statistics.fmean(logs) == pytest.approx(-1, abs=0.25)
    for low in (-3, -2, -1, 0):
        share = sum(low <= x < low + 1 for x in logs) / len(logs)
        assert share == pytest.approx(0.25, abs=0.08)


def test_uniform_and_choice_draws_stay_in_their_space() -> None:
    spec = sweep(max_total_runs=50, search_space={
        "--rate": {"type": "uniform", "low": -1, "high": 1},
        "--solver": {"type": "choice", "values": ["lbfgs", "saga"]},
    })
    points = plan(spec, seed=11)
    assert all(-1 <= p["--rate"] <= 1 for p in points)
    assert {p["--solver"] for p in points} == {"lbfgs", "saga"}


def test_values_are_short_enough_to_read() -> None:
    values = [p["--regularization"] for p in plan(sweep(max_total_runs=30), seed=5)]
    assert all(len(repr(v)) <= 12 for v in values)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"search_space": {"--r": {"type": "choice", "values": [1, 2, 1]}}}, "choice values repeat"),
        ({"search_space": {"--r": {"type": "choice", "values": [1, 1.0]}}}, "choice values repeat"),
        ({"sampling": "grid"}, "grid sampling needs choice distributions"),
        ({"max_total_runs": None}, "random sampling needs max_total_runs"),
        ({"search_space": {"--data-folder": {"type": "choice", "values": ["a"]}}}, "already among the job's arguments"),
        ({"early_termination": {"policy": "bandit"}}, "exactly one of slack_factor and slack_amount"),
        ({"early_termination": {"policy": "bandit", "slack_factor": 0.1, "slack_amount": 0.1}}, "exactly one"),
    ],
)
def test_invalid_requests_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        validate(sweep(**overrides))


def test_choice_values_that_differ_as_json_are_distinct() -> None:
    validate(sweep(search_space={"--flag": {"type": "choice", "values": [1, True, "1", 2.5]}}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"search_space": {"--r": {"type": "loguniform", "low": 0, "high": 1}}}, "greater than 0"),
        ({"register_best": {"model_name": "m", "model_path": "../../etc/passwd"}}, "should match pattern"),
        ({"register_best": {"model_name": "m", "model_path": "outputs/m.pkl",
                            "tags": {f"k{i}": "v" for i in range(48)}}}, "at most 47 items"),
        ({"job": {"experiment": "e", "arguments": ["x"] * 217}}, "at most 216 items"),
    ],
)
def test_what_the_schema_states_is_refused_by_validation(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        sweep(**overrides)


@pytest.mark.parametrize(("low", "high"), [(2, 1), (1, 1), (-1.7e308, 1.7e308)])
def test_a_uniform_range_takes_its_ends_in_either_order_and_never_overflows(low: float, high: float) -> None:
    spec = sweep(search_space={"--r": {"type": "uniform", "low": low, "high": high}}, max_total_runs=50)
    validate(spec)
    values = [p["--r"] for p in plan(spec, seed=1)]
    assert all(min(low, high) <= v <= max(low, high) and math.isfinite(v) for v in values)


def test_a_loguniform_range_takes_its_ends_in_either_order() -> None:
    spec = sweep(search_space={"--r": {"type": "loguniform", "low": 10, "high": 0.001}}, max_total_runs=50)
    validate(spec)
    assert all(0.001 <= p["--r"] <= 10 for p in plan(spec, seed=1))


def test_a_grid_over_1000_points_without_max_total_runs_runs_its_first_1000() -> None:
    # It was a 422 the document could not state (issue 12): now cut like any grid at its max_total_runs.
    spec = sweep(sampling="grid", max_total_runs=None,
                 search_space={f"--p{i}": {"type": "choice", "values": list(range(10))} for i in range(4)})
    validate(spec)
    points = plan(spec, seed=0)
    assert len(points) == 1000
    assert points[0] == {"--p0": 0, "--p1": 0, "--p2": 0, "--p3": 0}
    assert points[-1] == {"--p0": 0, "--p1": 9, "--p2": 9, "--p3": 9}
