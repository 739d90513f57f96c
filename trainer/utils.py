"""IDX (MNIST) file I/O and run-metric logging for the training script.

This module is copied into every run folder next to train.py and imported as
plain `utils`, so it must only need the standard library, numpy and (at call
time) optionally mlflow or azureml; it must never import the `service` package.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import math
import numbers
import os
import struct
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "IDX_LABELS_MAGIC",
    "IDX_IMAGES_MAGIC",
    "MNIST_FILE_NAMES",
    "AzureMLMetricsLogger",
    "JsonLinesMetricsLogger",
    "MetricsLogger",
    "MlflowMetricsLogger",
    "StdoutMetricsLogger",
    "find_mnist_files",
    "get_run_logger",
    "load_data",
    "load_mnist",
    "write_idx_gz",
]

# IDX header: two zero bytes, a type code (0x08 = unsigned byte), the number of
# dimensions, then one big-endian uint32 per dimension.
_IDX_UBYTE: Final = 0x08
IDX_LABELS_MAGIC: Final = 0x00000801
IDX_IMAGES_MAGIC: Final = 0x00000803
_GZIP_MAGIC: Final = b"\x1f\x8b"

# Keys are what find_mnist_files returns; the same names are used by MNIST,
# Fashion-MNIST (including Debian's dataset-fashion-mnist package) and the
# offline digits dataset, so one table serves all of them.
MNIST_FILE_NAMES: Final[dict[str, str]] = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

METRICS_FILE_ENV: Final = "RUNYARD_METRICS_FILE"
AZUREML_RUN_ID_ENV: Final = "AZUREML_RUN_ID"
# Set by the Azure ML job runtime for the job's own MLflow run (azureml-mlflow's
# _internal/service_context_loader.py expects these, with MLFLOW_TRACKING_TOKEN
# and MLFLOW_EXPERIMENT_ID/_NAME, when it runs inside a job).
MLFLOW_TRACKING_URI_ENV: Final = "MLFLOW_TRACKING_URI"
MLFLOW_RUN_ID_ENV: Final = "MLFLOW_RUN_ID"


# --------------------------------------------------------------------------- IDX


def _gunzip(raw: bytes, filename: str) -> bytes:
    """Decompress a (possibly multi-member) gzip byte string, verifying CRCs."""
    if not raw.startswith(_GZIP_MAGIC):
        raise ValueError(f"{filename}: not a gzip file (bad gzip magic {raw[:2].hex() or 'empty'})")
    # zlib with wbits=31 parses the gzip container itself and checks CRC32/ISIZE;
    # it is about 20% faster than gzip.decompress on Python 3.11, which matters
    # for the 47 MB Fashion-MNIST training images.
    parts: list[bytes] = []
    rest = raw
    try:
        while rest:
            decoder = zlib.decompressobj(wbits=31)
            parts.append(decoder.decompress(rest))
            if not decoder.eof:
                raise ValueError(f"{filename}: truncated gzip stream")
            # Concatenated members are legal gzip; trailing NUL padding is
            # tolerated the same way the gzip module tolerates it.
            rest = decoder.unused_data.lstrip(b"\x00")
    except zlib.error as exc:
        raise ValueError(f"{filename}: corrupt gzip data ({exc})") from exc
    return parts[0] if len(parts) == 1 else b"".join(parts)


def load_data(filename: str | os.PathLike[str], label: bool = False) -> npt.NDArray[np.uint8]:
    """Read a gzipped IDX file: images as (n, rows*cols) uint8, labels as (n, 1) uint8."""
    name = os.fspath(filename)
    data = _gunzip(Path(name).read_bytes(), name)
    if len(data) < 4:
        raise ValueError(f"{name}: file too short for an IDX header ({len(data)} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    expected = IDX_LABELS_MAGIC if label else IDX_IMAGES_MAGIC
    if magic != expected:
        kind = "label" if label else "image"
        raise ValueError(f"{name}: bad IDX magic number 0x{magic:08x}, expected 0x{expected:08x} for an {kind} file")
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} of {header_len} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    count = math.prod(dims)
    if len(data) - header_len != count:
        raise ValueError(f"{name}: IDX dimensions {dims} need {count} data bytes, file has {len(data) - header_len}")
    # frombuffer shares the decompressed bytes instead of copying them, so the
    # result is read-only; callers scale into a new float array anyway.
    flat = np.frombuffer(data, dtype=np.uint8, count=count, offset=header_len)
    n_items = dims[0]
    if label:
        return flat.reshape(n_items, 1)
    return flat.reshape(n_items, math.prod(dims[1:]))


def write_idx_gz(path: str | os.PathLike[str], array: npt.ArrayLike) -> None:
    """Write a uint8 array as a deterministic gzipped IDX file, atomically."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"IDX writer only supports uint8 arrays, got dtype {arr.dtype}")
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got an array with ndim={arr.ndim}")
    if any(d > 0xFFFFFFFF for d in arr.shape):
        raise ValueError(f"IDX dimensions must fit in uint32, got shape {arr.shape}")
    header = bytes((0, 0, _IDX_UBYTE, arr.ndim)) + struct.pack(f">{arr.ndim}I", *arr.shape)
    # mtime=0 and no embedded file name make the bytes depend only on the data.
    payload = _gzip_bytes(header + np.ascontiguousarray(arr).tobytes())

    target = Path(path)
    # The temp file lives in the target's directory so os.replace is a same-
    # filesystem rename: readers see either the old file or the complete new one.
    # Its name does not end in ".gz" so a recursive glob never picks it up.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; a dataset should be as readable as a normal file.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(target.parent)


