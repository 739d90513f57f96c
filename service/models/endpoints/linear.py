"""Linear classifiers scored inside the service: their parameters as numbers, never their pickle.

A model file is untrusted code, so only its worker unpickles it. For the commonest models (the
tutorial's one-vs-rest logistic regression, a plain LogisticRegression) the worker also exports the
fitted parameters: coefficients and intercepts as float64 bytes, the classes as JSON. The service
rebuilds the arithmetic of scikit-learn's predict/predict_proba from those numbers alone (no
unpickling, no skops, no code from the model) and scores small requests on its own event loop:
no pipe, no second process to wake. scikit-learn's own predict costs ~0.3 ms of input checks per
estimator (narwhals' dataframe sniffing), ten times the arithmetic itself.

The worker also sends the real model's answers on fixed probe rows; the service uses its copy only
if it gives exactly those answers, so a model whose predict was changed in any way stays on its
workers. A worker taken over by its model can send any numbers, but that model's author decides
its predictions anyway: the numbers cannot run code here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

OVR = "ovr"  # OneVsRestClassifier of binary LogisticRegression (the tutorial's model)
LOGISTIC = "logistic"  # LogisticRegression, binary or multinomial
# What a worker's numbers can make the service allocate: 16 MB of probe rows at most (the
# parameters arrive in one frame, at most 64 MiB).
MAX_FEATURES = 16_384
MAX_OUTPUTS = 1_000
PROBE_ROWS = 128  # past RUNYARD_ENDPOINT_INLINE_MAX_ROWS's 100: BLAS may sum differently by size


def probe_rows(n_features: int) -> npt.NDArray[np.float64]:
    """The rows both sides score to check the copy; the same in the worker and the service."""
    import numpy as np

    rng = np.random.default_rng(16)
    rows = rng.standard_normal((PROBE_ROWS, n_features))
    rows[: PROBE_ROWS // 2] = np.abs(rows[: PROBE_ROWS // 2])  # pixel-like, non-negative inputs too
    rows[0] = 0.0
    return rows


def export(model: Any) -> tuple[dict[str, Any], bytes] | None:
    """In the worker: the parameters of a model this module can score, with its probe answers; else None."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    if any(name in vars(model) for name in ("predict", "predict_proba", "decision_function")):
        return None
    if type(model) is LogisticRegression:
        kind, parts = LOGISTIC, [model]
    elif (
        type(model) is OneVsRestClassifier
        and getattr(model.label_binarizer_, "y_type_", None) == "multiclass"
        and not model.multilabel_
        and all(type(e) is LogisticRegression and np.shape(e.coef_)[0] == 1 for e in model.estimators_)
    ):
        kind, parts = OVR, list(model.estimators_)
    else:
        return None
    coef = np.concatenate([np.asarray(p.coef_, dtype=np.float64) for p in parts])
    intercept = np.concatenate([np.ravel(np.asarray(p.intercept_, dtype=np.float64)) for p in parts])
    n_features = coef.shape[1]
    if coef.ndim != 2 or intercept.shape != (coef.shape[0],) or int(model.n_features_in_) != n_features:
        return None
    if n_features > MAX_FEATURES or coef.shape[0] > MAX_OUTPUTS:
        return None
    # lbfgs leaves coef_ in Fortran order: BLAS sums in another order then, so the copy keeps it.
    order: Literal["C", "F"] = "F" if len(parts) == 1 and not parts[0].coef_.flags.c_contiguous else "C"
    probe = probe_rows(n_features)
    header = {
        "kind": kind,
        "n_features": n_features,
        "outputs": coef.shape[0],
        "order": order,
        "probe_predictions": model.predict(probe).tolist(),
        "probe_probabilities": model.predict_proba(probe).tolist(),
    }
    return header, coef.tobytes(order=order) + intercept.tobytes()


