# runyard in a container: the API plus the `local` compute target (runs execute inside the container).
#   docker build -t runyard .            (or `docker compose build`, see docker-compose.yml)
# Pinned by digest: a rebuild gets the same base, not whatever the tag points at that day.
# Refresh it deliberately: docker buildx imagetools inspect python:3.11-slim
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini is PID 1: the local target starts each run in a session of its own, and an orphaned
# runner must still be reaped and receive the stop signal.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --user-group runyard
WORKDIR /app

# Dependencies first (this layer is reused while only the code changes). `postgres` adds the
# driver for RUNYARD_DATABASE_URL=postgresql+psycopg://...; build with EXTRAS="" to leave it out.
ARG EXTRAS=postgres
COPY pyproject.toml README.md ./
COPY service/__init__.py service/
COPY trainer/__init__.py trainer/
RUN pip install ".${EXTRAS:+[$EXTRAS]}"

# The code. Installed in place: migrations/ and alembic.ini are found next to service/.
COPY alembic.ini ./
COPY migrations/ migrations/
COPY trainer/ trainer/
COPY service/ service/
RUN pip install --no-deps -e . \
    && mkdir -p /data \
    && chown runyard:runyard /data

# Listening on all interfaces needs RUNYARD_API_KEYS (without, the service refuses to start).
ENV RUNYARD_HOST=0.0.0.0 \
    RUNYARD_PORT=8000 \
    RUNYARD_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000
USER runyard

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RUNYARD_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "service"]
