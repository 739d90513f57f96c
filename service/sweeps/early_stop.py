"""Early-termination policies: should a running child stop, given everyone's primary metric so far."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Literal

from service.sweeps.schemas import BanditStopping, MedianStopping

# (step, value) pairs in step order: one child's primary metric.
Series = Sequence[tuple[int, float]]
Goal = Literal["maximize", "minimize"]


def evaluation_step(latest: int, *, interval: int, delay: int) -> int | None:
    """The most recent step at which the policy applies, or None before the first one."""
    if latest < delay:
        return None
    return delay + (latest - delay) // interval * interval


def verdict(
    policy: MedianStopping | BanditStopping, *, goal: Goal, run: Series, others: Sequence[Series]
) -> str | None:
    """Why `run` should stop now, or None to let it go on."""
    if not run:
        return None
    step = evaluation_step(run[-1][0], interval=policy.evaluation_interval, delay=policy.delay_evaluation)
    if step is None:
        return None
    mine = _best([v for s, v in run if s <= step], goal)
    # Only runs that got as far compare fairly: early steps of a run are usually worse.
    peers = [[v for s, v in other if s <= step] for other in others if other and other[-1][0] >= step]
    if not peers:
        return None
    if isinstance(policy, MedianStopping):
        median = statistics.median(statistics.fmean(values) for values in peers)
        if _worse(mine, median, goal):
            return (f"median stopping at step {step}: best {mine:.6g} is worse than the median {median:.6g} "
                    f"of {len(peers)} other runs' running averages")
        return None
    top = _best([_best(values, goal) for values in peers], goal)
    limit = _bandit_limit(policy, top, goal)
    if _worse(mine, limit, goal):
        return (f"bandit at step {step}: best {mine:.6g} is outside the slack of the best run "
                f"({top:.6g}, limit {limit:.6g})")
    return None


def _bandit_limit(policy: BanditStopping, top: float, goal: Goal) -> float:
    sign = 1 if goal == "maximize" else -1
    if policy.slack_amount is not None:
        return top - sign * policy.slack_amount
    factor = policy.slack_factor or 0.0
    return top / (1 + factor) if goal == "maximize" else top * (1 + factor)


def _best(values: Sequence[float], goal: Goal) -> float:
    return max(values) if goal == "maximize" else min(values)


def _worse(value: float, than: float, goal: Goal) -> bool:
    # A tie is not worse, also when averaging equal values left a rounding error behind.
    if math.isclose(value, than, rel_tol=1e-9, abs_tol=1e-12):
        return False
    return value < than if goal == "maximize" else value > than
