"""Models the service must not score itself: a custom class, unpickled only in their workers."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A transformer of the model author's own: code the service cannot know."""

    def fit(self, rows: npt.NDArray[np.float64], labels: Any = None) -> Doubler:  # noqa: ARG002 - sklearn's signature
        return self

    def transform(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return rows * 2.0


class ShiftedLogistic(LogisticRegression):  # type: ignore[misc]
    """A LogisticRegression whose predict is not LogisticRegression's: its parameters say nothing of it."""

    def predict(self, rows: npt.NDArray[np.float64]) -> Any:
        return (super().predict(rows) + 1) % 10


def custom_pipeline(images: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]) -> Pipeline:
    return Pipeline([("double", Doubler()), ("classify", LogisticRegression(max_iter=300))]).fit(images, labels)
