"""API models of sweeps: a job plus a search space in, status, progress and children out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)

from service.core.schemas import ArgInt, Strict, TagKey, TagValue
from service.core.states import JobStatus
from service.core.states import SweepStatus as SweepStatus  # the API and CLI name it from here
from service.jobs.schemas import (
    MAX_JOB_ARGUMENTS,
    NO_NUL,
    PARENT_SEGMENT,
    Argument,
    FiniteFloat,
    JobCreate,
    argv_safe,
    no_parent_segment,
)
from service.models.schemas import ModelRegister

MAX_TOTAL_RUNS = 1000
MAX_FLAGS = 20
MAX_TAGS = 50
# Tags the sweep puts on the version it registers (the last is named after the metric).
SWEEP_TAGS = ("sweep_id", "primary_metric", "<primary_metric>")
MAX_CONCURRENT_RUNS = 100
# A plan is every child's parameters, stored with the sweep: these keep a small request from
# becoming a huge row (20 flags of 4 kB values x 1000 runs would be 82 MB).
MAX_CHOICE_VALUES = MAX_TOTAL_RUNS
MAX_VALUE_CHARS = 256
MAX_PLAN_BYTES = 1_048_576

FLAG_PATTERN = r"^--?[A-Za-z][A-Za-z0-9_.-]{0,127}$"
Flag = Annotated[str, StringConstraints(pattern=FLAG_PATTERN)]
MetricName = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ValueText = Annotated[
    str, StringConstraints(max_length=MAX_VALUE_CHARS), AfterValidator(argv_safe), AfterValidator(no_parent_segment),
    WithJsonSchema({"type": "string", "maxLength": MAX_VALUE_CHARS, "pattern": NO_NUL,
                    "not": {"pattern": PARENT_SEGMENT}}),
]
Scalar = StrictBool | ArgInt | FiniteFloat | ValueText
Bound = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Slack = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Choice(Strict):
    """One of `values` (the only type grid sampling accepts)."""

    type: Literal["choice"]
    # Unique as JSON counts it (1 and 1.0 are one number; true and 1 are not): sampling.validate.
    values: Annotated[
        list[Scalar], Field(min_length=1, max_length=MAX_CHOICE_VALUES, json_schema_extra={"uniqueItems": True})
    ]


class Uniform(Strict):
    """A float drawn evenly between `low` and `high` (either may be the larger, as in `random.uniform`)."""

    type: Literal["uniform"]
    low: Bound
    high: Bound


class LogUniform(Strict):
    """A float whose logarithm is drawn evenly between log `low` and log `high`; both > 0."""

    type: Literal["loguniform"]
    low: Positive
    high: Positive


Distribution = Annotated[Choice | Uniform | LogUniform, Field(discriminator="type")]


class MedianStopping(Strict):
    """Stop a run whose best value so far is worse than the median of the others' running averages."""

    policy: Literal["median"]
    evaluation_interval: int = Field(default=1, ge=1, le=100_000, description="apply every this many steps")
    delay_evaluation: int = Field(default=0, ge=0, le=1_000_000, description="first step the policy applies at")


class BanditStopping(Strict):
    """Stop a run that is not within a slack (factor or amount) of the best run at the same step."""

    # Exactly one slack (sampling.validate): said in the schema too.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["slack_factor"], "properties": {"slack_factor": {"type": "number"}}},
        {"required": ["slack_amount"], "properties": {"slack_amount": {"type": "number"}}},
    ]})

    policy: Literal["bandit"]
    evaluation_interval: int = Field(default=1, ge=1, le=100_000, description="apply every this many steps")
    delay_evaluation: int = Field(default=0, ge=0, le=1_000_000, description="first step the policy applies at")
    slack_factor: Slack | None = None
    slack_amount: Slack | None = None


EarlyTermination = Annotated[MedianStopping | BanditStopping, Field(discriminator="policy")]

