"""A sweep's search space: the checks a request must pass, and the plan of child parameters."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from typing import Any

from service.core.errors import InvalidRequest
from service.sweeps.schemas import (
    MAX_PLAN_BYTES,
    MAX_TOTAL_RUNS,
    BanditStopping,
    Choice,
    LogUniform,
    SweepCreate,
    Uniform,
)

Params = dict[str, Any]
SIGNIFICANT_DIGITS = 6
# The longest a drawn float gets in JSON (6 significant digits: `-1.23457e-308`), with room.
_DRAWN_FLOAT_CHARS = 24


def validate(spec: SweepCreate) -> None:
    """Raise `InvalidRequest` for what pydantic does not check; each rule is in the document too
    (schemas.SweepCreate), except the flag already among the job's arguments and the plan size,
    which JSON Schema cannot state. (A grid without max_total_runs is cut at MAX_TOTAL_RUNS points,
    in order, like any grid at its max_total_runs: its size is no reason to refuse it.)"""
    flags = {arg.split("=", 1)[0] for arg in spec.job.arguments if isinstance(arg, str)}
    for flag, dist in spec.search_space.items():
        if flag in flags:
            raise InvalidRequest(f"search space flag {flag} is already among the job's arguments")
        if isinstance(dist, Choice) and len({_key(v) for v in dist.values}) != len(dist.values):
            raise InvalidRequest(f"{flag}: choice values repeat")
        if spec.sampling == "grid" and not isinstance(dist, Choice):
            raise InvalidRequest(f"grid sampling needs choice distributions; {flag} is {dist.type}")
    if spec.sampling == "random" and spec.max_total_runs is None:
        raise InvalidRequest("random sampling needs max_total_runs")
    if (size := plan_bytes_bound(spec)) > MAX_PLAN_BYTES:
        raise InvalidRequest(
            f"the plan of this sweep could take {size} bytes (runs x the longest value of each flag); at most "
            f"{MAX_PLAN_BYTES}: use fewer runs, fewer flags or shorter values"
        )
    policy = spec.early_termination
    if isinstance(policy, BanditStopping) and (policy.slack_factor is None) == (policy.slack_amount is None):
        raise InvalidRequest("bandit policy needs exactly one of slack_factor and slack_amount")


def grid_size(spec: SweepCreate) -> int:
    """How many points the full grid has."""
    return math.prod(len(d.values) for d in spec.search_space.values() if isinstance(d, Choice))


def plan_bytes_bound(spec: SweepCreate) -> int:
    """The most bytes the plan's JSON can take: every child with the longest value of every flag."""
    if spec.sampling == "grid":
        runs = min(grid_size(spec), spec.max_total_runs or MAX_TOTAL_RUNS)
    else:
        runs = spec.max_total_runs or 1
    per_child = 2 + sum(
        len(json.dumps(flag)) + 4
        + (max(len(json.dumps(v)) for v in dist.values) if isinstance(dist, Choice) else _DRAWN_FLOAT_CHARS)
        for flag, dist in spec.search_space.items()
    )
    return 2 + runs * per_child


def plan(spec: SweepCreate, *, seed: int) -> list[Params]:
    """The parameters of every child, in launch order; the same request and seed give the same plan."""
    if spec.sampling == "grid":
        return list(itertools.islice(_grid(spec), spec.max_total_runs or MAX_TOTAL_RUNS))
    rng = random.Random(seed)
    total = spec.max_total_runs or 1
    return [{flag: _draw(rng, dist) for flag, dist in spec.search_space.items()} for _ in range(total)]


def _grid(spec: SweepCreate) -> Iterator[Params]:
    flags = list(spec.search_space)
    axes = [d.values for d in spec.search_space.values() if isinstance(d, Choice)]
    for point in itertools.product(*axes):
        yield dict(zip(flags, point, strict=True))


def _draw(rng: random.Random, dist: Choice | Uniform | LogUniform) -> Any:
    if isinstance(dist, Choice):
        return rng.choice(dist.values)
    low, high = sorted((dist.low, dist.high))  # either end may come first, as in random.uniform
    u = rng.random()
    if isinstance(dist, LogUniform):
        # exp() of a hair past log(high) can overflow near the float maximum: clamped below.
        value = math.exp(math.log(low) * (1 - u) + math.log(high) * u)
    else:
        value = low * (1 - u) + high * u  # never overflows, unlike low + (high - low) * u
    # Short values read better in argv and tables; clamping keeps rounding inside the range.
    return min(max(float(f"{value:.{SIGNIFICANT_DIGITS}g}"), low), high)


def _key(value: Any) -> tuple[str, Any]:
    """Equal as JSON: 1 and 1.0 are one number, true and 1 are not (the schema's uniqueItems)."""
    kind = "bool" if isinstance(value, bool) else "number" if isinstance(value, int | float) else "text"
    return kind, value