def _gzip_bytes(data: bytes) -> bytes:
    """Gzip `data` with a fixed header (mtime 0, no name, OS byte 255)."""
    # Built by hand rather than with gzip.compress because the OS byte written by
    # gzip.compress differs between Python versions; this way the output is
    # byte-identical wherever the same zlib is used.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(data) + compressor.flush()
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def _fsync_dir(directory: Path) -> None:
    """Persist a rename; best effort because some filesystems refuse dir fsync."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def find_mnist_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Locate the four MNIST-named IDX files anywhere under `folder`."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist or is not a directory")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, file_name in MNIST_FILE_NAMES.items():
        # Sorted so the choice is stable when a folder holds several copies;
        # the shallowest match wins, like the tutorial's glob(...)[0] on a flat mount.
        matches = sorted(root.glob(f"**/{file_name}"), key=lambda p: (len(p.parts), str(p)))
        matches = [m for m in matches if m.is_file()]
        if matches:
            found[key] = matches[0]
        else:
            missing.append(file_name)
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)} under data folder {str(root)!r} (searched recursively)")
    return found


def load_mnist(folder: str | os.PathLike[str]) -> dict[str, npt.NDArray[np.uint8]]:
    """Load all four files under `folder`: images (n, pixels), labels flattened to (n,)."""
    files = find_mnist_files(folder)
    # zlib releases the GIL while inflating, so threads overlap the big training
    # images with the rest; inflating is nearly all of the cost (~0.25 s of
    # Fashion-MNIST's ~0.3 s when done one file after another).
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        futures = {key: pool.submit(load_data, path, key.endswith("_labels")) for key, path in files.items()}
        arrays = {key: future.result() for key, future in futures.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{split} set has {images.shape[0]} images but {labels.shape[0]} labels "
                f"({files[f'{split}_images']}, {files[f'{split}_labels']})"
            )
        arrays[f"{split}_labels"] = labels.reshape(-1)
    if arrays["train_images"].shape[1] != arrays["test_images"].shape[1]:
        raise ValueError(
            f"train images have {arrays['train_images'].shape[1]} pixels, test images {arrays['test_images'].shape[1]}"
        )
    return arrays


# ----------------------------------------------------------------------- metrics


def _check_metric(name: object, value: object, step: object) -> tuple[str, float, int | None]:
    """Validate one metric and normalise it to plain Python types."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")
    if "\n" in name or "\r" in name:
        raise ValueError(f"metric name must be a single line, got {name!r}")
    # bool is an int subclass, but True as a metric value is almost always a bug.
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"metric {name!r} value must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r} value must be finite, got {number!r}")
    checked_step: int | None = None
    if step is not None:
        if isinstance(step, bool | np.bool_) or not isinstance(step, numbers.Integral):
            raise ValueError(f"metric {name!r} step must be an integer, got {step!r}")
        checked_step = int(step)
        if checked_step < 0:
            raise ValueError(f"metric {name!r} step must be >= 0, got {checked_step}")
    return name, number, checked_step


