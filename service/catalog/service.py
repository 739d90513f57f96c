"""Experiments, environments and datasets: create, find, list, and the built-in ones."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import cast

from sqlalchemy import bindparam, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from service.catalog import offline_data
from service.catalog.schemas import DatasetCreate, EnvironmentCreate
from service.core.clock import utcnow
from service.core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from service.core.settings import Settings
from service.core.suggest import unknown
from service.db.committed import CommittedRows
from service.db.pagination import keyset_page
from service.db.repository import add_numbered, insert_if_absent
from service.db.tables import Dataset, Environment, Experiment

log = logging.getLogger(__name__)

TUTORIAL_ENV = EnvironmentCreate(
    name="tutorial-env",
    python_version="3.11",
    pip_packages=["azureml-dataset-runtime[pandas,fuse]", "azureml-defaults"],
    conda_packages=["scikit-learn==1.9.1"],
)
# The tutorial's data: MNIST from Azure Open Datasets, registered in the workspace on first use.
OPEN_MNIST = DatasetCreate(
    name="mnist_opendataset",
    uri="azureml://opendatasets/mnist",
    description="MNIST from Azure Open Datasets (azureml-opendatasets), for Azure ML targets",
)
_OPEN_DATASETS = "azureml://opendatasets/"
# Experiments are never deleted: every submit names one, and a known one costs no read.
_EXPERIMENTS = CommittedRows("experiment")
# What a submit pins, as statements built once: composing a select costs SQLAlchemy more than
# running it (it caches the compiled SQL, not the statement), and a submit runs one per lookup.
_LATEST_ENVIRONMENT = (select(Environment.version).where(col(Environment.name) == bindparam("name"))
                       .order_by(col(Environment.version).desc()).limit(1))
_ENVIRONMENT_VERSION = select(Environment.version).where(
    col(Environment.name) == bindparam("name"), col(Environment.version) == bindparam("version"))
_LATEST_DATASET = (select(Dataset.version, Dataset.uri).where(col(Dataset.name) == bindparam("name"))
                   .order_by(col(Dataset.version).desc()).limit(1))
_DATASET_VERSION = select(Dataset.version, Dataset.uri).where(
    col(Dataset.name) == bindparam("name"), col(Dataset.version) == bindparam("version"))


def ensure_experiment(session: Session, *, name: str) -> None:
    """Make sure the experiment called `name` exists, created on first use as Azure ML does."""
    if _EXPERIMENTS.knows(session, name):
        return
    if session.get(Experiment, name) is None:
        insert_if_absent(session, Experiment, name=name, created_at=utcnow())
    _EXPERIMENTS.note(session, name)


def create_experiment(session: Session, *, name: str) -> Experiment:
    """A new experiment; an existing name is a 409."""
    if session.get(Experiment, name) is not None:
        raise Conflict(f"experiment {name!r} already exists")
    experiment = Experiment(name=name)
    session.add(experiment)
    try:
        session.flush()
    except IntegrityError as exc:  # created meanwhile by a concurrent request (PostgreSQL)
        raise Conflict(f"experiment {name!r} already exists") from exc
    return experiment


def list_experiments(session: Session, *, limit: int, cursor: str | None) -> tuple[list[Experiment], str | None]:
    return keyset_page(
        session, select(Experiment), [col(Experiment.name)], lambda e: [e.name], limit=limit, cursor=cursor
    )


def create_environment(session: Session, *, spec: EnvironmentCreate) -> Environment:
    """Register `spec` as the next version of its environment."""
    env = add_numbered(
        session,
        latest=lambda: session.exec(select(func.max(Environment.version)).where(Environment.name == spec.name)).one(),
        make=lambda version: Environment(
            name=spec.name,
            version=version,
            python_version=spec.python_version,
            pip_packages=list(spec.pip_packages),
            conda_packages=list(spec.conda_packages),
        ),
    )
    return env


def get_environment(session: Session, *, name: str, version: int | None) -> Environment:
    """A version of an environment (latest when None); missing is a 404."""
    stmt = select(Environment).where(Environment.name == name)
    stmt = stmt.where(Environment.version == version) if version else stmt.order_by(col(Environment.version).desc())
    env = session.exec(stmt.limit(1)).first()
    if env is None:
        raise _missing(session, Environment, name=name, version=version)
    return env


def pinned_environment_version(session: Session, *, name: str, version: int | None) -> int:
    """The version of an environment a job pins: `version`, or the latest when None; 404s as get_environment's."""
    stmt, params = ((_ENVIRONMENT_VERSION, {"name": name, "version": version}) if version
                    else (_LATEST_ENVIRONMENT, {"name": name}))
    found = session.execute(stmt, params).scalar()
    if found is None:
        raise _missing(session, Environment, name=name, version=version)
    return int(found)


