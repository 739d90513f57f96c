"""A model worker: loads one model file, then answers predict frames on stdin/stdout until EOF.

Run as `python -m service.models.endpoints.worker --model PATH --memory-limit-mb N`. It imports
nothing from the service but the frame format, so a model's import side effects stay in here.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import traceback
from typing import Any, BinaryIO

from service.models.endpoints.linear import export
from service.models.endpoints.protocol import encode, read_frame


def _limit_memory(megabytes: int) -> None:
    # The address-space limit turns a runaway model into a MemoryError in this process only.
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "the model needs more memory than the worker may use (RUNYARD_ENDPOINT_MEMORY_LIMIT_MB)"
    return f"{type(exc).__name__}: {exc}"


def _load(path: str) -> tuple[Any, dict[str, Any]]:
    import joblib  # here, not at import time: the memory limit is set first

    model = joblib.load(path)
    if not callable(getattr(model, "predict", None)):
        raise TypeError(f"{type(model).__name__} has no predict method")
    n_features = getattr(model, "n_features_in_", None)
    classes = getattr(model, "classes_", None)
    info = {
        "kind": type(model).__name__,
        "n_features": None if n_features is None else int(n_features),
        "classes": None if classes is None else classes.tolist(),
        "probabilities": callable(getattr(model, "predict_proba", None)),
        "pid": os.getpid(),
    }
    return model, info


def _predict(model: Any, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    import numpy as np

    rows = np.frombuffer(payload, dtype=np.float64).reshape(int(header["rows"]), int(header["cols"]))
    reply: dict[str, Any] = {"ok": True, "predictions": model.predict(rows).tolist()}
    if header.get("probabilities"):
        reply["probabilities"] = model.predict_proba(rows).tolist()
    return reply


def _hello(model: Any, info: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The load report; for a model the service can score itself (linear.py), its parameters too."""
    try:
        exported = export(model)
    except Exception:  # noqa: BLE001 - any surprise in the model means it is scored here only
        traceback.print_exc()
        exported = None
    if exported is None:
        return {"ok": True, **info}, b""
    header, parameters = exported
    return {"ok": True, **info, "linear": header}, parameters


def serve(model_path: str, memory_limit_mb: int, inbox: BinaryIO, outbox: BinaryIO) -> int:
    """Load the model, report it, then answer frames; the exit code says how it ended."""
    try:
        _limit_memory(memory_limit_mb)
        model, info = _load(model_path)
    except BaseException as exc:  # noqa: BLE001 - every load failure is reported, whatever it is
        traceback.print_exc()
        outbox.write(encode({"ok": False, "error": _describe(exc)}))
        outbox.flush()
        return 2
    hello, parameters = _hello(model, info)
    outbox.write(encode(hello, parameters))
    outbox.flush()
    while (frame := read_frame(inbox)) is not None:
        header, payload = frame
        try:
            reply = _predict(model, header, payload)
        except MemoryError as exc:
            reply = {"ok": False, "error": _describe(exc), "kind": "memory"}
        except Exception as exc:  # noqa: BLE001 - the caller's rows were unusable for this model
            reply = {"ok": False, "error": _describe(exc), "kind": "input"}
        outbox.write(encode(reply))
        outbox.flush()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--memory-limit-mb", type=int, default=0)
    args = parser.parse_args()
    # Frames go out on a private copy of stdout; anything the model prints lands on stderr.
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return serve(args.model, args.memory_limit_mb, sys.stdin.buffer, outbox)


if __name__ == "__main__":
    sys.exit(main())
