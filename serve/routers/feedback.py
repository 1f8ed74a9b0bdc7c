"""POST /outcomes: won and lost outcomes, joined back to what was predicted."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serve.dependencies import PredictionLogDep, require_api_key
from serve.schemas import OutcomesIn, OutcomesOut

router = APIRouter(tags=["feedback"], dependencies=[Depends(require_api_key)])


@router.post("/outcomes", response_model=OutcomesOut)
def outcomes(body: OutcomesIn, log: PredictionLogDep) -> OutcomesOut:
    """Record won/lost outcomes so they join back to what was predicted."""
    written = log.record_outcomes(
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
