"""trainer.utils: IDX read/write, dataset discovery and metric logging."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import stat
import struct
import sys
import time
import types
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from trainer import utils
from trainer.utils import (
    MNIST_FILE_NAMES,
    AzureMLMetricsLogger,
    JsonLinesMetricsLogger,
    MlflowMetricsLogger,
    StdoutMetricsLogger,
    find_mnist_files,
    get_run_logger,
    load_data,
    load_mnist,
    write_idx_gz,
)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _images(n: int = 5, rows: int = 4, cols: int = 3, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(n, rows, cols), dtype=np.uint8)


def _labels(n: int = 5, seed: int = 1) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 10, size=n, dtype=np.uint8)


def _tutorial_load_data(filename: Path, label: bool = False) -> npt.NDArray[np.uint8]:
    """The Azure ML tutorial's own reader, verbatim apart from names."""
    with gzip.open(filename) as gz:
        struct.unpack("I", gz.read(4))
        n_items = struct.unpack(">I", gz.read(4))
        if not label:
            n_rows = struct.unpack(">I", gz.read(4))[0]
            n_cols = struct.unpack(">I", gz.read(4))[0]
            res = np.frombuffer(gz.read(n_items[0] * n_rows * n_cols), dtype=np.uint8)
            res = res.reshape(n_items[0], n_rows * n_cols)
        else:
            res = np.frombuffer(gz.read(n_items[0]), dtype=np.uint8)
            res = res.reshape(n_items[0], 1)
    return res


def _write_raw_gz(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload, mtime=0))
    return path


