"""Dockerfile and docker-compose.yml, checked without a Docker engine: they agree with the code."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from service.app import create_app
from service.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
README_TEXT = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def instructions(dockerfile: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in dockerfile if instruction == name]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def healthcheck_path(command: str) -> str:
    url = re.search(r"https?://[^'\"\s]+", command)
    assert url, f"no URL in healthcheck {command!r}"
    return urlparse(url.group(0).replace("%s", "8000")).path


def app_paths() -> set[str]:
    """The paths the app serves, as its OpenAPI description lists them."""
    return set(create_app(DEFAULTS).openapi()["paths"])


def test_compose_builds_the_dockerfile_of_this_repo(compose: dict[str, Any]) -> None:
    build = compose["services"]["runyard"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_port_host_and_data_dir_match_the_settings(compose: dict[str, Any], dockerfile: list[tuple[str, str]]) -> None:
    service = compose["services"]["runyard"]
    env = env_of(service)
    published = [str(p).rsplit(":", 1)[-1] for p in service["ports"]]
    # Published on loopback unless the operator names another address.
    assert [str(p).split("}", 1)[0] for p in service["ports"]] == ["${PUBLISH_ADDRESS:-127.0.0.1"]
    assert published == [env["RUNYARD_PORT"]] == [str(DEFAULTS.port)]
    assert instructions(dockerfile, "EXPOSE") == [str(DEFAULTS.port)]
    assert env["RUNYARD_HOST"] == "0.0.0.0"
    # The data dir (database, runs, models) is the mounted named volume, in compose and image alike.
    volume, target = service["volumes"][0].split(":")[:2]
    assert target == env["RUNYARD_DATA_DIR"] == "/data"
    assert volume in compose["volumes"]
    assert "RUNYARD_DATA_DIR=/data" in " ".join(instructions(dockerfile, "ENV"))
    assert instructions(dockerfile, "VOLUME") == ['["/data"]']


def test_every_runyard_variable_in_compose_is_a_setting(compose: dict[str, Any]) -> None:
    known = {f"RUNYARD_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        unknown = {k for k in env_of(service) if k.startswith("RUNYARD_")} - known
        assert not unknown, f"{name} sets {unknown}, which no setting reads"


def test_keys_are_required_when_listening_on_all_interfaces(compose: dict[str, Any]) -> None:
    assert env_of(compose["services"]["runyard"])["RUNYARD_API_KEYS"].startswith("${RUNYARD_API_KEYS:?")


def test_healthchecks_probe_a_route_the_app_serves(compose: dict[str, Any],
                                                   dockerfile: list[tuple[str, str]]) -> None:
    paths = app_paths()
    compose_check = " ".join(compose["services"]["runyard"]["healthcheck"]["test"])
    (image_check,) = instructions(dockerfile, "HEALTHCHECK")
    for command in (compose_check, image_check):
        assert healthcheck_path(command) == "/healthz"
    assert "/healthz" in paths


def test_the_image_runs_as_a_user_under_an_init(dockerfile: list[tuple[str, str]]) -> None:
    (base,) = instructions(dockerfile, "FROM")
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", base), "pin the base image by digest"
    (user,) = instructions(dockerfile, "USER")
    assert user not in {"root", "0"}
    assert "tini" in instructions(dockerfile, "ENTRYPOINT")[0]
    assert instructions(dockerfile, "CMD") == ['["python", "-m", "service"]']


def test_every_file_the_image_copies_exists_and_is_not_ignored(dockerfile: list[tuple[str, str]]) -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".runyard"} <= ignored
    for args in instructions(dockerfile, "COPY"):
        *sources, _ = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/").split("/")[0] not in ignored, f"{source} is in .dockerignore"


def test_the_postgres_profile_is_wired(compose: dict[str, Any], dockerfile: list[tuple[str, str]]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["profiles"] == ["postgres"]
    runyard = compose["services"]["runyard"]
    assert runyard["depends_on"]["postgres"] == {"condition": "service_healthy", "required": False}
    # The URL the header comment gives points at this service, with its user and database.
    url = re.search(r"postgresql\+psycopg://\S+", (ROOT / "docker-compose.yml").read_text())
    assert url
    parsed = urlparse(url.group(0))
    env = postgres["environment"]
    assert (parsed.hostname, parsed.username, parsed.path.lstrip("/")) == ("postgres", env["POSTGRES_USER"],
                                                                           env["POSTGRES_DB"])
    # The driver that URL needs is an extra the image installs by default.
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("psycopg[binary]") for dep in extras["postgres"])
    assert "EXTRAS=postgres" in instructions(dockerfile, "ARG")


def test_postgres_is_pinned_and_has_no_default_password(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert re.fullmatch(r"postgres:17@sha256:[0-9a-f]{64}", postgres["image"])
    password = postgres["environment"]["POSTGRES_PASSWORD"]
    # Only `${POSTGRES_PASSWORD}` with an empty default: the image then refuses to initialise.
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD(:-)?\}", password), password
    assert "runyard:runyard@" not in (ROOT / "docker-compose.yml").read_text() + README_TEXT


def test_an_empty_database_url_means_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="")
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve() / 'runyard.db'}"


def replicas_of(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run runyard's image."""
    image = compose["services"]["runyard"]["image"]
    return {name: s for name, s in compose["services"].items() if s.get("image") == image}


