"""POST /predict and GET /model: scores from the served model, and what that model is."""

from __future__ import annotations

import asyncio
import collections
import json
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import pydantic_core
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from features.batch import LeadsUnscorable
from features.vocabulary import CREATED_AT
from models.scoring.scorer import lead_columns_needed
from serve.body import BATCH_KEY, TooManyLeads, read_body
from serve.dependencies import (
    ModelDep,
    Service,
    ServiceDep,
    check_json_content_type,
    error_responses,
    require_api_key,
    serving_model,
)
from serve.metrics import BUSY_RETRY_AFTER_SECONDS as RETRY_AFTER_SECONDS
from serve.predictionlog import PredictionsNotRecorded, answer_rows
from serve.schemas import BatchIn, LeadIn, ModelInfo, PredictBody, PredictResponse
from serve.state import LoadedModel

router = APIRouter(
    tags=["scoring"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(401, 503),
)

# Requests with at most this many leads are scored on the event loop, together with the other
# small requests that are ready at the same moment (serve.batching); larger ones in a thread.
_INLINE_LEADS = 4


def score_leads(model: LoadedModel, leads: Sequence[LeadIn]) -> list[dict[str, Any]]:
    """Every request, one lead or a thousand, through the kernel's one adapter for records."""
    # A lead's declared fields (attributes, times, events) and its extra attributes, as they
    # are: no copy through model_dump.
    records = [{**lead.__dict__, **(lead.model_extra or {})} for lead in leads]
    return model.scorer.score_records(records, with_monitored=True).records()


def score_and_record(
    service: Service, model: LoadedModel, leads: Sequence[LeadIn]
) -> list[dict[str, Any]]:
    """Score, then, with a local store, record the answers (committed, or spilled while the
    store fails) before any is sent: `PredictionsNotRecorded` when they cannot be. The
    micro-batcher calls this once per round of small requests, so they share one commit; large
    requests call it in a worker thread. A store across the network is written by the log's
    own thread instead (`_record_remotely`): a store that hangs must hold answers, not the
    event loop."""
    answers = score_leads(model, leads)
    log = service.prediction_log
    if log.local:
        rows = answer_rows(answers, datetime.now(UTC), model.version)
        started = time.perf_counter()
        log.record(rows)
        service.metrics.log_wait.observe(time.perf_counter() - started)
    return answers


async def _record_remotely(
    service: Service, model: LoadedModel, answers: list[dict[str, Any]]
) -> None:
    """The answers recorded by the log's writer thread, waited for without holding the loop;
    concurrent requests share its commits."""
    log = service.prediction_log
    if log.local:
        return
    recorded = log.append(answer_rows(answers, datetime.now(UTC), model.version))
    with service.metrics.log_wait.time():
        await asyncio.wrap_future(recorded)


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


def _refuse(loc: list[Any], msg: str, kind: str) -> HTTPException:
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": msg, "type": kind}])


def _check_leads(
    body: LeadIn | BatchIn, leads: list[LeadIn], model: LoadedModel, max_events: int
) -> None:
    """What the schema cannot say: event limits, attribute types, what this model needs."""
    needs_creation = model.scorer.features.source == "events"
    for i, lead in enumerate(leads):
        path: list[Any] = ["body", "leads", i] if isinstance(body, BatchIn) else ["body"]
        if len(lead.events) > max_events:
            raise _refuse([*path, "events"], f"at most {max_events} events per lead", "too_long")
        for key, value in (lead.model_extra or {}).items():
            if value is not None and not isinstance(value, str | float | int | bool):
                raise _refuse(
                    [*path, key],
                    "an attribute is text, a number, true/false or null",
                    "value_error",
                )
        if needs_creation and lead.created_at is None:
            raise _refuse([*path, CREATED_AT], "Field required", "missing")
        for column in model.scorer.features.numeric_columns:
            value = (
                getattr(lead, column, None)
                if column in type(lead).model_fields
                else ((lead.model_extra or {}).get(column))
            )
            if value is not None and not _is_number(value):
                raise _refuse([*path, column], "not a number", "float_parsing")


_PREDICT_BODY: TypeAdapter[LeadIn | BatchIn] = TypeAdapter(PredictBody)
_BODY_SCHEMA = _PREDICT_BODY.json_schema(ref_template="#/components/schemas/{model}")
# The body's models, for the app's OpenAPI components (the route reads its body itself).
PREDICT_BODY_DEFINITIONS: dict[str, Any] = _BODY_SCHEMA.pop("$defs")
# Bodies above this size are read and validated in a worker thread, a lead at a time
# (serve.body): a 10 MiB batch takes a good part of a second, which the event loop (and
# /health) must not wait for.
_INLINE_BODY_BYTES = 64 * 1024
_MAX_ERRORS_SHOWN = 20
_LEADS_PER_CALL = 50
_LEADS: TypeAdapter[list[LeadIn]] = TypeAdapter(list[LeadIn])


def _parse_body(raw: bytes, max_leads: int) -> LeadIn | BatchIn:
    try:
        found = json.loads(raw) if len(raw) <= _INLINE_BODY_BYTES else read_body(raw, max_leads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = exc.pos if isinstance(exc, json.JSONDecodeError) else exc.start
        raise RequestValidationError(
            [{"loc": ("body", where), "msg": f"JSON decode error: {exc}", "type": "json_invalid"}]
        ) from None
    leads = found.get(BATCH_KEY) if isinstance(found, dict) else None
    if isinstance(leads, list) and len(leads) > max_leads:
        raise TooManyLeads(max_leads)
    if isinstance(leads, list) and leads and set(found) == {BATCH_KEY}:
        # A batch a slice of leads at a time, stopping at the first slice with problems: short
        # calls that let the event loop in between, and never a list of a million problems.
        validated: list[LeadIn] = []
        for start in range(0, len(leads), _LEADS_PER_CALL):
            try:
                validated += _LEADS.validate_python(leads[start : start + _LEADS_PER_CALL])
            except ValidationError as exc:
                _refuse_body(exc, ("body", BATCH_KEY), offset=start)
        return BatchIn.model_construct(leads=validated)
    try:
        return _PREDICT_BODY.validate_python(found)
    except ValidationError as exc:
        _refuse_body(exc, ("body",))


def _refuse_body(exc: ValidationError, prefix: tuple[Any, ...], offset: int = 0) -> NoReturn:
    """The first problems only, each with its path in the request."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    shown = []
    for error in errors[:_MAX_ERRORS_SHOWN]:
        loc = list(error["loc"])
        if offset and loc and isinstance(loc[0], int):
            loc[0] += offset
        shown.append({**error, "loc": (*prefix, *loc)})
    raise RequestValidationError(shown) from None


async def _predict_body(request: Request, service: Service) -> LeadIn | BatchIn:
    """The body, sent as JSON (415 otherwise) and read whole (the middleware refuses one over
    the size limit while reading), then parsed and validated: small ones on the loop, large
    ones off it. More leads than `max_batch` are refused before any is validated."""
    check_json_content_type(request.headers.get("content-type"))
    raw = await request.body()
    max_leads = service.settings.max_batch
    try:
        if len(raw) <= _INLINE_BODY_BYTES:
            return _parse_body(raw, max_leads)
        return await run_in_threadpool(_parse_body, raw, max_leads)
    except TooManyLeads as exc:
        raise HTTPException(status_code=413, detail=str(exc)) from None


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=error_responses(408, 413, 415, 422),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _BODY_SCHEMA}}}
    },
)
async def predict(request: Request, service: ServiceDep) -> Response:
    """Score one lead, or a batch under `leads`. Answers the calibrated probability of
    converting within the model's horizon, MQL and tier, the rule-based points, and the
    top reasons for and against."""
    # Read here rather than as a dependency: each dependency costs FastAPI tens of microseconds.
    # The body comes first, so that one too large or too slow is refused (413, 408) whether a
    # model has loaded yet or not.
    body = await _predict_body(request, service)
    model = await serving_model(request)
    leads = body.leads if isinstance(body, BatchIn) else [body]
    _check_leads(body, leads, model, service.settings.max_events_per_lead)
    # Answered only once recorded (see score_and_record).
    try:
        if len(leads) <= _INLINE_LEADS:
            # Small requests that are ready together are scored and recorded at once, on the loop.
            answers = await service.batcher(model, leads)
        else:
            answers = await run_in_threadpool(score_and_record, service, model, leads)
        await _record_remotely(service, model, answers)
    except LeadsUnscorable as exc:  # a merged round is re-scored request by request: ours
        path: list[Any] = (
            ["body", "leads", exc.positions[0]] if isinstance(body, BatchIn) else ["body"]
        )
        raise _refuse([*path, exc.field], exc.why, "value_error") from None
    except PredictionsNotRecorded as exc:
        raise HTTPException(
            status_code=503, detail=str(exc), headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        ) from None
    for tier, count in collections.Counter(a["tier"] for a in answers).items():
        service.metrics.predictions.labels(tier).inc(count)
    for answer in answers:
        del answer["features"]  # logged, not answered
        answer["model_version"] = model.version
        # Written here as `_json_value` would, so the encoder need not call back per lead.
        answer["as_of"] = answer["as_of"].isoformat()
    # Serialised here (pydantic-core's encoder, a third of the json module's time), not
    # re-validated against the response model (which documents it): for a 1,000-lead batch that
    # validation costs more than the JSON itself.
    content = pydantic_core.to_json(
        {"predictions": answers}, fallback=_json_value, inf_nan_mode="null"
    )
    return Response(content, media_type="application/json")


@router.get("/model", response_model=ModelInfo, tags=["model"])
def model_info(model: ModelDep, service: ServiceDep) -> ModelInfo:
    """What is being served: version, threshold, tiers, training metrics, features."""
    scorer, settings = model.scorer, service.settings
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
