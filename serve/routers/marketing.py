"""GET /compare and /compare.csv: the served model's MQL list against the rules' on its holdout,
built once when the model loads."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import HTMLResponse, Response

from serve.dependencies import ModelDep, error_responses, require_api_key
from serve.state import LoadedModel

router = APIRouter(
    tags=["marketing"],
    dependencies=[Depends(require_api_key)],
    responses=error_responses(401, 404, 503),
)


def _compared(model: LoadedModel) -> tuple[str, str]:
    """The served model's comparison page and CSV, or 404 when it has none."""
    if model.comparison_page is None or model.comparison_csv is None:
        raise HTTPException(
            status_code=404,
            detail=f"model v{model.version} was logged without its holdout comparison",
        )
    return model.comparison_page, model.comparison_csv


# The page is HTML; its errors are JSON, as everywhere (`response_class=HTMLResponse` would
# document them as HTML).
@router.get(
    "/compare",
    response_class=Response,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
def compare_page(model: ModelDep) -> HTMLResponse:
    """The served model's MQL list against the rules' on its holdout, for marketers: a page
    with plots, filters by source and tier (also ?source=...&tier=...) and CSV download."""
    page, _ = _compared(model)
    return HTMLResponse(page)


@router.get(
    "/compare.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per holdout lead."}},
)
def compare_csv(model: ModelDep) -> Response:
    """Every holdout lead with both scores, both lists and the reasons."""
    _, csv = _compared(model)
    return Response(
        csv,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="leads-v{model.version}.csv"'},
    )
