"""The folder of one job's run: logs, outputs and the local runner's state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from service.core.errors import InvalidRequest

LOG_NAME = "user_logs/std_log.txt"
STATE_DIR = ".runyard"


@dataclass(frozen=True)
class RunDir:
    """Paths inside `<data_dir>/runs/<job_id>/`."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @property
    def log(self) -> Path:
        return self.root / LOG_NAME

    @property
    def metrics(self) -> Path:
        return self.state / "metrics.jsonl"

    def list_files(self, limit: int | None = None) -> list[str]:
        """Regular files under the run folder (not the runner's state, not symlinks); the first `limit`."""
        found: list[str] = []
        if not self.root.is_dir():
            return found
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if not (here / d).is_symlink() and (here != self.root or d != STATE_DIR)
            )
            for name in sorted(filenames):
                path = here / name
                if path.is_file() and not path.is_symlink():
                    found.append(path.relative_to(self.root).as_posix())
                    if limit is not None and len(found) >= limit:
                        return found
        return found

    def resolve(self, relative: str) -> Path:
        """`relative` inside the run folder; anything leaving it is a 422."""
        return confined(self.root, relative)


def clean_relative(relative: str) -> str:
    """A normalised relative POSIX path, refusing absolute paths and `..`."""
    if "\\" in relative or any(c < " " or c == "\x7f" for c in relative):
        raise InvalidRequest(f"path {relative!r} is not a plain relative path")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or any(part == ".." for part in pure.parts) or not pure.parts:
        raise InvalidRequest(f"path {relative!r} must stay inside its folder")
    return pure.as_posix()


def confined(root: Path, relative: str) -> Path:
    """`root/relative` after resolving symlinks, provided it is still inside `root`."""
    target = (root / clean_relative(relative)).resolve()
    if not target.is_relative_to(root.resolve()):
        raise InvalidRequest(f"path {relative!r} must stay inside its folder")
    return target
