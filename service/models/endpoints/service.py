"""Endpoint use cases on the database: create, read, list, move to a version, delete."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from sqlmodel import Session, col, select

from service.backends.base import EnvironmentSpec, ServeRequest
from service.catalog import service as catalog
from service.core.checksums import tree_sha256
from service.core.errors import Conflict, InvalidRequest, NotFound
from service.db.pagination import keyset_page
from service.db.tables import Endpoint, Job, ModelVersion
from service.models import service as registry
from service.models.endpoints.lifecycle import EndpointStatus, set_status
from service.models.endpoints.schemas import EndpointCreate, Version

LOCAL = "local"
MODEL_SUFFIXES = (".pkl", ".joblib", ".pickle", ".sav")


def model_version(session: Session, *, model: str, version: Version | str) -> ModelVersion:
    return registry.get_version(session, name=model, version=str(version))


def model_file(model: ModelVersion) -> Path:
    """The registered copy of the model file the local target loads, checked against its recorded sha256."""
    folder = Path(model.location)
    if not folder.is_dir():
        raise InvalidRequest(
            f"model {model.name!r} version {model.version} is stored at {model.location!r}, "
            "which is not a folder on this machine; deploy it to the compute it was registered on"
        )
    path = folder / PurePosixPath(model.model_path).name
    if model.sha256 is not None and path.exists() and tree_sha256(path) != model.sha256:
        raise Conflict(
            f"model {model.name!r} version {model.version} no longer matches the sha256 recorded when it was "
            "registered: its stored copy was changed, so it is not served"
        )
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MODEL_SUFFIXES)
        if len(found) != 1:
            raise InvalidRequest(
                f"model {model.name!r} version {model.version} is a folder with {len(found)} model files "
                f"({', '.join(MODEL_SUFFIXES)}); it needs exactly one"
            )
        return found[0]
    if not path.is_file():
        raise InvalidRequest(f"model {model.name!r} version {model.version} has no file at {path}")
    return path


def serve_request(
    session: Session, *, endpoint: str, target: str, model: ModelVersion, service: str, source_dir: Path
) -> ServeRequest:
    """What a backend needs to serve `model` on `target`: the model's id there and its job's environment."""
    if Path(model.location).is_dir():
        raise InvalidRequest(
            f"model {model.name!r} version {model.version} was registered on this machine; "
            f"{target!r} serves models registered on its Azure ML workspace (or use compute 'local')"
        )
    job = session.get(Job, model.job_id) if model.job_id else None
    if job is None:
        raise InvalidRequest(f"model {model.name!r} version {model.version} has no job, so no environment to serve in")
    env = catalog.get_environment(session, name=job.environment, version=job.environment_version)
    return ServeRequest(
        target=target, service=service, endpoint=endpoint, model_name=model.name, model_location=model.location,
        model_file=PurePosixPath(model.model_path).name,
        environment=EnvironmentSpec(name=env.name, version=env.version, python_version=env.python_version,
                                    pip_packages=tuple(env.pip_packages), conda_packages=tuple(env.conda_packages)),
        source_dir=source_dir,
    )


def check_compute(compute: str, remote_targets: list[str]) -> None:
    """`local`, or an inference target a backend deploys to; another name is a 404 naming them (which
    targets exist is the server's configuration, not something the request's schema can say)."""
    if compute != LOCAL and compute not in remote_targets:
        known = ", ".join(["local", *remote_targets])
        raise NotFound(f"compute {compute!r} cannot serve endpoints; use one of: {known}")


def create(session: Session, *, spec: EndpointCreate, model: ModelVersion, max_replicas: int) -> Endpoint:
    if spec.replicas > max_replicas:
        raise InvalidRequest(f"replicas must be at most {max_replicas} (RUNYARD_ENDPOINT_MAX_REPLICAS)")
    if session.get(Endpoint, spec.name) is not None:
        raise Conflict(f"endpoint {spec.name!r} already exists")
    endpoint = Endpoint(
        name=spec.name,
        model_name=model.name,
        model_version=model.version,
        compute=spec.compute,
        replicas=spec.replicas,
        status=EndpointStatus.CREATING.value,
    )
    session.add(endpoint)
    session.commit()
    return endpoint


def get(session: Session, *, name: str) -> Endpoint:
    endpoint = session.get(Endpoint, name)
    if endpoint is None:
        raise NotFound(f"endpoint {name!r} does not exist")
    return endpoint


def list_endpoints(session: Session, *, limit: int, cursor: str | None) -> tuple[list[Endpoint], str | None]:
    return keyset_page(session, select(Endpoint), [col(Endpoint.name)], lambda e: [e.name], limit=limit, cursor=cursor)


def to_serve(session: Session) -> list[Endpoint]:
    """Endpoints the service brings up at start, each marked `creating` meanwhile."""
    rows = list(session.exec(select(Endpoint).where(col(Endpoint.status) != EndpointStatus.FAILED.value)).all())
    for endpoint in rows:
        set_status(session, endpoint, EndpointStatus.CREATING)
    session.commit()
    return rows


def mark(session: Session, *, name: str, status: EndpointStatus, error: str | None = None) -> bool:
    """Record a deployment outcome; False when the endpoint was deleted meanwhile."""
    endpoint = session.get(Endpoint, name)
    if endpoint is None:
        return False
    set_status(session, endpoint, status, error=error)
    session.commit()
    return True


def set_pending(session: Session, *, name: str, version: int | None) -> bool:
    """Record the version a switch moves to (None: no switch); False when the endpoint was deleted meanwhile."""
    endpoint = session.get(Endpoint, name)
    if endpoint is None:
        return False
    endpoint.pending_version = version
    session.add(endpoint)
    session.commit()
    return True


def set_version(session: Session, *, name: str, version: int) -> Endpoint:
    endpoint = get(session, name=name)
    endpoint.model_version, endpoint.pending_version = version, None
    set_status(session, endpoint, EndpointStatus(endpoint.status))  # stamps updated_at
    session.commit()
    return endpoint


def delete(session: Session, *, name: str) -> None:
    session.delete(get(session, name=name))
    session.commit()
