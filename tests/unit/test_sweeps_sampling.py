"""service.sweeps.sampling: what a sweep request must satisfy, and the plan of child parameters."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

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
        ({"search_space": {"--r": {"type": "uniform", "low": 2, "high": 1}}}, "low must be less than high"),
        ({"search_space": {"--r": {"type": "uniform", "low": 1, "high": 1}}}, "low must be less than high"),
        ({"search_space": {"--r": {"type": "loguniform", "low": 0, "high": 1}}}, "loguniform needs low > 0"),
        ({"search_space": {"--r": {"type": "choice", "values": [1, 2, 1]}}}, "choice values repeat"),
        ({"sampling": "grid"}, "grid sampling needs choice distributions"),
        ({"max_total_runs": None}, "random sampling needs max_total_runs"),
        ({"search_space": {"--data-folder": {"type": "choice", "values": ["a"]}}}, "already among the job's arguments"),
        ({"sampling": "grid", "max_total_runs": None,
          "search_space": {f"--p{i}": {"type": "choice", "values": list(range(10))} for i in range(4)}},
         "the grid has 10000 points"),
        ({"early_termination": {"policy": "bandit"}}, "exactly one of slack_factor and slack_amount"),
        ({"early_termination": {"policy": "bandit", "slack_factor": 0.1, "slack_amount": 0.1}}, "exactly one"),
        ({"register_best": {"model_name": "m", "model_path": "../../etc/passwd"}}, "must stay inside"),
        ({"register_best": {"model_name": "m", "model_path": "outputs/m.pkl",
                            "tags": {f"k{i}": "v" for i in range(48)}}}, "at most 47 tags"),
    ],
)
def test_invalid_requests_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        validate(sweep(**overrides))


def test_choice_values_that_differ_in_type_are_distinct() -> None:
    validate(sweep(search_space={"--flag": {"type": "choice", "values": [1, 1.0, True, "1"]}}))
