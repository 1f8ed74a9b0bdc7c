"""POST /predict and GET /model: scores from the served model, and what that model is."""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pydantic_core
from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from features.batch import LeadsUnscorable
from features.vocabulary import CREATED_AT
from models.scoring.scorer import lead_columns_needed
from serve.dependencies import ModelDep, ServiceDep, error_responses, require_api_key
from serve.predictionlog import answer_rows
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


@router.post("/predict", response_model=PredictResponse, responses=error_responses(413))
async def predict(
    body: PredictBody,
    model: ModelDep,
    service: ServiceDep,
) -> Response:
    """Score one lead, or a batch under `leads`. Answers the calibrated probability of
    converting within the model's horizon, MQL and tier, the rule-based points, and the
    top reasons for and against."""
    settings = service.settings
    leads = body.leads if isinstance(body, BatchIn) else [body]
    if len(leads) > settings.max_batch:
        raise HTTPException(status_code=413, detail=f"at most {settings.max_batch} leads")
    _check_leads(body, leads, model, settings.max_events_per_lead)
    try:
        if len(leads) <= _INLINE_LEADS:
            # Small requests that are ready together are scored in one kernel call, on the loop.
            answers = await service.batcher(model, leads)
        else:
            answers = await run_in_threadpool(score_leads, model, leads)
    except LeadsUnscorable as exc:  # a merged round is re-scored request by request: ours
        path: list[Any] = (
            ["body", "leads", exc.positions[0]] if isinstance(body, BatchIn) else ["body"]
        )
        raise _refuse([*path, exc.field], exc.why, "value_error") from None
    service.prediction_log.append(answer_rows(answers, datetime.now(UTC), model.version))
    for tier, count in collections.Counter(a["tier"] for a in answers).items():
        service.metrics.predictions.labels(tier).inc(count)
    for answer in answers:
        del answer["features"]  # logged, not answered
        answer["model_version"] = model.version
        # Written here as `_json_value` would, so json.dumps need not call back per lead.
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
