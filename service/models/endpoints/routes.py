"""Routes of endpoints: deploy a model version, read, move, delete, and score."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter, ValidationError

from service.api.deps import Cursor, Limit, RuntimeDep, SessionDep, VersionRef
from service.api.docs import ERRORS
from service.api.problems import problem
from service.catalog import service as catalog
from service.core.errors import NotFound
from service.core.schemas import Page
from service.db.tables import Endpoint, ModelVersion
from service.models.endpoints import service as endpoints
from service.models.endpoints.batcher import ModelRejected
from service.models.endpoints.deployments import Deployments, NotServing
from service.models.endpoints.remote import ForwardFailed
from service.models.endpoints.schemas import (
    EndpointCreate,
    EndpointPublic,
    EndpointUpdate,
    EvaluateRequest,
    ScoreRequest,
    ScoreResponse,
    WorkerPublic,
)
from service.models.endpoints.worker_client import WorkerFailed
from service.models.schemas import ModelVersionPublic

if TYPE_CHECKING:
    from service.models.endpoints import evaluation
    from service.runtime import Runtime

router = APIRouter(tags=["endpoints"])
_score_body = TypeAdapter(ScoreRequest)
RETRY_AFTER_SECONDS = "1"


async def get_deployments(request: Request) -> Deployments:
    deployments: Deployments = request.app.state.endpoints
    return deployments


DeploymentsDep = Annotated[Deployments, Depends(get_deployments)]


def _public(endpoint: Endpoint, deployments: Deployments) -> EndpointPublic:
    remote = deployments.remote.get(endpoint.name)
    if remote is not None:
        return EndpointPublic(
            name=endpoint.name, model=endpoint.model_name, version=endpoint.model_version, compute=endpoint.compute,
            replicas=endpoint.replicas, status=endpoint.status, error=endpoint.error,
            scoring_uri=f"/v1/endpoints/{endpoint.name}/score", service=remote.service,
            backend_state=remote.backend_state,
            pending_version=remote.pending_version if remote.pending_version is not None
            else endpoint.pending_version,  # stored: a restart takes the switch up once the endpoint is ready
            switch_error=remote.switch_error, created_at=endpoint.created_at, updated_at=endpoint.updated_at,
        )
    live = deployments.get(endpoint.name)
    pool = live.pool if live else None
    workers = [WorkerPublic(**w) for w in pool.memory()] if pool else []
    return EndpointPublic(
        name=endpoint.name,
        model=endpoint.model_name,
        version=endpoint.model_version,
        compute=endpoint.compute,
        replicas=endpoint.replicas,
        status=endpoint.status,
        error=endpoint.error,
        scoring_uri=f"/v1/endpoints/{endpoint.name}/score",
        n_features=pool.info.n_features if pool else None,
        workers=workers,
        memory_bytes=sum(w.rss_bytes or 0 for w in workers) if workers else None,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


@router.post(
    "/v1/endpoints",
    status_code=status.HTTP_201_CREATED,
    summary="Deploy a model version (status `creating`, then `ready` or `failed`)",
    responses=ERRORS(404, 409, 422),
)
async def create_endpoint(
    spec: EndpointCreate, response: Response, runtime: RuntimeDep, deployments: DeploymentsDep
) -> EndpointPublic:
    remote = spec.compute != endpoints.LOCAL

    def create() -> tuple[Endpoint, Any]:
        endpoints.check_compute(spec.compute, runtime.backends.serving_targets())
        with runtime.db.write_session() as session:
            model = endpoints.model_version(session, model=spec.model, version=spec.version)
            if remote:
                backend = runtime.backends.for_serving(spec.compute)
                what: Any = (backend, deployments.serve_request(session, spec.name, spec.compute, model))
            else:
                what = endpoints.model_file(model)
            row = endpoints.create(session, spec=spec, model=model, max_replicas=runtime.settings.endpoint_max_replicas)
            return row, what

    row, what = await run_in_threadpool(create)
    # The backend is called after the commit, from the endpoint's own task.
    if remote:
        backend, request = what
        deployments.remote.launch(request, backend, model=row.model_name, version=row.model_version)
    else:
        deployments.launch(row.name, row.model_name, row.model_version, what, row.replicas)
    response.headers["Location"] = f"/v1/endpoints/{row.name}"
    return _public(row, deployments)


@router.get("/v1/endpoints", summary="List endpoints")
def list_endpoints(
    session: SessionDep, deployments: DeploymentsDep, limit: Limit = 100, cursor: Cursor = None
) -> Page[EndpointPublic]:
    items, next_cursor = endpoints.list_endpoints(session, limit=limit, cursor=cursor)
    return Page(items=[_public(e, deployments) for e in items], next_cursor=next_cursor)


@router.get("/v1/endpoints/{name}", summary="Read an endpoint, with its workers' memory", responses=ERRORS(404))
def get_endpoint(name: str, session: SessionDep, deployments: DeploymentsDep) -> EndpointPublic:
    return _public(endpoints.get(session, name=name), deployments)


@router.patch(
    "/v1/endpoints/{name}",
    summary="Serve another version of the model; requests keep being answered during the switch",
    responses=ERRORS(404, 409, 422),
)
async def update_endpoint(
    name: str, change: EndpointUpdate, runtime: RuntimeDep, deployments: DeploymentsDep
) -> EndpointPublic:
    def resolve() -> tuple[Endpoint, int, Any]:
        with runtime.db.session() as session:
            row = endpoints.get(session, name=name)
            model = endpoints.model_version(session, model=row.model_name, version=change.version)
            if row.compute != endpoints.LOCAL:
                return row, model.version, deployments.serve_request(session, name, row.compute, model)
            return row, model.version, endpoints.model_file(model)

    row, version, what = await run_in_threadpool(resolve)
    if row.compute != endpoints.LOCAL:
        # Deployed beside the current service; forwarding moves when it is ready (`pending_version` meanwhile).
        await deployments.remote.switch(what, runtime.backends.for_serving(row.compute), version=version)
    else:
        await deployments.switch(name, what, version, row.replicas)
    with runtime.db.session() as session:
        return _public(endpoints.get(session, name=name), deployments)


@router.delete(
    "/v1/endpoints/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete an endpoint", responses=ERRORS(404)
)
async def delete_endpoint(name: str, runtime: RuntimeDep, deployments: DeploymentsDep) -> Response:
    def delete() -> str:
        with runtime.db.write_session() as session:
            compute = endpoints.get(session, name=name).compute
            endpoints.delete(session, name=name)
            return compute

    compute = await run_in_threadpool(delete)
    if compute != endpoints.LOCAL:
        targets = runtime.backends.serving_targets()
        await deployments.remote.remove(name, runtime.backends.for_serving(compute) if compute in targets else None)
    else:
        await deployments.remove(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


_SCORE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ScoreRequest.model_json_schema()}},
    }
}


@router.post(
    "/v1/endpoints/{name}/score",
    summary='Score rows on a ready endpoint (the tutorial\'s `{"data": [[...]]}`)',
    response_model=ScoreResponse,
    responses=ERRORS(404, 409, 413, 422, 502, 503, 504),
    openapi_extra=_SCORE_DOC,
)
async def score(name: str, request: Request) -> Response:
    # The app's state read here, not through two dependencies: FastAPI's solving of each costs a
    # scoring request more than the linear model's arithmetic (issue 16).
    runtime: Runtime = request.app.state.runtime
    deployments: Deployments = request.app.state.endpoints
    # The body is parsed by hand: pydantic's JSON parser checks the numbers without building
    # Python objects first (3x FastAPI's parse-then-validate on 100-row bodies).
    try:
        body = _score_body.validate_json(await request.body())
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:20]]
        return problem(422, "Invalid request", "the body must be {\"data\": [[number, ...], ...]}", request,
                       errors=errors)  # fmt: skip
    rows = body.data
    deployment = deployments.get(name)
    remote = deployments.remote.get(name)
    if deployment is None and remote is None:
        return problem(404, "Not found", f"endpoint {name!r} does not exist", request)
    limit = runtime.settings.endpoint_max_rows
    if len(rows) > limit:  # the document's maxItems (api/openapi.py): a body outside the schema, so 422
        return problem(422, "Invalid request", f"{len(rows)} rows; at most {limit} per request", request)
    if remote is not None:
        if remote.scoring_uri is None:
            return _not_serving(name, NotServing(remote.state.value, remote.error), request)
        if any(len(row) != len(rows[0]) for row in rows):  # one model, one width: the remote one's
            return problem(409, "Conflict", f"endpoint {name!r} serves one model: every row must be as wide as row 0",
                           request)
        try:
            answer = await deployments.remote.score(remote, body.model_dump(exclude_defaults=True))
        except ForwardFailed as exc:
            headers = {"Retry-After": RETRY_AFTER_SECONDS} if exc.http_status == 503 else None
            title = _TITLES.get(exc.http_status, "Bad gateway")
            return problem(exc.http_status, title, exc.detail, request, headers=headers)
        return Response(json.dumps({**answer, "model": remote.model}, separators=(",", ":")),
                        media_type="application/json")
    if deployment is None:
        return problem(404, "Not found", f"endpoint {name!r} does not exist", request)
    pool = deployment.pool
    if pool is None:
        return _not_serving(name, NotServing(deployment.state.value, deployment.error), request)
    # What fits depends on the model this endpoint serves (its n_features, shown on the endpoint):
    # a well-formed body that does not fit it conflicts with the endpoint's state, so 409, not 422.
    width = pool.info.n_features
    for index, row in enumerate(rows):
        if width is not None and len(row) != width:
            detail = (f"endpoint {name!r} serves a model taking {width} values per row (its n_features); "
                      f"row {index} has {len(row)}")
            return problem(409, "Conflict", detail, request)
    if body.probabilities and not pool.info.probabilities:
        return problem(409, "Conflict", f"the model ({pool.info.kind}) has no predict_proba", request)
    # numpy (~0.15 s) and the evaluation module load with the first request that needs them,
    # not with every start of a service that may never score.
    import numpy as np

    try:
        _, version, result = await deployments.score(
            name, np.asarray(rows, dtype=np.float64), probabilities=body.probabilities
        )
    except KeyError:
        return problem(404, "Not found", f"endpoint {name!r} does not exist", request)
    except NotServing as exc:
        return _not_serving(name, exc, request)
    except ModelRejected as exc:
        return problem(409, "Conflict", f"the model could not score these rows: {exc}", request)
    except WorkerFailed as exc:
        return _unavailable(f"the endpoint's worker failed ({exc.reason}); a new one is starting", request)
    payload: dict[str, Any] = {**result, "model": deployment.model, "version": version}
    if body.probabilities:
        payload["classes"] = pool.info.classes
    try:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN is no JSON number: rows near the float maximum overflow the model's arithmetic
        return problem(409, "Conflict", "the model's answer for these rows is not finite (values too large for it)",
                       request)
    return Response(text, media_type="application/json")


_TITLES = {409: "Conflict", 413: "Payload too large", 422: "Invalid request", 503: "Service unavailable",
           504: "Gateway timeout"}


def _not_serving(name: str, exc: NotServing, request: Request) -> Response:
    if exc.state == "failed":
        return problem(409, "Conflict", f"endpoint {name!r} failed: {exc.reason}", request)
    # Not a server error: the endpoint is still loading its model (`creating`); the same request
    # succeeds once it is `ready`, which Retry-After says when to ask again.
    return problem(409, "Endpoint not ready", f"endpoint {name!r} is {exc.state}; retry after {RETRY_AFTER_SECONDS} s",
                   request, headers={"Retry-After": RETRY_AFTER_SECONDS})


def _unavailable(detail: str, request: Request) -> Response:
    return problem(503, "Service unavailable", detail, request, headers={"Retry-After": RETRY_AFTER_SECONDS})


@router.post(
    "/v1/models/{name}/versions/{version}/evaluate",
    summary="Score a dataset's test split with a model version; keeps accuracy and the confusion matrix",
    responses=ERRORS(404, 422),
)
async def evaluate(name: str, version: VersionRef, spec: EvaluateRequest, runtime: RuntimeDep) -> ModelVersionPublic:
    from service.models.endpoints import evaluation  # numpy and the trainer's loaders, on first use

    def resolve() -> tuple[ModelVersion, Any, evaluation.TestSplit, int]:
        with runtime.db.session() as session:
            model = endpoints.model_version(session, model=name, version=version)
            dataset = catalog.get_dataset(session, name=spec.dataset, version=spec.dataset_version)
            split = evaluation.load_test_split(dataset.path, dataset.name)
            return model, endpoints.model_file(model), split, dataset.version

    model, path, split, dataset_version = await run_in_threadpool(resolve)
    log_path = runtime.settings.data_dir / "endpoints" / "_evaluations" / f"{model.name}-v{model.version}.log"
    predictions = await evaluation.predict_all(runtime.settings, path, split, log_path)
    result = evaluation.summarize(split, predictions, dataset=spec.dataset, dataset_version=dataset_version)

    def store() -> ModelVersion:
        with runtime.db.write_session() as session:
            row = session.get(ModelVersion, model.id)
            if row is None:
                raise NotFound(f"model {name!r} version {model.version} does not exist")
            row.evaluation = result
            session.add(row)
            session.commit()
            return row

    stored = await run_in_threadpool(store)
    return ModelVersionPublic.model_validate(stored, from_attributes=True)