class MetricsLogger:
    """Base run logger: validates, then hands a metric to `_emit`."""

    def log(self, name: str, value: float, step: int | None = None) -> None:
        """Record one metric value, optionally at a training step."""
        self._emit(*_check_metric(name, value, step))

    def _emit(self, name: str, value: float, step: int | None) -> None:
        raise NotImplementedError


class StdoutMetricsLogger(MetricsLogger):
    """Prints `metric name=value` lines, for runs with no other destination."""

    def _emit(self, name: str, value: float, step: int | None) -> None:
        suffix = "" if step is None else f" step={step}"
        print(f"metric {name}={value!r}{suffix}", flush=True)


class JsonLinesMetricsLogger(MetricsLogger):
    """Appends one JSON object per metric to a file the service tails."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _emit(self, name: str, value: float, step: int | None) -> None:
        record = {
            "name": name,
            "value": value,
            "step": step,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        }
        line = json.dumps(record, allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Opened per call in append mode: O_APPEND keeps concurrent writers from
        # clobbering each other, and the single write() of a whole line means a
        # tailing reader never sees half a record once it has seen the newline.
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


class AzureMLMetricsLogger(MetricsLogger):
    """Forwards metrics to an azureml.core Run."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def _emit(self, name: str, value: float, step: int | None) -> None:
        # _OfflineRun.log(name, value, description="") has no `step` keyword and
        # raises TypeError if given one, so only a real run gets the step.
        if step is None or _is_offline_run(self.run):
            self.run.log(name, value)
        else:
            self.run.log(name, value, step=step)


class MlflowMetricsLogger(MetricsLogger):
    """Logs to an MLflow run: how an Azure ML SDK v2 job records metrics.

    The run is the job's own (MLFLOW_RUN_ID), written through `MlflowClient` rather than
    `mlflow.log_metric`, which would start and, at exit, end a run of its own. A metric
    logged without a step gets the next step of its name (0, 1, 2...), so its MLflow
    history keeps the order in which it was logged.
    """

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._next_step: dict[str, int] = {}

    def _emit(self, name: str, value: float, step: int | None) -> None:
        if step is None:
            step = self._next_step.get(name, 0)
        self._next_step[name] = max(self._next_step.get(name, 0), step + 1)
        timestamp = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        self.client.log_metric(self.run_id, name, value, timestamp=timestamp, step=step)


def _mlflow_logger() -> MlflowMetricsLogger | None:
    """The job's MLflow run when the Azure ML runtime set one up and mlflow is installed."""
    run_id = os.environ.get(MLFLOW_RUN_ID_ENV)
    if not (run_id and os.environ.get(MLFLOW_TRACKING_URI_ENV)):
        return None
    try:
        tracking = importlib.import_module("mlflow.tracking")
    except ImportError:
        return None
    # MlflowClient() reads MLFLOW_TRACKING_URI; azureml-mlflow's plugin serves its azureml:// scheme.
    return MlflowMetricsLogger(tracking.MlflowClient(), run_id)


def _is_offline_run(run: Any) -> bool:
    """True for azureml's stand-in run object used outside a submitted job."""
    return type(run).__name__ == "_OfflineRun"


def _azureml_run() -> Any | None:
    """The submitted Azure ML run, or None when not inside one."""
    try:
        core = importlib.import_module("azureml.core")
    except ImportError:
        return None
    run = core.Run.get_context()
    # Outside a real job get_context() returns an _OfflineRun whose log() goes
    # nowhere useful; fall through to the file/stdout destinations instead.
    return None if _is_offline_run(run) else run


def get_run_logger() -> MetricsLogger:
    """Pick the metrics destination: the job's MLflow run, the Azure ML run, RUNYARD_METRICS_FILE, else stdout.

    MLflow first: an SDK v2 job has the runtime's MLFLOW_* variables and the mlflow +
    azureml-mlflow packages runyard adds to its environment; an SDK v1 job usually has
    azureml-core only (and if it has mlflow too, both land in the same run's metrics).
    """
    mlflow_logger = _mlflow_logger()
    if mlflow_logger is not None:
        return mlflow_logger
    if os.environ.get(AZUREML_RUN_ID_ENV):
        run = _azureml_run()
        if run is not None:
            return AzureMLMetricsLogger(run)
    metrics_file = os.environ.get(METRICS_FILE_ENV)
    if metrics_file:
        return JsonLinesMetricsLogger(metrics_file)
    return StdoutMetricsLogger()
