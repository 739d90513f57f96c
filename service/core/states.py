"""The job and sweep lifecycles: states, which are terminal, and how Azure's strings map onto them."""

from __future__ import annotations

from enum import StrEnum

from service.core.errors import IllegalTransition


class JobStatus(StrEnum):
    """Where a job is in its life; terminal states never change again."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    FINALIZING = "finalizing"
    CANCELING = "canceling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    def is_terminal(self) -> bool:
        """True for completed, failed and canceled."""
        return self in _TERMINAL

    def is_active(self) -> bool:
        """True while a backend run exists or may exist for the job."""
        return self in _ACTIVE

    def check_transition(self, to: JobStatus) -> None:
        """Raise `IllegalTransition` unless the lifecycle allows `self -> to`."""
        if to != self and to not in _ALLOWED[self]:
            raise IllegalTransition(f"a {self.value} job cannot become {to.value}")


_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})
_ACTIVE = frozenset({JobStatus.STARTING, JobStatus.RUNNING, JobStatus.FINALIZING, JobStatus.CANCELING})
_PROGRESS = (JobStatus.STARTING, JobStatus.RUNNING, JobStatus.FINALIZING)
_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({*_PROGRESS, JobStatus.CANCELING, *_TERMINAL}),
    # A backend may report any later phase, or fall back (Azure re-queues preempted runs).
    JobStatus.STARTING: frozenset({*_PROGRESS, JobStatus.QUEUED, JobStatus.CANCELING, *_TERMINAL}),
    JobStatus.RUNNING: frozenset({*_PROGRESS, JobStatus.CANCELING, *_TERMINAL}),
    JobStatus.FINALIZING: frozenset({*_PROGRESS, JobStatus.CANCELING, *_TERMINAL}),
    JobStatus.CANCELING: frozenset(_TERMINAL),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}



class SweepStatus(StrEnum):
    """Where a sweep is in its life; terminal states never change again."""

    RUNNING = "running"
    CANCELING = "canceling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    def is_terminal(self) -> bool:
        """True for completed, failed and canceled."""
        return self in _SWEEP_TERMINAL

    def check_transition(self, to: SweepStatus) -> None:
        """Raise `IllegalTransition` unless a sweep may go `self -> to`."""
        if to != self and to not in _SWEEP_ALLOWED[self]:
            raise IllegalTransition(f"a {self.value} sweep cannot become {to.value}")


_SWEEP_TERMINAL = frozenset({SweepStatus.COMPLETED, SweepStatus.FAILED, SweepStatus.CANCELED})
_SWEEP_ALLOWED: dict[SweepStatus, frozenset[SweepStatus]] = {
    SweepStatus.RUNNING: frozenset({SweepStatus.CANCELING, *_SWEEP_TERMINAL}),
    SweepStatus.CANCELING: frozenset({SweepStatus.CANCELED}),
    SweepStatus.COMPLETED: frozenset(),
    SweepStatus.FAILED: frozenset(),
    SweepStatus.CANCELED: frozenset(),
}

AZURE_STATUS_MAP: dict[str, JobStatus] = {
    "NotStarted": JobStatus.STARTING,
    "Unapproved": JobStatus.STARTING,
    "Queued": JobStatus.STARTING,
    "Preparing": JobStatus.STARTING,
    "Provisioning": JobStatus.STARTING,
    "Starting": JobStatus.STARTING,
    "Running": JobStatus.RUNNING,
    # A run that misses heartbeats is still alive as far as Azure knows.
    "NotResponding": JobStatus.RUNNING,
    "Pausing": JobStatus.RUNNING,
    "Paused": JobStatus.RUNNING,
    "Finalizing": JobStatus.FINALIZING,
    "CancelRequested": JobStatus.CANCELING,
    "Completed": JobStatus.COMPLETED,
    "Failed": JobStatus.FAILED,
    "Canceled": JobStatus.CANCELED,
}


def from_azure(status: str) -> JobStatus:
    """Map an Azure ML run status string; unknown strings count as still running."""
    return AZURE_STATUS_MAP.get(status, JobStatus.RUNNING)
