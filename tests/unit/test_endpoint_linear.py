"""linear.py: a model's exported parameters give scikit-learn's own answers, bit for bit, or no copy at all."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from service.catalog.offline_data import digits_dataset_arrays
from service.models.endpoints.linear import MAX_FEATURES, LinearModel, export
from tests.support.custom_model import ShiftedLogistic
from trainer.train import build_model

ARRAYS = digits_dataset_arrays()
TRAIN = ARRAYS["train_images"].reshape(len(ARRAYS["train_images"]), -1) / 255.0
LABELS = ARRAYS["train_labels"].reshape(-1)
TEST = ARRAYS["test_images"].reshape(len(ARRAYS["test_images"]), -1) / 255.0

MODELS = {
    "ovr": lambda: build_model("liblinear", 0.5, 100).fit(TRAIN, LABELS),
    "multinomial": lambda: LogisticRegression(max_iter=300).fit(TRAIN, LABELS),
    "binary": lambda: LogisticRegression(max_iter=300).fit(TRAIN, LABELS % 2 == 0),
    "float32": lambda: LogisticRegression(max_iter=300).fit(TRAIN.astype(np.float32), LABELS),
    "string labels": lambda: LogisticRegression(max_iter=300).fit(TRAIN, np.array(list("abcdefghij"))[LABELS]),
}


def _copy(model: Any) -> LinearModel:
    exported = export(model)
    assert exported is not None
    copy = LinearModel.rebuild(*exported, model.classes_.tolist())
    assert copy is not None
    return copy


@pytest.mark.parametrize("kind", list(MODELS))
def test_the_copy_answers_as_scikit_learn_for_every_request_size(kind: str) -> None:
    model = MODELS[kind]()
    copy = _copy(model)
    for size in (1, 2, 5, 13, 64, 100, 128):
        for start in range(0, len(TEST) - size, 97):
            rows = np.ascontiguousarray(TEST[start : start + size])
            answer = copy.score(rows, probabilities=True)
            assert answer["predictions"] == model.predict(rows).tolist(), (kind, size, start)
            assert answer["probabilities"] == model.predict_proba(rows).tolist(), (kind, size, start)
    assert "probabilities" not in copy.score(TEST[:2], probabilities=False)


@pytest.mark.parametrize("kind", ["ovr", "multinomial", "binary"])
def test_overflowing_rows_get_the_same_predictions(kind: str) -> None:
    model = MODELS[kind]()
    rows = np.array([[1.7e308] * 32 + [-1.7e308] * 32, [1.7e308] * 64, [-1e308] * 64, [0.0] * 64])
    with np.errstate(all="ignore"):
        expected = model.predict(rows).tolist()
    assert _copy(model).score(rows, probabilities=False)["predictions"] == expected


@pytest.mark.parametrize(
    "model",
    [DecisionTreeClassifier(max_depth=3).fit(TRAIN, LABELS), ShiftedLogistic(max_iter=300).fit(TRAIN, LABELS)],
    ids=["tree", "subclass"],
)
def test_other_models_export_nothing(model: Any) -> None:
    assert export(model) is None


def test_an_instance_with_its_own_predict_exports_nothing() -> None:
    model = MODELS["multinomial"]()
    model.predict = lambda rows: np.zeros(len(rows))
    assert export(model) is None


def test_numbers_that_do_not_reproduce_the_workers_answers_give_no_copy() -> None:
    model = MODELS["ovr"]()
    exported = export(model)
    assert exported is not None
    header, parameters = exported
    classes = model.classes_.tolist()
    assert LinearModel.rebuild(header, parameters, classes) is not None
    wrong = bytearray(parameters)
    wrong[8:16] = np.float64(3.0).tobytes()  # one coefficient off
    assert LinearModel.rebuild(header, bytes(wrong), classes) is None
    assert LinearModel.rebuild(header, parameters[:-8], classes) is None
    assert LinearModel.rebuild(header, parameters, classes[::-1]) is None
    assert LinearModel.rebuild(header, parameters, None) is None
    huge = {"n_features": MAX_FEATURES + 1, "outputs": 1}  # the worker may lie: no large probe or array here
    assert LinearModel.rebuild({**header, **huge}, bytes(8 * (MAX_FEATURES + 2)), [0, 1]) is None
    for broken in ({"kind": "tree"}, {"outputs": "x"}, {"n_features": 0}, {"probe_probabilities": None}):
        assert LinearModel.rebuild({**header, **broken}, parameters, classes) is None
    del header["kind"]
    assert LinearModel.rebuild(header, parameters, classes) is None
