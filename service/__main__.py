"""`python -m service`: serve the API with uvicorn on the configured host and port."""

from __future__ import annotations

import sys

from service.core.settings import InvalidSettings, get_settings
from service.server import serve


def main() -> None:
    try:
        settings = get_settings()
    except InvalidSettings as exc:
        sys.exit(f"runyard: invalid setting: {exc}")
    serve(settings)


if __name__ == "__main__":
    main()