@dataclass(frozen=True)
class LinearModel:
    """scikit-learn's arithmetic for one exported model, step for step (the answers are bit-identical)."""

    kind: str
    coef: npt.NDArray[np.float64]  # (outputs, n_features)
    intercept: npt.NDArray[np.float64]  # (outputs,)
    classes: list[Any]
    # Each one-vs-rest estimator's coef_.T, shaped and laid out as scikit-learn multiplies by it.
    columns: list[npt.NDArray[np.float64]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", [self.coef[i : i + 1].T for i in range(self.coef.shape[0])])

    @classmethod
    def rebuild(cls, header: dict[str, Any], payload: bytes, classes: list[Any] | None) -> LinearModel | None:
        """The model a worker exported, if its numbers are well-formed and answer the probes as the worker did."""
        import numpy as np

        try:
            kind, n_features, outputs = str(header["kind"]), int(header["n_features"]), int(header["outputs"])
            if kind not in (OVR, LOGISTIC) or classes is None or not 1 <= n_features <= MAX_FEATURES:
                return None
            if not 1 <= outputs <= MAX_OUTPUTS or len(classes) != (2 if outputs == 1 else outputs):
                return None
            if len(payload) != 8 * outputs * (n_features + 1):
                return None
            order: Literal["C", "F"] = "F" if header.get("order") == "F" else "C"
            values = np.frombuffer(payload, dtype=np.float64)
            model = cls(
                kind,
                values[: outputs * n_features].reshape((outputs, n_features), order=order),
                values[outputs * n_features :].copy(),
                list(classes),
            )
            probe = probe_rows(n_features)
            answer = model.score(probe, probabilities=True)
        except (KeyError, TypeError, ValueError, IndexError, FloatingPointError):
            return None
        if answer != {
            "predictions": header.get("probe_predictions"),
            "probabilities": header.get("probe_probabilities"),
        }:
            return None
        return model

    def score(self, rows: npt.NDArray[np.float64], *, probabilities: bool) -> dict[str, Any]:
        """What the worker would answer for `rows`: {"predictions": [...], "probabilities": [...]?}."""
        import numpy as np

        with np.errstate(all="ignore"):  # overflow gives inf/NaN as in the worker; the route rejects NaN
            if self.kind == OVR:
                indices, proba = self._ovr(rows, probabilities)
            else:
                indices, proba = self._logistic(rows, probabilities)
        classes = self.classes
        result: dict[str, Any] = {"predictions": [classes[i] for i in indices.tolist()]}
        if proba is not None:
            result["probabilities"] = proba.tolist()
        return result

    def _ovr(
        self, rows: npt.NDArray[np.float64], probabilities: bool
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64] | None]:
        import numpy as np
        from scipy.special import expit

        # Estimator by estimator, as scikit-learn multiplies: one product for all classes is another
        # BLAS call that rounds differently (last bits), and the answers must be the worker's.
        scores = np.empty((rows.shape[0], len(self.columns)))
        for i, column in enumerate(self.columns):
            np.matmul(rows, column, out=scores[:, i : i + 1])
        scores += self.intercept
        if np.isfinite(scores).all():
            # Its reversed loop keeps the first of equal maxima, as argmax does.
            argmaxima = scores.argmax(axis=1)
        else:  # its exact steps, NaN included (rows near the float maximum)
            argmaxima = np.zeros(rows.shape[0], dtype=int)
            maxima = np.full(rows.shape[0], -np.inf)
            for i in range(scores.shape[1] - 1, -1, -1):
                np.maximum(maxima, scores[:, i], out=maxima)
                argmaxima[maxima == scores[:, i]] = i
        if not probabilities:
            return argmaxima, None
        # OneVsRestClassifier.predict_proba: each estimator's expit, laid out as its
        # np.array([...]).T (the row sums add in that order), normalised per row.
        proba = expit(scores.T.copy()).T
        row_sums = np.sum(proba, axis=1)[:, np.newaxis]
        np.divide(proba, row_sums, out=proba, where=row_sums != 0)
        return argmaxima, proba

    def _logistic(
        self, rows: npt.NDArray[np.float64], probabilities: bool
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64] | None]:
        import numpy as np
        from scipy.special import expit

        if self.coef.shape[0] == 1:  # binary: the sign of the score; proba is _predict_proba_lr
            # LinearClassifierMixin.decision_function, raveled.
            scores = (rows @ self.coef.T + self.intercept).reshape(-1)
            indices = (scores > 0).astype(np.intp)
            if not probabilities:
                return indices, None
            positive = expit(scores, out=scores)
            return indices, np.stack([1 - positive, positive], axis=1)
        decision = rows @ self.coef.T + self.intercept
        indices = decision.argmax(axis=1)
        if not probabilities:
            return indices, None
        # sklearn.utils.extmath.softmax, in place.
        decision -= decision.max(axis=1).reshape((-1, 1))
        np.exp(decision, out=decision)
        decision /= decision.sum(axis=1).reshape((-1, 1))
        return indices, decision