SWEEP_EXAMPLE: dict[str, Any] = {
    "job": {"experiment": "Tutorial-sklearn-mnist", "arguments": ["--data-folder", {"dataset": "digits"}]},
    "search_space": {"--regularization": {"type": "loguniform", "low": 0.001, "high": 10}},
    "sampling": "random", "seed": 1, "primary_metric": "accuracy", "goal": "maximize",
    "max_total_runs": 8, "max_concurrent_runs": 2,
    "early_termination": {"policy": "median", "evaluation_interval": 1, "delay_evaluation": 2},
    "register_best": {"model_name": "sklearn_mnist", "model_path": "outputs/sklearn_mnist_model.pkl"},
}


class SweepJob(JobCreate):
    """A sweep's base job: room is kept for the flags and values the search space appends (2 each)."""

    arguments: Annotated[list[Argument], Field(max_length=MAX_JOB_ARGUMENTS - 2 * MAX_FLAGS)] = Field(
        default_factory=list
    )


class BestModel(ModelRegister):
    """How to register the best child's model; the sweep adds its own tags (sampling.SWEEP_TAGS)."""

    tags: Annotated[dict[TagKey, TagValue], Field(max_length=MAX_TAGS - len(SWEEP_TAGS))] = Field(default_factory=dict)


class SweepBase(Strict):
    """What a sweep request carries, and what reading a sweep repeats back."""

    job: SweepJob = Field(description="the base job; each search-space flag is appended to its arguments")
    # The keys' rule is in the schema too (pydantic leaves dict keys out of it).
    search_space: Annotated[
        dict[Flag, Distribution],
        Field(min_length=1, max_length=MAX_FLAGS, json_schema_extra={"propertyNames": {"pattern": FLAG_PATTERN}}),
    ]
    sampling: Literal["grid", "random"] = "random"
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="omitted: chosen once and kept")
    primary_metric: MetricName
    goal: Literal["maximize", "minimize"] = "maximize"
    max_total_runs: int | None = Field(
        default=None, ge=1, le=MAX_TOTAL_RUNS,
        description="required for random sampling; grid: the whole grid, cut at 1000 points",
    )
    max_concurrent_runs: int = Field(default=1, ge=1, le=MAX_CONCURRENT_RUNS)
    early_termination: EarlyTermination | None = None
    register_best: BestModel | None = Field(default=None, description="register the best child's model")


class SweepCreate(SweepBase):
    """Many jobs over a search space (Azure ML HyperDrive's vocabulary)."""

    # What sampling.validate asks of the sampling, said in the schema: grid sampling takes choice
    # distributions only; random sampling needs max_total_runs.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [SWEEP_EXAMPLE],
        "if": {"required": ["sampling"], "properties": {"sampling": {"const": "grid"}}},
        "then": {"properties": {"search_space": {
            "additionalProperties": {"required": ["type"], "properties": {"type": {"const": "choice"}}}}}},
        "else": {"required": ["max_total_runs"], "properties": {"max_total_runs": {"type": "integer"}}},
    })


class SweepProgress(BaseModel):
    total: int = Field(description="children the sweep will run")
    launched: int
    active: int
    completed: int
    failed: int
    canceled: int
    early_terminated: int
    done: int = Field(description="children in a terminal state")


class RegisteredModelRef(BaseModel):
    name: str
    version: int


class SweepPublic(SweepBase):
    id: str
    status: SweepStatus
    progress: SweepProgress
    best_job_id: str | None = Field(description="the completed child with the best primary metric")
    best_metric: float | None
    registered_model: RegisteredModelRef | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    cancel_requested_at: datetime | None


class SweepChild(BaseModel):
    """One row of a sweep's table of children."""

    index: int
    job_id: str
    params: dict[str, Any]
    status: JobStatus
    primary_metric: float | None = Field(description="the latest value the child logged")
    early_terminated: str | None = Field(description="why the policy stopped it, if it did")
    started_at: datetime | None
    ended_at: datetime | None


class SweepDetail(SweepPublic):
    children: list[SweepChild]
