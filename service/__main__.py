"""`python -m service`: serve the API with uvicorn on the configured host and port."""

from __future__ import annotations

import gc
import sys

# Start-up makes ~170,000 objects that live as long as the process; the collector, running every
# few hundred allocations meanwhile, was ~15% of the time to /readyz. serve() freezes them and
# turns it back on (server.settle_heap).
gc.disable()

from service.core.settings import InvalidSettings, get_settings  # noqa: E402 - after gc.disable()
from service.server import serve  # noqa: E402


def main() -> None:
    try:
        settings = get_settings()
    except InvalidSettings as exc:
        sys.exit(f"runyard: invalid setting: {exc}")
    serve(settings)


if __name__ == "__main__":
    main()
