"""POST /outcomes: won and lost outcomes, joined back to what was predicted."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy.exc import SQLAlchemyError

from serve.dependencies import ServiceDep, error_responses, require_api_key, require_json_body
from serve.predictionlog import InvalidRecord
from serve.schemas import OutcomesIn, OutcomesOut

logger = logging.getLogger(__name__)

router = APIRouter(
    tags=["feedback"],
    dependencies=[Depends(require_api_key), Depends(require_json_body)],
    responses=error_responses(400, 401, 408, 413, 415, 422, 503),
)


@router.post("/outcomes", response_model=OutcomesOut)
def outcomes(body: OutcomesIn, service: ServiceDep) -> OutcomesOut:
    """Record won/lost outcomes so they join back to what was predicted. All or nothing: when
    the store cannot take them, 503 with the reason, and none is recorded."""
    try:
        written = service.prediction_log.record_outcomes(
            [
                {
                    "lead_id": o.lead_id,
                    "outcome": 1 if o.outcome == "won" else 0,
                    "closed_at": o.closed_at,
                }
                for o in body.outcomes
            ]
        )
    except InvalidRecord as exc:  # what the API lets through, the store takes; if not, say so
        raise HTTPException(status_code=422, detail=f"outcomes not recorded: {exc}") from None
    except SQLAlchemyError as exc:
        logger.warning("outcomes not recorded: %s", exc)
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise HTTPException(
            status_code=503, detail=f"the outcome store cannot take them now ({reason}); retry"
        ) from None
    return OutcomesOut(recorded=written)
