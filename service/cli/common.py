"""What every `runyard` command shares: the client from --url/--api-key, output, errors, exit codes."""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from service.cli.render import safe, table
from service.client.http import DEFAULT_URL, ApiError, Client, StreamInterrupted, WaitTimeout
from service.core.states import JobStatus
from service.jobs.schemas import JobPublic

EXIT_OK = 0
EXIT_JOB_FAILED = 1  # the job ended `failed`
EXIT_USAGE = 2  # typer's own code for bad options
EXIT_JOB_CANCELED = 3
EXIT_API_ERROR = 4  # the service refused, or could not be reached
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

def flag(*names: str, help: str) -> Any:  # noqa: A002 - typer's own name
    """A boolean option shown as a flag in --help (no `<bool>` value column)."""
    return typer.Option(*names, metavar="", help=help)


JsonOption = Annotated[bool, flag("--json", help="Print JSON for scripts instead of tables.")]
TimeoutOption = Annotated[float | None, typer.Option(
    min=0, help="With --wait or --follow: give up after this many seconds (the job keeps running).")]

STATUS_STYLE = {
    JobStatus.QUEUED: "blue", JobStatus.STARTING: "blue", JobStatus.RUNNING: "cyan",
    JobStatus.FINALIZING: "cyan", JobStatus.CANCELING: "magenta", JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "bold red", JobStatus.CANCELED: "yellow",
}


@dataclass(frozen=True)
class Target:
    """Which service the commands talk to (from --url/--api-key or RUNYARD_URL/RUNYARD_API_KEY)."""

    url: str
    api_key: str | None

    def client(self) -> Client:
        return Client(self.url, api_key=self.api_key)


def target(ctx: typer.Context) -> Target:
    """The `Target` the main callback stored on the context."""
    found = ctx.find_object(Target)
    return found if found is not None else Target(DEFAULT_URL, None)


def fail(message: str, code: int = EXIT_API_ERROR) -> NoReturn:
    """Print `message` (plain text, never markup) on stderr and exit with `code`."""
    err.print(f"[bold red]error:[/] {safe(message)}", soft_wrap=True)
    raise typer.Exit(code)


def problem_message(exc: ApiError) -> str:
    """The title, the detail and each reason of the problem's `errors[]`; a 401 says how to pass a key."""
    message = f"{exc.title} ({exc.status}): {exc.explained}"
    if exc.status == 401:
        message += "\n  pass the key with --api-key KEY (before or after the command) or set RUNYARD_API_KEY"
    return message


@contextmanager
def api_errors(where: Target) -> Iterator[None]:
    """Turn client errors into a readable message and an exit code."""
    try:
        yield
    except ApiError as exc:
        fail(problem_message(exc))
    except httpx.ConnectError:
        fail(f"cannot reach runyard at {where.url}; is it running? (`runyard serve`, or set RUNYARD_URL)")
    except httpx.HTTPError as exc:
        fail(f"talking to {where.url} failed: {exc}")
    except StreamInterrupted as exc:
        fail(str(exc))
    except WaitTimeout as exc:
        fail(str(exc), EXIT_TIMEOUT)
    except KeyboardInterrupt:
        err.print("interrupted; the job keeps running on the service")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def emit_json(value: BaseModel | list[BaseModel] | dict[str, Any]) -> None:
    """One JSON document on stdout."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, list):
        data = [v.model_dump(mode="json") for v in value]
    else:
        data = value
    typer.echo(json.dumps(data, indent=2))


def exit_code(status: JobStatus) -> int:
    """The process exit code for a job that ended in `status`."""
    return {JobStatus.COMPLETED: EXIT_OK, JobStatus.CANCELED: EXIT_JOB_CANCELED}.get(status, EXIT_JOB_FAILED)


def styled(status: JobStatus) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status.value}[/]"


def tags_text(tags: dict[str, str]) -> str:
    """Tags as `k=v k=v`, safe for markup."""
    return safe(" ".join(f"{k}={v}" for k, v in sorted(tags.items())))


class Expired(Exception):
    """`--timeout` ran out while following."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise `Expired` in this (main) thread after `seconds`, even inside a blocking read."""
    if seconds is None:
        yield
        return

    def expire(*_: object) -> None:
        raise Expired

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def when(value: datetime | None, *, short: bool = False) -> str:
    """A timestamp in local time, to the second (`short`: month, day, hour and minute, for tables)."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def duration(job: JobPublic) -> str:
    """How long the job ran (so far)."""
    if job.started_at is None:
        return "-"
    seconds = int(((job.ended_at or datetime.now(UTC)) - job.started_at).total_seconds())
    minutes, seconds = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def metrics_table(metrics: dict[str, float]) -> Table:
    grid = table("metric", "value", whole=("value",))
    for name, value in sorted(metrics.items()):
        grid.add_row(safe(name), f"{value:.6g}")
    return grid


def summary(job: JobPublic, metrics: dict[str, float]) -> None:
    """The final lines of `submit --follow`, `logs -f` and `submit --wait`."""
    out.print(f"job {job.id} {styled(job.status)}" + (f": {safe(job.error)}" if job.error else ""))
    if metrics:
        out.print(metrics_table(metrics))


def load_json(file: Path) -> dict[str, Any]:
    """The JSON object in `file` (`-` for stdin), or a usage error naming the file."""
    try:
        body = json.loads(file.read_text() if str(file) != "-" else typer.get_text_stream("stdin").read())
    except (OSError, ValueError) as exc:
        fail(f"--file {file}: {exc}", EXIT_USAGE)
    if not isinstance(body, dict):
        fail(f"--file {file}: expected a JSON object", EXIT_USAGE)
    return body


def parse_dataset(text: str) -> dict[str, Any]:
    """`--dataset NAME` or `NAME:VERSION` as a dataset binding of the job's arguments."""
    name, sep, version = text.partition(":")
    if not name or (sep and not (version.isascii() and version.isdigit())):
        fail(f"--dataset {text!r}: expected NAME or NAME:VERSION (a number)", EXIT_USAGE)
    return {"dataset": name, "mode": "mount"} | ({"version": int(version)} if version else {})


def scalar(text: str) -> int | float | str:
    """`5` and `0.5` as numbers (as the tutorial writes them); anything else stays text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def pairs(items: list[str], option: str) -> dict[str, str]:
    """`KEY=VALUE` (or `KEY:VALUE`) items as a dict; a usage error names the bad one."""
    found: dict[str, str] = {}
    for item in items:
        key, value = split_pair(item, option)
        found[key] = value
    return found


def split_pair(item: str, option: str) -> tuple[str, str]:
    """`KEY=VALUE` or `KEY:VALUE`, whichever separator comes first."""
    cut = min((i for i in (item.find("="), item.find(":")) if i > 0), default=-1)
    if cut <= 0:
        fail(f"{option} {item!r}: expected KEY=VALUE", EXIT_USAGE)
    return item[:cut], item[cut + 1:]