def _make_mnist_folder(root: Path) -> dict[str, Path]:
    """Four small MNIST-named files, as a data folder would hold them."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": _images(6, seed=10),
        "train_labels": _labels(6, seed=11),
        "test_images": _images(2, seed=12),
        "test_labels": _labels(2, seed=13),
    }
    paths = {}
    for key, name in MNIST_FILE_NAMES.items():
        paths[key] = root / name
        write_idx_gz(paths[key], arrays[key])
    return paths


# ------------------------------------------------------------------ round trip


def test_images_round_trip_flattens_rows_and_cols(tmp_path: Path) -> None:
    images = _images(7, 4, 3)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx_gz(path, images)

    loaded = load_data(path, label=False)

    assert loaded.dtype == np.uint8
    assert loaded.shape == (7, 12)
    np.testing.assert_array_equal(loaded, images.reshape(7, 12))


def test_labels_round_trip_as_column(tmp_path: Path) -> None:
    labels = _labels(9)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx_gz(path, labels)

    loaded = load_data(path, label=True)

    assert loaded.dtype == np.uint8
    assert loaded.shape == (9, 1)
    np.testing.assert_array_equal(loaded.reshape(-1), labels)


def test_written_files_read_identically_by_the_tutorial_reader(tmp_path: Path) -> None:
    images, labels = _images(3, 28, 28), _labels(3)
    write_idx_gz(tmp_path / "i.gz", images)
    write_idx_gz(tmp_path / "l.gz", labels)

    np.testing.assert_array_equal(load_data(tmp_path / "i.gz"), _tutorial_load_data(tmp_path / "i.gz"))
    np.testing.assert_array_equal(
        load_data(tmp_path / "l.gz", label=True), _tutorial_load_data(tmp_path / "l.gz", label=True)
    )


@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 3, 4), (1, 2, 3, 4)])
def test_writer_header_is_big_endian_idx(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    path = tmp_path / "x.gz"
    write_idx_gz(path, array)

    raw = gzip.decompress(path.read_bytes())

    assert raw[:4] == bytes((0, 0, 0x08, len(shape)))
    assert struct.unpack(f">{len(shape)}I", raw[4 : 4 + 4 * len(shape)]) == shape
    assert raw[4 + 4 * len(shape) :] == array.tobytes()


def test_writer_accepts_non_contiguous_arrays(tmp_path: Path) -> None:
    images = _images(4, 5, 6)[:, ::2, :]  # a strided view
    write_idx_gz(tmp_path / "x.gz", images)

    np.testing.assert_array_equal(load_data(tmp_path / "x.gz"), images.reshape(4, -1))


def test_empty_dataset_round_trips(tmp_path: Path) -> None:
    write_idx_gz(tmp_path / "x.gz", np.zeros((0, 2, 2), dtype=np.uint8))

    assert load_data(tmp_path / "x.gz").shape == (0, 4)


def test_multi_member_gzip_is_read_whole(tmp_path: Path) -> None:
    labels = _labels(20)
    payload = bytes((0, 0, 8, 1)) + struct.pack(">I", 20) + labels.tobytes()
    path = tmp_path / "l.gz"
    path.write_bytes(gzip.compress(payload[:10], mtime=0) + gzip.compress(payload[10:], mtime=0))

    np.testing.assert_array_equal(load_data(path, label=True).reshape(-1), labels)


# ---------------------------------------------------------------- determinism


def test_two_writes_are_byte_identical(tmp_path: Path) -> None:
    images = _images(10, 8, 8)
    write_idx_gz(tmp_path / "a.gz", images)
    time.sleep(1.1)  # a gzip mtime would differ by now
    write_idx_gz(tmp_path / "b.gz", images.copy())

    a, b = (tmp_path / "a.gz").read_bytes(), (tmp_path / "b.gz").read_bytes()
    assert a == b
    # gzip header: magic, deflate, no flags, mtime 0, no file name embedded.
    assert a[:8] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00"
    assert b"a.gz" not in a


def test_write_leaves_no_temp_files_and_is_world_readable(tmp_path: Path) -> None:
    write_idx_gz(tmp_path / "x.gz", _labels())

    assert [p.name for p in tmp_path.iterdir()] == ["x.gz"]
    assert stat.S_IMODE((tmp_path / "x.gz").stat().st_mode) == 0o644


def test_write_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "l.gz"
    write_idx_gz(path, _labels(3, seed=1))
    write_idx_gz(path, _labels(8, seed=2))

    np.testing.assert_array_equal(load_data(path, label=True).reshape(-1), _labels(8, seed=2))


def test_failed_write_keeps_old_file_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "l.gz"
    write_idx_gz(path, _labels(3))
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(f"disk full while renaming {src} to {dst}")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_idx_gz(path, _labels(8))

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["l.gz"]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 2), dtype=np.int64), "uint8"),
        (np.zeros((2, 2), dtype=np.float32), "uint8"),
        (np.uint8(3), "dimensions"),
    ],
)
def test_writer_rejects_unsupported_arrays(tmp_path: Path, array: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_idx_gz(tmp_path / "x.gz", array)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------- malformed input


def test_label_file_read_as_images_is_rejected(tmp_path: Path) -> None:
    write_idx_gz(tmp_path / "l.gz", _labels())

    with pytest.raises(ValueError, match=r"bad IDX magic number 0x00000801, expected 0x00000803"):
        load_data(tmp_path / "l.gz", label=False)


def test_image_file_read_as_labels_is_rejected(tmp_path: Path) -> None:
    write_idx_gz(tmp_path / "i.gz", _images())

    with pytest.raises(ValueError, match=r"bad IDX magic number 0x00000803, expected 0x00000801"):
        load_data(tmp_path / "i.gz", label=True)


@pytest.mark.parametrize(
    "magic",
    [
        0x12345678,
        0x00000D03,  # float64 type code, 3 dims
        0x01000803,  # non-zero leading bytes
    ],
)
def test_garbage_magic_is_rejected(tmp_path: Path, magic: int) -> None:
    path = _write_raw_gz(tmp_path / "x.gz", struct.pack(">IIII", magic, 1, 1, 1) + b"\x00")

    with pytest.raises(ValueError, match="bad IDX magic number") as excinfo:
        load_data(path)
    assert str(path) in str(excinfo.value)


def test_truncated_pixel_data_is_rejected(tmp_path: Path) -> None:
    path = _write_raw_gz(tmp_path / "x.gz", struct.pack(">IIII", 0x803, 2, 2, 2) + b"\x00" * 7)

    with pytest.raises(ValueError, match=r"need 8 data bytes, file has 7"):
        load_data(path)


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    path = _write_raw_gz(tmp_path / "x.gz", struct.pack(">II", 0x801, 2) + b"\x01\x02\x03")

    with pytest.raises(ValueError, match=r"need 2 data bytes, file has 3"):
        load_data(path, label=True)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00", struct.pack(">II", 0x803, 5)])
def test_truncated_header_is_rejected(tmp_path: Path, payload: bytes) -> None:
    path = _write_raw_gz(tmp_path / "x.gz", payload)

    with pytest.raises(ValueError, match="too short|truncated IDX header"):
        load_data(path)


def test_plain_file_is_rejected_as_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(struct.pack(">II", 0x801, 1) + b"\x01")

    with pytest.raises(ValueError, match="not a gzip file"):
        load_data(path, label=True)


def test_truncated_gzip_is_rejected(tmp_path: Path) -> None:
    write_idx_gz(tmp_path / "x.gz", _images(50, 10, 10))
    raw = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(raw[: len(raw) // 2])

    with pytest.raises(ValueError, match="truncated gzip stream"):
        load_data(tmp_path / "x.gz")


def test_corrupt_crc_is_rejected(tmp_path: Path) -> None:
    write_idx_gz(tmp_path / "x.gz", _labels(30))
    raw = bytearray((tmp_path / "x.gz").read_bytes())
    raw[-8] ^= 0xFF  # first byte of the CRC32 trailer
    (tmp_path / "x.gz").write_bytes(bytes(raw))

    with pytest.raises(ValueError, match="corrupt gzip data"):
        load_data(tmp_path / "x.gz", label=True)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_data(tmp_path / "nope.gz")


# ---------------------------------------------------------------- discovery


def test_find_mnist_files_searches_recursively(tmp_path: Path) -> None:
    nested = _make_mnist_folder(tmp_path / "mount" / "a" / "b")

    found = find_mnist_files(tmp_path / "mount")

    assert found == nested
    assert set(found) == {"train_images", "train_labels", "test_images", "test_labels"}


def test_find_mnist_files_prefers_the_shallowest_copy(tmp_path: Path) -> None:
    _make_mnist_folder(tmp_path / "z_deep" / "copy")
    top = _make_mnist_folder(tmp_path)

    assert find_mnist_files(tmp_path) == top


def test_find_mnist_files_ignores_directories_and_temp_files(tmp_path: Path) -> None:
    paths = _make_mnist_folder(tmp_path / "data")
    paths["test_labels"].unlink()
    (tmp_path / "data" / "sub" / "t10k-labels-idx1-ubyte.gz").mkdir(parents=True)
    (tmp_path / "data" / ".t10k-labels-idx1-ubyte.gz.abc.tmp").write_bytes(b"")

    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        find_mnist_files(tmp_path / "data")


def test_missing_file_error_names_file_and_folder(tmp_path: Path) -> None:
    paths = _make_mnist_folder(tmp_path)
    paths["train_labels"].unlink()
    paths["test_images"].unlink()

    with pytest.raises(FileNotFoundError) as excinfo:
        find_mnist_files(tmp_path)

    message = str(excinfo.value)
    assert "train-labels-idx1-ubyte.gz" in message
    assert "t10k-images-idx3-ubyte.gz" in message
    assert "train-images-idx3-ubyte.gz" not in message
    assert str(tmp_path) in message


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist") as excinfo:
        find_mnist_files(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(excinfo.value)


def test_load_mnist_flattens_labels_and_checks_counts(tmp_path: Path) -> None:
    _make_mnist_folder(tmp_path)

    data = load_mnist(tmp_path)

    assert data["train_images"].shape == (6, 12)
    assert data["train_labels"].shape == (6,)
    assert data["test_images"].shape == (2, 12)
    assert data["test_labels"].shape == (2,)
    np.testing.assert_array_equal(data["test_labels"], _labels(2, seed=13))


def test_load_mnist_rejects_mismatched_label_count(tmp_path: Path) -> None:
    paths = _make_mnist_folder(tmp_path)
    write_idx_gz(paths["train_labels"], _labels(5))

    with pytest.raises(ValueError, match="train set has 6 images but 5 labels"):
        load_mnist(tmp_path)


def test_load_mnist_rejects_mismatched_image_sizes(tmp_path: Path) -> None:
    paths = _make_mnist_folder(tmp_path)
    write_idx_gz(paths["test_images"], _images(2, 5, 5))

    with pytest.raises(ValueError, match="train images have 12 pixels, test images 25"):
        load_mnist(tmp_path)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_loads() -> None:
    # Its load time is a speed claim, measured by bench/trainer.py, not asserted here.
    data = load_mnist(FASHION_MNIST_DIR)
    assert data["train_images"].shape == (60000, 784)
    assert data["test_images"].shape == (10000, 784)
    assert sorted(np.unique(data["train_labels"]).tolist()) == list(range(10))



# -------------------------------------------------------------------- metrics


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("AZUREML_RUN_ID", "RUNYARD_METRICS_FILE", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_metrics_file_gets_one_json_line_per_call(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    metrics = tmp_path / "metrics.jsonl"
    clean_env.setenv("RUNYARD_METRICS_FILE", str(metrics))
    before = dt.datetime.now(dt.UTC)

    logger = get_run_logger()
    logger.log("regularization rate", 0.01)
    # numpy scalars are accepted at run time even though the signature says float/int.
    logger.log("loss", np.float32(0.25), step=3)  # type: ignore[arg-type]
    logger.log("accuracy", np.float64(0.9), step=np.int64(0))  # type: ignore[arg-type]

    assert isinstance(logger, JsonLinesMetricsLogger)
    records = _read_jsonl(metrics)
    assert [(r["name"], r["value"], r["step"]) for r in records] == [
        ("regularization rate", 0.01, None),
        ("loss", 0.25, 3),
        ("accuracy", 0.9, 0),
    ]
    for record in records:
        assert list(record) == ["name", "value", "step", "timestamp"]
        assert isinstance(record["value"], float)
        stamp = dt.datetime.fromisoformat(record["timestamp"])
        assert stamp.utcoffset() == dt.timedelta(0)
        assert before <= stamp <= dt.datetime.now(dt.UTC)
        # Always six fractional digits, even when the microseconds are zero.
        assert len(record["timestamp"].split(".")[1].split("+")[0]) == 6


def test_metrics_file_is_appended_not_truncated(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    metrics = tmp_path / "deep" / "metrics.jsonl"
    clean_env.setenv("RUNYARD_METRICS_FILE", str(metrics))
    metrics.parent.mkdir()
    metrics.write_text('{"name": "earlier", "value": 1.0, "step": null, "timestamp": "x"}\n')

    get_run_logger().log("accuracy", 0.5)
    get_run_logger().log("accuracy", 0.75, step=1)

    assert [r["name"] for r in _read_jsonl(metrics)] == ["earlier", "accuracy", "accuracy"]


def test_metrics_file_lines_are_flushed_immediately(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    metrics = tmp_path / "metrics.jsonl"
    clean_env.setenv("RUNYARD_METRICS_FILE", str(metrics))
    logger = get_run_logger()

    logger.log("a", 1.0, step=1)
    # A tailer opening the file right after the call must see the full line.
    with open(metrics, encoding="utf-8") as fh:
        assert fh.read().endswith("}\n")


@pytest.mark.usefixtures("clean_env")
def test_stdout_is_the_fallback(capsys: pytest.CaptureFixture[str]) -> None:
    logger = get_run_logger()
    logger.log("accuracy", 0.5)
    logger.log("loss", 2, step=7)

    assert isinstance(logger, StdoutMetricsLogger)
    assert capsys.readouterr().out.splitlines() == ["metric accuracy=0.5", "metric loss=2.0 step=7"]


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), np.float32("nan"), "0.5", None, True, np.bool_(False), [1.0], 1j],
)
def test_bad_values_are_rejected(tmp_path: Path, clean_env: pytest.MonkeyPatch, value: Any) -> None:
    metrics = tmp_path / "metrics.jsonl"
    clean_env.setenv("RUNYARD_METRICS_FILE", str(metrics))

    with pytest.raises(ValueError, match="value must be"):
        get_run_logger().log("accuracy", value)
    assert not metrics.exists()


@pytest.mark.parametrize("step", [-1, 1.5, "3", True])
@pytest.mark.usefixtures("clean_env")
def test_bad_steps_are_rejected(step: Any) -> None:
    with pytest.raises(ValueError, match="step must be"):
        get_run_logger().log("accuracy", 0.5, step=step)


@pytest.mark.parametrize("name", ["", "   ", "a\nb", 3])
@pytest.mark.usefixtures("clean_env")
def test_bad_names_are_rejected(name: Any) -> None:
    with pytest.raises(ValueError, match="name must be"):
        get_run_logger().log(name, 0.5)


# ------------------------------------------------------------- azure ml runs


class _FakeRun:
    """Records calls like azureml.core.Run.log(name, value, description='', step=None)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict[str, Any]]] = []

    def log(self, name: str, value: float, **kwargs: Any) -> None:
        self.calls.append((name, value, kwargs))


