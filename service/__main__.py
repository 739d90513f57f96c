"""`python -m service`: serve the API with uvicorn on the configured host and port."""

from __future__ import annotations

from service.server import serve
from service.settings import get_settings


def main() -> None:
    serve(get_settings())


if __name__ == "__main__":
    main()
