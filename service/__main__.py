"""`python -m service`: serve the API with uvicorn on the configured host and port."""

from __future__ import annotations

from service.core.settings import get_settings
from service.server import serve


def main() -> None:
    serve(get_settings())


if __name__ == "__main__":
    main()
