""""Did you mean": what a not-found problem says about the names that do exist."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from service.core.errors import NotFound

LIST_AT_MOST = 10  # longer lists are not spelled out, only the near matches


def unknown(kind: str, name: str, known: Iterable[str], *, where: str = "") -> NotFound:
    """A 404 for `kind name` whose detail suggests the near matches and, when short, lists what exists.

    The problem also carries them as `did_you_mean` and `known` for clients that want them apart.
    """
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    detail = f"{kind} {name!r} does not exist{where}"
    if close:
        detail += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    if names and len(names) <= LIST_AT_MOST:
        detail += f" (known: {', '.join(names)})"
    elif not names:
        detail += f" (no {kind}s yet)"
    extra: dict[str, object] = {"did_you_mean": close}
    if len(names) <= LIST_AT_MOST:
        extra["known"] = names
    return NotFound(detail, **extra)