def _missing(session: Session, table: type[Environment] | type[Dataset], *, name: str, version: int | None) -> NotFound:
    """The 404 for a version of an environment or dataset: the near names when the name itself is unknown."""
    kind = table.__tablename__
    if version is None:
        return unknown(str(kind), name, session.exec(select(table.name).distinct()))
    return NotFound(f"{kind} {name!r} version {version} does not exist")


def list_environments(session: Session, *, limit: int, cursor: str | None) -> tuple[list[Environment], str | None]:
    return keyset_page(
        session,
        select(Environment),
        [col(Environment.name), col(Environment.version)],
        lambda e: [e.name, e.version],
        limit=limit,
        cursor=cursor,
    )


def create_dataset(session: Session, *, spec: DatasetCreate, settings: Settings) -> Dataset:
    """Register a new version of a dataset from a server folder or a URL.

    The body's form is checked by its schema (an absolute path without `..`, or a URL); what
    depends on this server is answered apart: a folder outside the dataset roots is refused (403),
    one that does not exist (or is not a folder) is not found (404).
    """
    if (spec.path is None) == (spec.uri is None):  # the oneOf of the document, enforced here
        raise InvalidRequest("give exactly one of path (a server folder) or uri")
    path = None
    if spec.path is not None:
        roots = [settings.data_dir, *settings.dataset_roots]
        folder = _inside_roots(spec.path, roots=roots, named=f"path {spec.path!r}")
        try:
            is_folder = folder.is_dir()
        except OSError:  # a name too long for the file system, say: no such folder either way
            is_folder = False
        if not is_folder:
            raise NotFound(f"path {spec.path!r} is not a folder on the server")
        path = str(folder)
    return _add_dataset_version(session, name=spec.name, path=path, uri=spec.uri, description=spec.description)


def _inside_roots(text: str, *, roots: Iterable[Path], named: str) -> Path:
    """`text` resolved (symlinks followed), provided it stays inside one of `roots`; else 403."""
    resolved = [root.resolve() for root in roots]
    try:
        folder = Path(text).expanduser().resolve()
    except (ValueError, OSError, RuntimeError):  # an unknown ~user, a symlink loop: it names nothing we allow
        folder = None
    if folder is None or not any(folder.is_relative_to(root) for root in resolved):
        raise Forbidden(
            f"{named} names a server path outside the dataset roots ({', '.join(map(str, resolved))}); "
            "the operator sets them with RUNYARD_DATASET_ROOTS"
        )
    return folder


def check_server_paths(values: Iterable[object], *, settings: Settings) -> None:
    """Refuse job arguments naming a server path outside the dataset roots (403).

    A local run reads and writes as the service's user: an argument such as `--data-folder /etc`
    would point a script at files the caller has no business with. Absolute paths inside the
    datasets folder or `RUNYARD_DATASET_ROOTS` are fine. (A `..` segment is refused by the
    arguments' schema already: jobs/schemas.no_parent_segment.)
    """
    roots = [settings.datasets_dir, *settings.dataset_roots]
    for value in values:
        if not isinstance(value, str):
            continue
        for text in {value, value.split("=", 1)[-1]}:
            if text.startswith(("/", "~")):
                _inside_roots(text, roots=roots, named=f"argument {value!r}")


