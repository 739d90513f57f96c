"""A sweep's search space: the checks a request must pass, and the plan of child parameters."""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from typing import Any

from service.core.errors import InvalidRequest
from service.core.rundir import clean_relative
from service.sweeps.schemas import (
    MAX_PLAN_BYTES,
    MAX_TOTAL_RUNS,
    MAX_VALUE_CHARS,
    BanditStopping,
    Choice,
    LogUniform,
    SweepCreate,
    Uniform,
)

Params = dict[str, Any]
SIGNIFICANT_DIGITS = 6
MAX_TAGS = 50
# Tags the sweep puts on the version it registers (the last is named after the metric).
SWEEP_TAGS = ("sweep_id", "primary_metric", "<primary_metric>")
# The longest a drawn float gets in JSON (6 significant digits: `-1.23457e-308`), with room.
_DRAWN_FLOAT_CHARS = 24


def validate(spec: SweepCreate) -> None:
    """Raise `InvalidRequest` for what the schema alone cannot tell."""
    flags = {arg.split("=", 1)[0] for arg in spec.job.arguments if isinstance(arg, str)}
    for flag, dist in spec.search_space.items():
        if flag in flags:
            raise InvalidRequest(f"search space flag {flag} is already among the job's arguments")
        if isinstance(dist, Uniform | LogUniform) and not dist.low < dist.high:
            raise InvalidRequest(f"{flag}: low must be less than high")
        if isinstance(dist, LogUniform) and dist.low <= 0:
            raise InvalidRequest(f"{flag}: loguniform needs low > 0")
        if isinstance(dist, Uniform) and not math.isfinite(dist.high - dist.low):
            # The draw is low + (high - low) * u: an infinite width makes every child `high`.
            raise InvalidRequest(f"{flag}: high - low overflows a float; narrow the range")
        if isinstance(dist, Choice) and len({_key(v) for v in dist.values}) != len(dist.values):
            raise InvalidRequest(f"{flag}: choice values repeat")
        if isinstance(dist, Choice) and max(len(json.dumps(v)) for v in dist.values) > MAX_VALUE_CHARS:
            raise InvalidRequest(f"{flag}: a choice value is longer than {MAX_VALUE_CHARS} characters")
        if spec.sampling == "grid" and not isinstance(dist, Choice):
            raise InvalidRequest(f"grid sampling needs choice distributions; {flag} is {dist.type}")
    if spec.sampling == "random" and spec.max_total_runs is None:
        raise InvalidRequest("random sampling needs max_total_runs")
    if spec.sampling == "grid" and spec.max_total_runs is None and grid_size(spec) > MAX_TOTAL_RUNS:
        raise InvalidRequest(f"the grid has {grid_size(spec)} points; set max_total_runs (at most {MAX_TOTAL_RUNS})")
    if (size := plan_bytes_bound(spec)) > MAX_PLAN_BYTES:
        raise InvalidRequest(
            f"the plan of this sweep could take {size} bytes (runs x the longest value of each flag); at most "
            f"{MAX_PLAN_BYTES}: use fewer runs, fewer flags or shorter values"
        )
    policy = spec.early_termination
    if isinstance(policy, BanditStopping) and (policy.slack_factor is None) == (policy.slack_amount is None):
        raise InvalidRequest("bandit policy needs exactly one of slack_factor and slack_amount")
    if spec.register_best is not None:
        clean_relative(spec.register_best.model_path)
        if len(spec.register_best.tags) > MAX_TAGS - len(SWEEP_TAGS):
            raise InvalidRequest(f"register_best takes at most {MAX_TAGS - len(SWEEP_TAGS)} tags; the sweep adds "
                                 f"{', '.join(SWEEP_TAGS)}")


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
    if isinstance(dist, LogUniform):
        top = math.log(dist.high)
        # uniform() may round a hair past `top`, and exp() of that can overflow near the float maximum.
        value = math.exp(min(rng.uniform(math.log(dist.low), top), top))
    else:
        value = rng.uniform(dist.low, dist.high)
    # Short values read better in argv and tables; clamping keeps rounding inside the range.
    return min(max(float(f"{value:.{SIGNIFICANT_DIGITS}g}"), dist.low), dist.high)


def _key(value: Any) -> str:
    """Tells 1, 1.0, True and "1" apart, as the script's argv will."""
    return f"{type(value).__name__}:{json.dumps(value)}"
