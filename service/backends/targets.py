"""Which backend serves which compute target."""

from __future__ import annotations

from collections.abc import Iterable

from service.backends.base import Backend, Serves
from service.core.suggest import unknown


class Backends:
    """Compute target name -> the backend that runs jobs there."""

    def __init__(self, backends: Iterable[Backend]) -> None:
        self._unique = list(backends)
        self._by_target: dict[str, Backend] = {}
        self._serving: dict[str, Serves] = {}
        for backend in self._unique:
            for target in backend.targets():
                self._by_target[target] = backend
            if isinstance(backend, Serves):
                for target in backend.serving_targets():
                    self._serving[target] = backend

    def for_target(self, target: str) -> Backend:
        """The backend of `target`; an unknown target is a 404."""
        try:
            return self._by_target[target]
        except KeyError:
            raise unknown("compute target", target, self._by_target) from None

    def targets(self) -> list[str]:
        return list(self._by_target)

    def unique(self) -> list[Backend]:
        return list(self._unique)

    def for_serving(self, target: str) -> Serves:
        """The backend that deploys endpoints to inference target `target`; an unknown one is a 404."""
        try:
            return self._serving[target]
        except KeyError:
            raise unknown("inference target", target, self._serving) from None

    def serving_targets(self) -> list[str]:
        return list(self._serving)
