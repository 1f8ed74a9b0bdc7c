"""POST /outcomes: won and lost outcomes, joined back to what was predicted."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serve.dependencies import ServiceDep, error_responses, require_api_key
from serve.schemas import OutcomesIn, OutcomesOut

router = APIRouter(
    tags=["feedback"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(401, 503),
)


@router.post("/outcomes", response_model=OutcomesOut)
def outcomes(body: OutcomesIn, service: ServiceDep) -> OutcomesOut:
    """Record won/lost outcomes so they join back to what was predicted."""
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
    return OutcomesOut(recorded=written)
