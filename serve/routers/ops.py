"""Operations: GET /health, /ready and /metrics, and POST /admin/reload."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from serve.dependencies import (
    ServiceDep,
    error_responses,
    require_admin_key,
    require_metrics_access,
)
from serve.metrics import Metrics
from serve.schemas import Health
from serve.state import ModelHolder

# Async: each only reads state, and a plain `def` route costs a hop to the thread pool.
router = APIRouter(tags=["ops"])


def note_swap(holder: ModelHolder, metrics: Metrics) -> None:
    """After a load: the version the metrics report."""
    if holder.current is not None and holder.current.version.isdigit():
        metrics.model_version.set(int(holder.current.version))


@router.get("/health", response_model=Health, response_model_exclude_none=True)
async def health() -> Health:
    """The process is up (whether a model is loaded is for /ready to say)."""
    return Health(status="ok")


@router.get("/ready", response_model=Health, responses={503: {"model": Health}})
async def ready(service: ServiceDep) -> Health | JSONResponse:
    """A model is loaded and answering: "ready", or "degraded" while the prediction store
    fails (answers are still recorded, in the spill file, and replayed later)."""
    model = service.holder.current
    if model is None:
        return JSONResponse(status_code=503, content={"status": "loading"})
    trouble = service.log.degraded if service.log is not None else None
    if trouble is not None:
        detail = f"the prediction store fails ({trouble}); predictions go to the spill file"
        return Health(status="degraded", model_version=model.version, detail=detail)
    return Health(status="ready", model_version=model.version)


@router.post(
    "/admin/reload",
    response_model=Health,
    dependencies=[Depends(require_admin_key)],
    responses=error_responses(401, 503),
)
async def reload(service: ServiceDep) -> Health:
    """Load the alias's current version now (beside the served one), then swap."""
    holder, metrics = service.holder, service.metrics
    try:
        await asyncio.to_thread(holder.load_if_changed)
    except Exception as exc:
        raise HTTPException(status_code=503, detail=f"reload failed: {exc}") from exc
    note_swap(holder, metrics)
    model = holder.current
    if model is None:
        raise HTTPException(status_code=503, detail="no model loaded yet")
    return Health(status="ready", model_version=model.version)


@router.get(
    "/metrics",
    include_in_schema=False,
    dependencies=[Depends(require_metrics_access)],
)
async def prometheus(service: ServiceDep) -> Response:
    return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)
