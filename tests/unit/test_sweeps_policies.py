"""service.sweeps.early_stop: median stopping and bandit, on hand-made metric histories."""

from __future__ import annotations

import pytest

from service.sweeps.early_stop import evaluation_step, verdict
from service.sweeps.schemas import BanditStopping, MedianStopping


def flat(value: float, steps: int) -> list[tuple[int, float]]:
    return [(step, value) for step in range(steps)]


def median(interval: int = 1, delay: int = 0) -> MedianStopping:
    return MedianStopping(policy="median", evaluation_interval=interval, delay_evaluation=delay)


@pytest.mark.parametrize(
    ("latest", "interval", "delay", "expected"),
    [(0, 1, 0, 0), (5, 1, 0, 5), (1, 1, 2, None), (2, 1, 2, 2), (7, 3, 2, 5), (8, 3, 2, 8), (4, 5, 0, 0)],
)
def test_evaluation_step(latest: int, interval: int, delay: int, expected: int | None) -> None:
    assert evaluation_step(latest, interval=interval, delay=delay) == expected


def test_median_stops_a_run_worse_than_the_median_of_running_averages() -> None:
    others = [flat(0.9, 5), flat(0.8, 5), flat(0.1, 5)]
    reason = verdict(median(), goal="maximize", run=flat(0.5, 3), others=others)
    assert reason is not None
    assert "median 0.8" in reason


def test_median_lets_a_run_at_or_above_the_median_go_on() -> None:
    others = [flat(0.9, 5), flat(0.8, 5), flat(0.1, 5)]
    assert verdict(median(), goal="maximize", run=flat(0.8, 3), others=others) is None


def test_median_uses_the_runs_best_value_so_far_and_the_others_averages() -> None:
    # The run dipped but its best (0.85) beats the other's running average (0.1+0.9+0.9)/3.
    run = [(0, 0.85), (1, 0.2), (2, 0.3)]
    other = [(0, 0.1), (1, 0.9), (2, 0.9), (3, 0.9)]
    assert verdict(median(), goal="maximize", run=run, others=[other]) is None
    # ...and the other's later, better steps do not count against it.
    assert verdict(median(), goal="maximize", run=[(0, 0.4)], others=[other]) is None


def test_median_waits_for_the_delay_and_applies_on_the_interval() -> None:
    others = [flat(0.9, 10)]
    assert verdict(median(delay=3), goal="maximize", run=flat(0.1, 3), others=others) is None
    assert verdict(median(delay=3), goal="maximize", run=flat(0.1, 4), others=others) is not None


def test_only_runs_that_reached_the_same_step_compare() -> None:
    assert verdict(median(), goal="maximize", run=flat(0.1, 4), others=[flat(0.9, 2)]) is None
    assert verdict(median(), goal="maximize", run=flat(0.1, 4), others=[flat(0.9, 4)]) is not None


def test_median_with_minimize_stops_the_higher_loss() -> None:
    others = [flat(0.2, 5), flat(0.3, 5)]
    assert verdict(median(), goal="minimize", run=flat(0.5, 2), others=others) is not None
    assert verdict(median(), goal="minimize", run=flat(0.1, 2), others=others) is None


def test_no_metric_yet_or_no_peer_never_stops() -> None:
    assert verdict(median(), goal="maximize", run=[], others=[flat(0.9, 3)]) is None
    assert verdict(median(), goal="maximize", run=flat(0.1, 3), others=[]) is None


@pytest.mark.parametrize(
    ("policy", "goal", "value", "stops"),
    [
        (BanditStopping(policy="bandit", slack_factor=0.1), "maximize", 0.80, True),    # limit 0.9/1.1 = 0.818
        (BanditStopping(policy="bandit", slack_factor=0.1), "maximize", 0.83, False),
        (BanditStopping(policy="bandit", slack_amount=0.2), "maximize", 0.69, True),    # limit 0.9-0.2 = 0.7
        (BanditStopping(policy="bandit", slack_amount=0.2), "maximize", 0.71, False),
        (BanditStopping(policy="bandit", slack_factor=0.5), "minimize", 0.31, True),    # best 0.2, limit 0.3
        (BanditStopping(policy="bandit", slack_factor=0.5), "minimize", 0.29, False),
        (BanditStopping(policy="bandit", slack_amount=0.05), "minimize", 0.26, True),   # limit 0.25
        (BanditStopping(policy="bandit", slack_amount=0.05), "minimize", 0.24, False),
    ],
)
def test_bandit_keeps_runs_within_the_slack_of_the_best(
    policy: BanditStopping, goal: str, value: float, stops: bool
) -> None:
    best, other = (0.9, 0.5) if goal == "maximize" else (0.2, 0.6)
    reason = verdict(policy, goal=goal, run=flat(value, 3), others=[flat(best, 3), flat(other, 3)])  # type: ignore[arg-type]
    assert (reason is not None) is stops