def balancer_conf() -> str:
    return (ROOT / "deploy" / "balancer.conf").read_text()


def test_the_postgres_profile_runs_two_replicas_sharing_database_data_and_host(compose: dict[str, Any]) -> None:
    replicas = replicas_of(compose)
    assert sorted(replicas) == ["runyard", "runyard-b"]
    assert replicas["runyard-b"]["profiles"] == ["postgres"]  # SQLite is for one process
    assert replicas["runyard-b"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    envs = {name: env_of(s) for name, s in replicas.items()}
    assert len({e["RUNYARD_REPLICA_ID"] for e in envs.values()}) == 2, "each replica needs its own id"
    # One Docker host and one data volume: one host id, so each serves and adopts the other's local runs.
    for key in ("RUNYARD_HOST_ID", "RUNYARD_DATABASE_URL", "RUNYARD_DATA_DIR", "RUNYARD_PORT", "RUNYARD_API_KEYS"):
        assert len({e[key] for e in envs.values()}) == 1, key
    assert {s["volumes"][0] for s in replicas.values()} == {"runyard-data:/data"}
    assert all(s["build"] == replicas["runyard"]["build"] for s in replicas.values())


def test_one_published_port_balances_the_two_replicas(compose: dict[str, Any]) -> None:
    balancer = compose["services"]["balancer"]
    assert balancer["profiles"] == ["postgres"]
    assert re.fullmatch(r"nginx:[0-9.]+-alpine@sha256:[0-9a-f]{64}", balancer["image"]), "pin the image by digest"
    (published,) = balancer["ports"]
    address, host_port, container_port = published.rsplit(":", 2)
    assert address == "${PUBLISH_ADDRESS:-127.0.0.1}"  # loopback unless the operator says otherwise
    source, target, mode = balancer["volumes"][0].split(":")
    assert (ROOT / source).resolve() == ROOT / "deploy" / "balancer.conf"
    assert (target, mode) == ("/etc/nginx/conf.d/default.conf", "ro")
    conf = balancer_conf()
    assert re.search(rf"^\s*listen {container_port};", conf, re.M)
    replicas = replicas_of(compose)
    servers = re.findall(r"^\s*server ([\w-]+):(\d+)\b", conf, re.M)
    assert sorted(servers) == sorted((name, env_of(s)["RUNYARD_PORT"]) for name, s in replicas.items())
    assert {name: dep["condition"] for name, dep in balancer["depends_on"].items()} == dict.fromkeys(
        replicas, "service_healthy")
    assert healthcheck_path(" ".join(balancer["healthcheck"]["test"])) == "/healthz"
    assert host_port != "8000", "the balancer's port must not clash with the first replica's"
    assert f"{host_port}/docs" in README_TEXT


def test_the_balancer_passes_what_runyard_answers(compose: dict[str, Any]) -> None:  # noqa: ARG001
    conf = balancer_conf()
    # Bodies up to runyard's own limit reach it (it answers 413 itself, as problem+json).
    size = re.search(r"client_max_body_size (\d+)m;", conf)
    assert size
    assert int(size.group(1)) * 1_048_576 > DEFAULTS.max_body_bytes
    # Live logs are server-sent events: unbuffered, and no read timeout shorter than a heartbeat.
    assert re.search(r"proxy_buffering off;", conf)
    timeout = re.search(r"proxy_read_timeout (\d+)([smh]);", conf)
    assert timeout
    seconds = int(timeout.group(1)) * {"s": 1, "m": 60, "h": 3600}[timeout.group(2)]
    assert seconds > DEFAULTS.log_follow_heartbeat_seconds
    # Retries on another replica only for what nginx may repeat (never a POST: it keeps that default).
    assert "non_idempotent" not in conf
