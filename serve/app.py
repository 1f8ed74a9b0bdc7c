"""The FastAPI app: /predict from the MLflow champion, health, readiness, model info, metrics,
outcomes and hot reload. Built by `create_app(settings)`; nothing happens at import."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from features.pointintime import AS_OF
from features.vocabulary import CREATED_AT
from models.registry import use_tracking
from models.scorer import lead_columns_needed
from serve.predictionlog import PredictionLog
from serve.schemas import (
    BatchIn,
    Health,
    LeadIn,
    ModelInfo,
    OutcomesIn,
    OutcomesOut,
    PredictBody,
    PredictResponse,
)
from serve.settings import ServeSettings
from serve.state import LoadedModel, ModelHolder

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Metrics:
    """Prometheus metrics of one app (its own registry, or the multiprocess collector)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        target = None if self.multiprocess else self.registry
        self.requests = Counter(
            "leadscore_requests", "Requests by route and status", ["route", "method", "status"],
            registry=target,
        )  # fmt: skip
        self.latency = Histogram(
            "leadscore_request_seconds", "Request latency by route and status",
            ["route", "status"], registry=target,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip
        self.predictions = Counter(
            "leadscore_predictions", "Leads scored by tier", ["tier"], registry=target
        )
        self.model_version = Gauge(
            "leadscore_model_version", "Registered version being served", registry=target,
            multiprocess_mode="liveall",
        )  # fmt: skip

    def render(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class BodyLimitAndMetrics:
    """Pure ASGI middleware: refuses oversized bodies (413) and times every request."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and int(declared) > self.max_body_bytes:
            await _send_json(send, 413, {"detail": f"body over {self.max_body_bytes} bytes"})
            self.metrics.requests.labels("unmatched", scope["method"], "413").inc()
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise _BodyTooLarge()
            return message

        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_status)
        except _BodyTooLarge:
            status = 413
            await _send_json(send, 413, {"detail": f"body over {self.max_body_bytes} bytes"})
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, scope["method"], str(status)).inc()
            self.metrics.latency.labels(path, str(status)).observe(time.perf_counter() - started)


class _BodyTooLarge(HTTPException):
    """Raised while FastAPI reads the body; as an HTTPException it passes through as a 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# Requests with at most this many leads are scored on the event loop itself.
_INLINE_LEADS = 4


def _score(model: LoadedModel, leads: list[LeadIn]) -> list[dict[str, Any]]:
    """Every request, one lead or a thousand, through the one kernel adapter for records."""
    records = [
        {
            **lead.attributes(),
            CREATED_AT: lead.created_at,
            AS_OF: lead.as_of,
            "events": lead.events,
        }
        for lead in leads
    ]
    return model.scorer.score_records(records, with_monitored=True).records()


def _field_path(loc: Sequence[Any]) -> list[Any]:
    """The path in the caller's JSON: without the union's tag ("LeadIn"/"BatchIn")."""
    path = list(loc)
    if len(path) > 1 and path[0] == "body" and path[1] in ("LeadIn", "BatchIn"):
        del path[1]
    return path


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _json_value(value: object) -> object:
    """JSON for the numpy and pandas values in answers."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _log_record(answer: dict[str, Any], scored_at: datetime) -> dict[str, object]:
    return {
        "lead_id": answer["lead_id"],
        "scored_at": scored_at,
        "as_of": pd.Timestamp(answer["as_of"]).to_pydatetime(),
        "model_version": answer["model_version"],
        "probability": answer["probability"],
        "mql": bool(answer["mql"]),
        "tier": answer["tier"],
        "threshold": answer["threshold"],
        "rule_score": answer["rule_score"],
        "rule_mql": bool(answer["rule_mql"]),
        "features": answer.pop("features", None),
    }


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    metrics = Metrics()
    holder = ModelHolder(settings.model_name, settings.alias, settings.predict_threads)

    async def watch_alias() -> None:
        while True:
            await asyncio.sleep(settings.reload_interval_seconds)
            try:
                if await asyncio.to_thread(holder.load_if_changed):
                    _after_swap()
            except Exception as exc:  # keep serving the loaded model; try again next time
                logger.warning("could not check or load %s@%s: %s", holder.name, holder.alias, exc)

    def _after_swap() -> None:
        if holder.current is not None and holder.current.version.isdigit():
            metrics.model_version.set(int(holder.current.version))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        use_tracking(settings.workdir)
        log = PredictionLog(settings.prediction_log_url)
        log.start()
        app.state.prediction_log = log
        tasks: list[asyncio.Task[None]] = []

        async def first_load() -> None:
            try:
                await asyncio.to_thread(holder.load_if_changed)
                _after_swap()
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
    app.add_middleware(BodyLimitAndMetrics, max_body_bytes=settings.max_body_bytes, metrics=metrics)

    def require_key(expected: Any) -> Callable[[str | None], Awaitable[None]]:
        async def check(x_api_key: Annotated[str | None, Header()] = None) -> None:
            if expected is None:
                return
            if x_api_key is None or not secrets.compare_digest(
                x_api_key.encode(), expected.get_secret_value().encode()
            ):
                raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")

        return check

    api_key = Depends(require_key(settings.api_key))
    admin_key = Depends(require_key(settings.admin_key or settings.api_key))

    def serving() -> LoadedModel:
        model = holder.current
        if model is None:
            raise HTTPException(status_code=503, detail="no model loaded yet")
        return model

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": _field_path(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.get("/health", response_model=Health, tags=["ops"])
    def health() -> Health:
        """The process is up."""
        return Health(status="ok")

    @app.get("/ready", response_model=Health, tags=["ops"], responses={503: {"model": Health}})
    def ready() -> Health | JSONResponse:
        """A model is loaded and answering."""
        model = holder.current
        if model is None:
            return JSONResponse(status_code=503, content={"status": "loading"})
        return Health(status="ready", model_version=model.version)

    @app.get("/model", response_model=ModelInfo, tags=["model"], dependencies=[api_key])
    def model_info() -> ModelInfo:
        """What is being served: version, threshold, tiers, training metrics, features."""
        model = serving()
        scorer = model.scorer
        test_metrics = scorer.metadata.get("test_metrics", {})
        return ModelInfo(
            name=settings.model_name,
            version=model.version,
            alias=settings.alias,
            loaded_at=model.loaded_at,
            horizon_days=scorer.horizon_days,
            threshold=scorer.policy.threshold,
            policy=scorer.policy.description,
            tiers=scorer.policy.tier_floors,
            metrics={k: float(v) for k, v in test_metrics.items() if math.isfinite(float(v))},
            features=scorer.feature_names,
            lead_fields=lead_columns_needed(scorer),
        )

    @app.post("/predict", response_model=PredictResponse, tags=["scoring"], dependencies=[api_key])
    async def predict(body: PredictBody, request: Request) -> Response:
        """Score one lead, or a batch under `leads`. Answers the calibrated probability of
        converting within the model's horizon, MQL and tier, the rule-based points, and the
        top reasons for and against."""
        leads = body.leads if isinstance(body, BatchIn) else [body]
        if len(leads) > settings.max_batch:
            raise HTTPException(status_code=413, detail=f"at most {settings.max_batch} leads")
        for i, lead in enumerate(leads):
            if len(lead.events) > settings.max_events_per_lead:
                raise HTTPException(
                    status_code=422,
                    detail=[{"loc": ["body", "leads", i, "events"],
                             "msg": f"at most {settings.max_events_per_lead} events per lead",
                             "type": "too_long"}],
                )  # fmt: skip
            try:
                lead.attributes()
            except ValueError as exc:
                raise HTTPException(
                    status_code=422,
                    detail=[{"loc": ["body", "leads", i], "msg": str(exc), "type": "value_error"}],
                ) from exc
        model = serving()
        needs_creation = model.scorer.features.source == "events"
        for i, lead in enumerate(leads):
            if needs_creation and lead.created_at is None:
                path = ["body", "leads", i] if isinstance(body, BatchIn) else ["body"]
                raise HTTPException(
                    status_code=422,
                    detail=[{"loc": [*path, "created_at"], "msg": "Field required",
                             "type": "missing"}],
                )  # fmt: skip
            for column in model.scorer.features.numeric_columns:
                value = (
                    getattr(lead, column, None)
                    if column in type(lead).model_fields
                    else ((lead.model_extra or {}).get(column))
                )
                if value is not None and not _is_number(value):
                    raise HTTPException(
                        status_code=422,
                        detail=[{"loc": ["body", "leads", i, column], "msg": "not a number",
                                 "type": "float_parsing"}],
                    )  # fmt: skip
        if len(leads) <= _INLINE_LEADS:
            # Well under a millisecond: cheaper on the event loop than a hop to a worker thread.
            answers = _score(model, leads)
        else:
            answers = await run_in_threadpool(_score, model, leads)
        scored_at = datetime.now(UTC)
        request.app.state.prediction_log.append(
            [_log_record(answer, scored_at) for answer in answers]
        )
        for tier, count in collections.Counter(a["tier"] for a in answers).items():
            metrics.predictions.labels(tier).inc(count)
        for answer in answers:
            answer["model_version"] = model.version
            # Written here as `_json_value` would, so json.dumps need not call back per lead.
            answer["as_of"] = answer["as_of"].isoformat()
        # Serialised here, not re-validated against the response model (which documents it):
        # for a 1,000-lead batch that validation costs more than the JSON itself.
        content = json.dumps({"predictions": answers}, default=_json_value)
        return Response(content, media_type="application/json")

    @app.post("/outcomes", response_model=OutcomesOut, tags=["feedback"], dependencies=[api_key])
    def outcomes(body: OutcomesIn, request: Request) -> OutcomesOut:
        """Record won/lost outcomes so they join back to what was predicted."""
        written = request.app.state.prediction_log.record_outcomes(
            [
                {
                    "lead_id": o.lead_id,
                    "outcome": 1 if o.outcome == "won" else 0,
                    "closed_at": o.closed_at,
                }
                for o in body.outcomes
            ]
        )
        return OutcomesOut(recorded=written)

    @app.post("/admin/reload", response_model=Health, tags=["ops"], dependencies=[admin_key])
    async def reload() -> Health:
        """Load the alias's current version now (beside the served one), then swap."""
        try:
            await asyncio.to_thread(holder.load_if_changed)
        except Exception as exc:
            raise HTTPException(status_code=503, detail=f"reload failed: {exc}") from exc
        _after_swap()
        model = serving()
        return Health(status="ready", model_version=model.version)

    def compared() -> tuple[LoadedModel, str, str]:
        """The served model with its comparison page and CSV, or 404 when it has none."""
        model = serving()
        if model.comparison_page is None or model.comparison_csv is None:
            raise HTTPException(
                status_code=404,
                detail=f"model v{model.version} was logged without its holdout comparison",
            )
        return model, model.comparison_page, model.comparison_csv

    @app.get("/compare", response_class=HTMLResponse, tags=["marketing"], dependencies=[api_key])
    def compare_page() -> HTMLResponse:
        """The served model's MQL list against the rules' on its holdout, for marketers: a page
        with plots, filters by source and tier (also ?source=...&tier=...) and CSV download."""
        _, page, _ = compared()
        return HTMLResponse(page)

    @app.get(
        "/compare.csv",
        response_class=PlainTextResponse,
        tags=["marketing"],
        dependencies=[api_key],
    )
    def compare_csv() -> PlainTextResponse:
        """Every holdout lead with both scores, both lists and the reasons."""
        model, _, csv = compared()
        return PlainTextResponse(
            csv,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="leads-v{model.version}.csv"'},
        )

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.state.holder = holder
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory serve.app:app_factory`: settings from the environment."""
    return create_app(ServeSettings())
