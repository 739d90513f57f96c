"""What every benchmark shares: statistics, tables, results JSON, the machine's description."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / ".work"
PACKAGES = ("fastapi", "starlette", "uvicorn", "sqlmodel", "sqlalchemy", "pydantic", "scikit-learn",
            "numpy", "scipy", "threadpoolctl", "azureml-core")


@dataclass(frozen=True)
class Stats:
    """min / median / max (and the count) of repeated measurements."""

    n: int
    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        data = sorted(v for v in values if v == v)  # NaN (nothing measured) is left out
        if not data:
            return cls(0, float("nan"), float("nan"), float("nan"))
        return cls(len(data), data[0], statistics.median(data), data[-1])

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def fmt(self, digits: int = 1, scale: float = 1.0) -> str:
        """`median (min–max)` for tables."""
        if self.n == 0:
            return "-"
        return f"{self.median * scale:.{digits}f} ({self.min * scale:.{digits}f}–{self.max * scale:.{digits}f})"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank: a value that was actually observed."""
    if not values:
        return float("nan")
    data = sorted(values)
    rank = max(1, min(len(data), round(q / 100 * len(data) + 0.4999)))
    return data[rank - 1]


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; infinite when only the denominator is 0, NaN when nothing is known."""
    if numerator != numerator or denominator != denominator:
        return float("nan")
    if not denominator:
        return float("inf") if numerator > 0 else float("nan")
    return numerator / denominator


@dataclass(frozen=True)
class Target:
    """One target of the issue, judged on a measured value."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: could not be measured in this run

    def verdict(self) -> str:
        return "n/a" if self.met is None else "met" if self.met else "MISSED"


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A plain fixed-width table on stdout."""
    body = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    print(f"\n== {title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def print_targets(title: str, targets: Sequence[Target]) -> None:
    print_table(title, ["target", "goal", "measured", "verdict"],
                [[t.name, t.goal, t.measured, t.verdict()] for t in targets])


def say(message: str) -> None:
    """Progress on stderr, so stdout stays the tables."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU, cores, memory, Python, package versions, date."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_meminfo_kb("MemTotal") / 1024**2, 1),
        "load_average_at_start": list(os.getloadavg()),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "blas": _blas(),
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")
                if k in os.environ},
        "git_commit": _git_commit(),
        "note": "2 shared cores: compare ratios measured side by side in the same run, not absolute figures",
    }


def write_results(name: str, *, config: dict[str, Any], results: dict[str, Any],
                  targets: Sequence[Target], machine: dict[str, Any] | None = None) -> Path:
    """bench/results/<name>.json: machine, configuration, results and target verdicts."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "machine": machine or machine_info(),
        "config": config,
        "results": results,
        "targets": [{**asdict(t), "verdict": t.verdict()} for t in targets],
    }
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    say(f"results written to {path.relative_to(REPO_ROOT)}")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Stats):
        return value.as_dict()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kb(key: str) -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _blas() -> list[dict[str, Any]]:
    try:
        import numpy  # noqa: F401 - loads the BLAS threadpoolctl reports on
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped]
    except ImportError:
        return []
    keep = ("internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: v for k, v in info.items() if k in keep} for info in threadpool_info()]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
