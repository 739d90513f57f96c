"""Judge a model version on a dataset's test split, as the tutorial's part 2 does: accuracy and
the confusion matrix, computed by a worker process (never by the service) and kept with the version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.core.clock import utcnow
from service.core.errors import InvalidRequest
from service.core.settings import Settings
from service.models.endpoints.worker_client import Worker, WorkerFailed, WorkerSpec
from trainer.utils import load_mnist

# The tutorial's train.py divides pixels by 255; its models expect that scale.
PIXEL_SCALE = 255.0


@dataclass(frozen=True)
class TestSplit:
    images: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]


def load_test_split(folder: str | None, dataset: str) -> TestSplit:
    """The dataset's test images (scaled like the tutorial) and labels; unusable data is a 422."""
    if folder is None:
        raise InvalidRequest(f"dataset {dataset!r} has no folder on this machine to evaluate on")
    try:
        arrays = load_mnist(folder)
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"dataset {dataset!r} has no usable MNIST-format test split: {exc}") from exc
    return TestSplit(arrays["test_images"] / PIXEL_SCALE, arrays["test_labels"].astype(np.int64))


async def predict_all(settings: Settings, model_path: Path, split: TestSplit, log_path: Path) -> list[Any]:
    """Predictions for every test image from a worker started for the purpose."""
    spec = WorkerSpec(
        model_path=model_path,
        memory_limit_mb=settings.endpoint_memory_limit_mb,
        load_timeout_seconds=settings.endpoint_load_timeout_seconds,
        log_path=log_path,
    )
    try:
        worker = await Worker.start(spec)
    except WorkerFailed as exc:
        raise InvalidRequest(exc.reason) from exc
    try:
        expected = worker.info.n_features
        if expected is not None and expected != split.images.shape[1]:
            raise InvalidRequest(
                f"the test images have {split.images.shape[1]} values each; the model expects {expected}"
            )
        predictions: list[Any] = []
        step = settings.endpoint_batch_max_rows
        for start in range(0, len(split.images), step):
            rows = np.ascontiguousarray(split.images[start : start + step], dtype=np.float64)
            header = {"op": "predict", "rows": rows.shape[0], "cols": rows.shape[1]}
            try:
                reply = await worker.call(header, rows.tobytes(), settings.endpoint_predict_timeout_seconds)
            except WorkerFailed as exc:
                raise InvalidRequest(exc.reason) from exc
            if not reply.get("ok"):
                raise InvalidRequest(f"the model could not score the test split: {reply.get('error')}")
            predictions += reply["predictions"]
        return predictions
    finally:
        await worker.stop()


def summarize(split: TestSplit, predictions: list[Any], *, dataset: str, dataset_version: int) -> dict[str, Any]:
    """Accuracy and the confusion matrix (rows: true label, columns: predicted), over every label seen."""
    predicted = np.asarray(predictions)
    if predicted.dtype.kind not in "iuf":
        raise InvalidRequest("the model predicts non-numeric labels; the test split's labels are numbers")
    predicted = predicted.astype(np.int64)
    labels = np.union1d(split.labels, predicted)
    index = {int(label): i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, ([index[int(t)] for t in split.labels], [index[int(p)] for p in predicted]), 1)
    return {
        "dataset": dataset,
        "dataset_version": dataset_version,
        "split": "test",
        "samples": len(split.labels),
        "accuracy": float(np.average(predicted == split.labels)),
        "labels": labels.tolist(),
        "confusion_matrix": matrix.tolist(),
        "evaluated_at": utcnow().isoformat(),
    }
