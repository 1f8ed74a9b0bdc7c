"""The FastAPI app: routers for scoring, feedback, the marketer page and operations, over one
model holder that swaps in a new champion without dropping requests. Built by
`create_app(settings)`; nothing happens at import."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from models.registry import use_tracking
from serve.batching import MicroBatcher
from serve.dependencies import Service
from serve.metrics import BodyLimitAndMetrics, Metrics
from serve.predictionlog import PredictionLog
from serve.protocol import HeaderDeadlineProtocol
from serve.routers import feedback, marketing, ops, scoring
from serve.settings import ServeSettings
from serve.state import ModelHolder

logger = logging.getLogger(__name__)


def _field_path(loc: Sequence[Any]) -> list[Any]:
    """The path in the caller's JSON: without the union's tag ("LeadIn"/"BatchIn")."""
    path = list(loc)
    if len(path) > 1 and path[0] == "body" and path[1] in ("LeadIn", "BatchIn"):
        del path[1]
    return path


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _field_path(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": errors})


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    metrics = Metrics()
    holder = ModelHolder(settings.model_name, settings.alias)

    async def watch_alias() -> None:
        while True:
            await asyncio.sleep(settings.reload_interval_seconds)
            try:
                if await asyncio.to_thread(holder.load_if_changed):
                    ops.note_swap(holder, metrics)
            except Exception as exc:  # keep serving the loaded model; try again next time
                logger.warning("could not check or load %s@%s: %s", holder.name, holder.alias, exc)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        use_tracking(settings.workdir)
        log = PredictionLog(
            settings.prediction_log_url,
            spill_dir=settings.prediction_spill_dir,
            on_rows=metrics.count_log_rows,
        )
        log.start()
        service.log = log
        tasks: list[asyncio.Task[None]] = []

        async def first_load() -> None:
            try:
                await asyncio.to_thread(holder.load_if_changed)
                ops.note_swap(holder, metrics)
            except Exception as exc:  # e.g. nothing registered yet: the process still serves
                logger.warning("no model to serve yet (%s): /ready answers 503", exc)

        tasks.append(asyncio.create_task(first_load()))
        if settings.reload_interval_seconds > 0:
            tasks.append(asyncio.create_task(watch_alias()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.to_thread(log.close)

    app = FastAPI(
        title="leadscore",
        summary="Calibrated lead scores with reasons, beside the rule-based points.",
        lifespan=lifespan,
    )
    service = Service(
        settings,
        holder,
        metrics,
        MicroBatcher(lambda model, leads: scoring.score_and_record(service, model, leads)),
    )
    app.state.service = service
    app.add_middleware(
        BodyLimitAndMetrics,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        max_in_flight=settings.max_in_flight,
        body_timeout=settings.body_timeout_seconds,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    for router in (scoring.router, feedback.router, marketing.router, ops.router):
        app.include_router(router)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # /predict reads its body itself (see scoring); its models join the components here.
        document = default_openapi()
        document.setdefault("components", {}).setdefault("schemas", {}).update(
            scoring.PREDICT_BODY_DEFINITIONS
        )
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# The garbage collector's thresholds in a serving process. A 1,000-lead request makes ~300k
# short-lived objects (events, answers): with Python's default (700 allocations between young
# collections) they are walked again and again and promoted while the request still holds them,
# and full collections follow: about a third of such a request's time. They are freed by
# reference counting; cycles are still collected, only less often.
SERVING_GC_THRESHOLDS = (50_000, 20, 100)


def app_factory() -> FastAPI:
    """For `uvicorn --factory serve.app:app_factory` (`leadscore serve`, in each worker):
    settings from the environment, the header deadline of `serve.protocol`, and the collector
    tuned for serving."""
    settings = ServeSettings()
    app = create_app(settings)
    HeaderDeadlineProtocol.header_timeout = settings.header_timeout_seconds
    # What is imported by now (pandas, scikit-learn, MLflow, FastAPI: ~400k objects) lives as
    # long as the server: out of the collector's sight, full collections no longer walk it.
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    return app
