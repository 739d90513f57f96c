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
