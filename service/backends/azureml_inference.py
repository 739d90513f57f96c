"""What serving on Azure ML is, whichever SDK deploys: the inference targets an operator named,
the environment check Azure's inference server needs, and a failure's reason with the log tail.

`azureml_serving.py` (v1 web services) and `azureml_v2_serving.py` (v2 online deployments)
derive from `InferenceTargets`; no SDK is imported here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Literal

from service.backends.base import ServeRequest
from service.core.errors import BackendError
from service.core.settings import AzureInferenceSpec

log = logging.getLogger(__name__)

# The inference server an image runs score.py with comes with one of these (the tutorial's env lists the first).
INFERENCE_PACKAGES = ("azureml-defaults", "azureml-inference-server-http")
LOG_TAIL_LINES = 3
REASON_CHARS = 2000


class InferenceTargets:
    """The inference targets of one workspace, by name, and the checks every deploy makes."""

    sdk_label: Literal["v1", "v2"]

    def __init__(self, targets: Sequence[AzureInferenceSpec]) -> None:
        self.targets = {t.name: t for t in targets}

    def serving_targets(self) -> list[str]:
        return list(self.targets)

    def _spec(self, target: str) -> AzureInferenceSpec:
        spec = self.targets.get(target)
        if spec is None:
            raise BackendError(f"{target!r} is not an inference target of the Azure ML ({self.sdk_label}) workspace",
                               transient=False)
        return spec

    def _check_deployable(self, request: ServeRequest, model_id: re.Pattern[str]) -> re.Match[str]:
        """The model's id in this workspace, once the environment is known to serve (else a definitive error)."""
        packages = {re.split(r"[<>=!~\[ ]", p, maxsplit=1)[0].lower() for p in request.environment.pip_packages}
        if not packages & set(INFERENCE_PACKAGES):
            raise BackendError(
                f"environment {request.environment.name} v{request.environment.version} has neither of "
                f"{', '.join(INFERENCE_PACKAGES)}: Azure's inference server cannot run score.py without one",
                transient=False)
        found = model_id.match(request.model_location)
        if found is None:
            raise BackendError(f"model {request.model_name} is stored at {request.model_location!r}, not in an "
                               f"Azure ML workspace (SDK {self.sdk_label}): deploy it to the compute it was "
                               "registered on", transient=False)
        return found


def with_log_tail(text: str, what: str, read_log: Callable[[], object]) -> str:
    """`text` and the last lines of the service's log (score.py's init() traceback), if it can be read."""
    try:
        logs = str(read_log() or "")
    except BackendError as exc:
        log.info("log of %s unreadable: %s", what, exc.message)
        logs = ""
    tail = [line.strip() for line in logs.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    return (text + (" | log: " + " / ".join(tail) if tail else ""))[:REASON_CHARS]