class _OfflineRun:
    """Mimics azureml's _OfflineRun, whose log() has no `step` parameter."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, str]] = []

    def log(self, name: str, value: float, description: str = "") -> None:
        self.calls.append((name, value, description))


def _install_fake_azureml(monkeypatch: pytest.MonkeyPatch, run: object) -> None:
    core = types.ModuleType("azureml.core")

    class Run:
        @staticmethod
        def get_context() -> object:
            return run

    core.Run = Run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azureml", types.ModuleType("azureml"))
    monkeypatch.setitem(sys.modules, "azureml.core", core)


def test_azureml_run_gets_metrics_with_step(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    run = _FakeRun()
    _install_fake_azureml(clean_env, run)
    clean_env.setenv("AZUREML_RUN_ID", "run-123")
    clean_env.setenv("RUNYARD_METRICS_FILE", str(tmp_path / "metrics.jsonl"))

    logger = get_run_logger()
    logger.log("accuracy", np.float64(0.9))
    logger.log("loss", 0.1, step=4)

    assert isinstance(logger, AzureMLMetricsLogger)
    assert run.calls == [("accuracy", 0.9, {}), ("loss", 0.1, {"step": 4})]
    assert type(run.calls[0][1]) is float
    assert not (tmp_path / "metrics.jsonl").exists()


def test_offline_run_never_gets_a_step() -> None:
    run = _OfflineRun()
    logger = AzureMLMetricsLogger(run)

    logger.log("loss", 0.1, step=4)  # would be a TypeError if step were passed

    assert run.calls == [("loss", 0.1, "")]


def test_offline_context_falls_back_to_metrics_file(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    run = _OfflineRun()
    _install_fake_azureml(clean_env, run)
    clean_env.setenv("AZUREML_RUN_ID", "run-123")
    clean_env.setenv("RUNYARD_METRICS_FILE", str(tmp_path / "metrics.jsonl"))

    get_run_logger().log("accuracy", 0.5, step=2)

    assert run.calls == []
    assert _read_jsonl(tmp_path / "metrics.jsonl")[0]["step"] == 2


def test_run_id_without_azureml_installed_falls_back(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setitem(sys.modules, "azureml.core", None)  # makes the import fail
    clean_env.setenv("AZUREML_RUN_ID", "run-123")
    clean_env.setenv("RUNYARD_METRICS_FILE", str(tmp_path / "metrics.jsonl"))

    assert isinstance(get_run_logger(), JsonLinesMetricsLogger)


def test_azureml_is_not_consulted_without_run_id(clean_env: pytest.MonkeyPatch) -> None:
    run = _FakeRun()
    _install_fake_azureml(clean_env, run)

    get_run_logger().log("accuracy", 0.5)

    assert run.calls == []


class _FakeMlflowClient:
    """MlflowClient.log_metric's keywords; the real client is tested in test_trainer_mlflow.py (.venv-v2)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float, int]] = []

    def log_metric(self, run_id: str, key: str, value: float, timestamp: int | None = None,
                   step: int | None = None) -> None:
        assert isinstance(timestamp, int)
        assert step is not None
        self.calls.append((run_id, key, value, step))


