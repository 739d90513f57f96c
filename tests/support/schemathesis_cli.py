"""`st` (schemathesis' CLI) with one bug of schemathesis 4.32.5 worked around, for tests/e2e/test_schemathesis.py.

While learning links from responses, schemathesis splits every string of a 2xx body that starts
with `http://` as a URL; `urllib.parse.urlsplit` raises on an unbalanced `[` in the host, and the
whole run stops with "Test Execution Error" (an internal error, not a finding). Values the API
stores as given (a job argument, a tag, a dataset `uri`) can be such strings. Here such a value is
simply not taken as a link, which is what schemathesis does with any other non-URL string.
Run as `python -m tests.support.schemathesis_cli run ...`, exactly like `st run ...`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from schemathesis.cli import schemathesis
from schemathesis.engine import observations

_same_origin_path: Callable[[str, tuple[str, str]], str | None] = observations._same_origin_path


def _tolerant(value: str, origin: tuple[str, str]) -> str | None:
    try:
        return _same_origin_path(value, origin)
    except ValueError:  # "Invalid IPv6 URL": not a URL of this API
        return None


observations._same_origin_path = _tolerant

if __name__ == "__main__":
    sys.exit(schemathesis())