def _add_dataset_version(
    session: Session, *, name: str, path: str | None, uri: str | None, description: str
) -> Dataset:
    dataset = add_numbered(
        session,
        latest=lambda: session.exec(select(func.max(Dataset.version)).where(Dataset.name == name)).one(),
        make=lambda version: Dataset(name=name, version=version, path=path, uri=uri, description=description),
    )
    return dataset


def get_dataset(session: Session, *, name: str, version: int | None) -> Dataset:
    """A version of a dataset (latest when None); missing is a 404."""
    stmt = select(Dataset).where(Dataset.name == name)
    stmt = stmt.where(Dataset.version == version) if version else stmt.order_by(col(Dataset.version).desc())
    dataset = session.exec(stmt.limit(1)).first()
    if dataset is None:
        raise _missing(session, Dataset, name=name, version=version)
    return dataset


def pinned_dataset_version(session: Session, *, name: str, version: int | None) -> int:
    """The version of a dataset a job pins (`version`, or the latest when None), once known usable here.

    404s as get_dataset's; an Azure Open Dataset without azureml-opendatasets installed is a 422.
    """
    stmt = _DATASET_VERSION if version else _LATEST_DATASET
    row = session.execute(stmt, {"name": name, "version": version} if version else {"name": name}).first()
    if row is None:
        raise _missing(session, Dataset, name=name, version=version)
    found, uri = cast("tuple[int, str | None]", tuple(row))
    if uri is not None and uri.startswith(_OPEN_DATASETS) and not opendatasets_installed():
        raise InvalidRequest(f"dataset {name!r} comes from Azure Open Datasets, and azureml-opendatasets "
                             "is not installed with this service: pip install 'runyard[azure]'")
    return int(found)


def opendatasets_installed() -> bool:
    try:
        metadata.version("azureml-opendatasets")
    except metadata.PackageNotFoundError:
        return False
    return True


def list_datasets(session: Session, *, limit: int, cursor: str | None) -> tuple[list[Dataset], str | None]:
    return keyset_page(
        session,
        select(Dataset),
        [col(Dataset.name), col(Dataset.version)],
        lambda d: [d.name, d.version],
        limit=limit,
        cursor=cursor,
    )


def seed_defaults(session: Session, *, settings: Settings) -> None:
    """Create what exists from the start: tutorial-env, and the offline datasets."""
    try:
        if session.exec(select(Environment).where(Environment.name == TUTORIAL_ENV.name)).first() is None:
            create_environment(session, spec=TUTORIAL_ENV)
        digits = settings.datasets_dir / "digits" / "1"
        offline_data.write_digits_dataset(digits)
        if session.exec(select(Dataset).where(Dataset.name == "digits")).first() is None:
            _add_dataset_version(
                session,
                name="digits",
                path=str(digits),
                uri=None,
                description="scikit-learn's handwritten digits as MNIST-style IDX files",
            )
        if session.exec(select(Dataset).where(Dataset.name == OPEN_MNIST.name)).first() is None:
            _add_dataset_version(session, name=OPEN_MNIST.name, path=None, uri=OPEN_MNIST.uri,
                                 description=OPEN_MNIST.description)
        fashion = offline_data.FASHION_MNIST_DIR
        if offline_data.fashion_mnist_available(fashion) and (
            session.exec(select(Dataset).where(Dataset.name == "fashion-mnist")).first() is None
        ):
            _add_dataset_version(
                session,
                name="fashion-mnist",
                path=str(fashion),
                uri=None,
                description="Fashion-MNIST from Debian's dataset-fashion-mnist",
            )
    except IntegrityError:
        # Another process seeded at the same moment; what it wrote is what we wanted.
        session.rollback()