def _install_fake_mlflow(monkeypatch: pytest.MonkeyPatch, client: _FakeMlflowClient) -> None:
    tracking = types.ModuleType("mlflow.tracking")
    tracking.MlflowClient = lambda: client  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))
    monkeypatch.setitem(sys.modules, "mlflow.tracking", tracking)


def test_a_v2_job_logs_through_mlflow_before_azureml(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    # Inside an SDK v2 job the runtime sets MLFLOW_* and AZUREML_RUN_ID; azureml-core may be there too.
    client, run = _FakeMlflowClient(), _FakeRun()
    _install_fake_mlflow(clean_env, client)
    _install_fake_azureml(clean_env, run)
    clean_env.setenv("MLFLOW_TRACKING_URI", "azureml://eastus.api.azureml.ms/mlflow/v1.0/subscriptions/s")
    clean_env.setenv("MLFLOW_RUN_ID", "runyard-job-1")
    clean_env.setenv("AZUREML_RUN_ID", "runyard-job-1")
    clean_env.setenv("RUNYARD_METRICS_FILE", str(tmp_path / "metrics.jsonl"))

    logger = get_run_logger()
    logger.log("loss", 0.9)
    logger.log("loss", 0.5)
    logger.log("accuracy", np.float64(0.97))
    logger.log("loss", 0.3, step=7)
    logger.log("loss", 0.2)

    assert isinstance(logger, MlflowMetricsLogger)
    assert client.calls == [("runyard-job-1", "loss", 0.9, 0), ("runyard-job-1", "loss", 0.5, 1),
                            ("runyard-job-1", "accuracy", 0.97, 0), ("runyard-job-1", "loss", 0.3, 7),
                            ("runyard-job-1", "loss", 0.2, 8)]
    assert run.calls == []
    assert not (tmp_path / "metrics.jsonl").exists()


def test_mlflow_variables_without_mlflow_installed_fall_back(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setitem(sys.modules, "mlflow.tracking", None)  # makes the import fail
    clean_env.setenv("MLFLOW_TRACKING_URI", "file:///nowhere")
    clean_env.setenv("MLFLOW_RUN_ID", "run-123")
    clean_env.setenv("RUNYARD_METRICS_FILE", str(tmp_path / "metrics.jsonl"))

    assert isinstance(get_run_logger(), JsonLinesMetricsLogger)


def test_mlflow_is_not_consulted_without_its_run(clean_env: pytest.MonkeyPatch) -> None:
    client = _FakeMlflowClient()
    _install_fake_mlflow(clean_env, client)
    clean_env.setenv("MLFLOW_TRACKING_URI", "file:///somewhere")  # an operator's setting, not a job's run

    assert isinstance(get_run_logger(), StdoutMetricsLogger)
    assert client.calls == []


def test_utils_imports_only_stdlib_and_numpy() -> None:
    source = Path(utils.__file__).read_text(encoding="utf-8")
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    }
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    assert imported <= allowed, imported - allowed


def test_gzip_writer_output_is_standard_gzip(tmp_path: Path) -> None:
    labels = _labels(100)
    write_idx_gz(tmp_path / "l.gz", labels)
    raw = (tmp_path / "l.gz").read_bytes()

    # Readable by the stdlib and by zlib's own gzip mode, CRC included.
    assert gzip.decompress(raw)[8:] == labels.tobytes()
    assert zlib.decompress(raw, wbits=31)[8:] == labels.tobytes()
    assert os.path.getsize(tmp_path / "l.gz") == len(raw)
