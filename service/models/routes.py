"""Routes of the model registry."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from service.api.deps import Cursor, IntCursor, Limit, RuntimeDep, SessionDep, VersionRef
from service.api.docs import ERRORS
from service.core.schemas import Page
from service.db.tables import ModelVersion
from service.models import service as registry
from service.models.schemas import ModelPublic, ModelRegister, ModelVersionPublic

router = APIRouter(tags=["models"])


def _public(model: ModelVersion) -> ModelVersionPublic:
    return ModelVersionPublic.model_validate(model, from_attributes=True)


@router.post(
    "/v1/jobs/{job_id}/models",
    status_code=status.HTTP_201_CREATED,
    summary="Register a model from a job's outputs",
    responses=ERRORS(404, 409, 422),
)
def register_model(
    job_id: str, spec: ModelRegister, response: Response, runtime: RuntimeDep
) -> ModelVersionPublic:
    """Each registration of a name makes its next version, linked to the job and run."""
    model = registry.register_model(runtime, job_id=job_id, spec=spec)
    response.headers["Location"] = f"/v1/models/{model.name}/versions/{model.version}"
    return _public(model)


@router.get("/v1/models", summary="List models")
def list_models(session: SessionDep, limit: Limit = 100, cursor: Cursor = None) -> Page[ModelPublic]:
    items, next_cursor = registry.list_models(session, limit=limit, cursor=cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.get("/v1/models/{name}/versions", summary="List a model's versions", responses=ERRORS(404))
def list_versions(
    name: str, session: SessionDep, limit: Limit = 100, cursor: IntCursor = None
) -> Page[ModelVersionPublic]:
    items, next_cursor = registry.list_versions(session, name=name, limit=limit, cursor=cursor)
    return Page(items=[_public(m) for m in items], next_cursor=next_cursor)


@router.get(
    "/v1/models/{name}/versions/{version}",
    summary="Read a model version (a number or `latest`)",
    responses=ERRORS(404, 422),
)
def get_version(name: str, version: VersionRef, session: SessionDep) -> ModelVersionPublic:
    return _public(registry.get_version(session, name=name, version=version))
