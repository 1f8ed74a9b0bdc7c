"""The MLflow pyfunc bundle: a saved `LeadScorer` behind MLflow's model interface.

`predict` takes one row per lead: its attribute columns, an optional `as_of` (ISO time, default
now) and an optional `events` cell holding a JSON list of {"ts", "event_type"} objects. Its rows
are records for the same kernel adapter as the API's bodies (`LeadScorer.score_records`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from features.pointintime import AS_OF
from features.vocabulary import CREATED_AT, EVENT_TYPE, LEAD_ID, TS
from models.scoring.scorer import LeadScorer

EVENTS_COLUMN = "events"
SCORER_ARTIFACT = "scorer"


class LeadScoreModel(PythonModel):
    """MLflow's view of a `LeadScorer`: loads the saved folder, scores request rows."""

    scorer: LeadScorer

    @classmethod
    def for_scorer(cls, scorer: LeadScorer) -> LeadScoreModel:
        model = cls()
        model.scorer = scorer
        return model

    def load_context(self, context: Any) -> None:
        self.scorer = LeadScorer.load(Path(context.artifacts[SCORER_ARTIFACT]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        records = [{str(k): v for k, v in row.items()} for row in model_input.to_dict("records")]
        scored = self.scorer.score_records(records).frame()
        scored[AS_OF] = scored[AS_OF].dt.strftime("%Y-%m-%dT%H:%M:%S%z")
        scored["reasons"] = [json.dumps(r) for r in scored["reasons"]]
        return scored


def request_example(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    lead_columns: list[str],
    n: int = 2,
    max_events: int | None = 30,
) -> pd.DataFrame:
    """The first `n` leads in the pyfunc input form, scored 30 days after creation, with their
    latest `max_events` events before then (all when None), as an app would send them.
    Snapshot exports (no `created_at`): the rows as they are, scored now."""
    sample = leads[lead_columns].head(n).copy()
    if CREATED_AT not in lead_columns:
        return _as_request_values(sample)
    sample[CREATED_AT] = sample[CREATED_AT].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    as_of = leads[CREATED_AT].head(n) + pd.Timedelta(days=30)
    sample[AS_OF] = as_of.dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy()
    cells = []
    for lead_id, moment in zip(sample[LEAD_ID], as_of, strict=True):
        mine = events[(events[LEAD_ID] == lead_id) & (events[TS] < moment)].sort_values(TS)
        if max_events is not None:
            mine = mine.tail(max_events)
        cells.append(
            json.dumps(
                [
                    {"ts": f"{ts:%Y-%m-%dT%H:%M:%SZ}", "event_type": str(kind)}
                    for ts, kind in zip(mine[TS], mine[EVENT_TYPE], strict=True)
                ]
            )
        )
    sample[EVENTS_COLUMN] = cells
    return _as_request_values(sample)


def _as_request_values(sample: pd.DataFrame) -> pd.DataFrame:
    for column in sample.columns:
        # Ids travel as text (CRM ids are), categories as their labels.
        if isinstance(sample[column].dtype, pd.CategoricalDtype) or pd.api.types.is_integer_dtype(
            sample[column]
        ):
            sample[column] = sample[column].astype("str")
    return sample.reset_index(drop=True)
