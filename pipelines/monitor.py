"""`leadscore monitor`: what the served model has done since deployment, from the prediction log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from features.contract import DataContractError
from models.reports.monitoring import drift_report, expand_features, outcome_report
from models.scoring.scorer import LeadScorer
from serve.predictionlog import PredictionLog


@dataclass(frozen=True)
class MonitorReport:
    version: str
    tables: dict[str, pd.DataFrame]  # summary, by_tier, calibration, model_vs_rules, drift


def build_report(
    log_url: str, scorer: LeadScorer, since: datetime | None, all_versions: bool
) -> MonitorReport:
    """Outcomes joined to predictions, and drift of scores and key features against training."""
    predictions, outcomes = _read_log(log_url, since)
    if not all_versions:
        predictions = predictions[predictions["model_version"] == scorer.model_version]
    tables = outcome_report(predictions, outcomes, scorer.horizon_days)
    reference = scorer.metadata.get("reference", {})
    current = expand_features(predictions).assign(probability=predictions["probability"])
    references = {"probability": reference.get("probability"), **reference.get("features", {})}
    tables["drift"] = drift_report({k: v for k, v in references.items() if v}, current)
    return MonitorReport(version=scorer.model_version, tables=tables)


_WHERE_THE_LOG_IS = (
    "pass --log-url as the API's LEADSCORE_SERVE_PREDICTION_LOG_URL (default "
    "sqlite:///predictions.db, in the folder `leadscore serve` ran in)"
)


def _read_log(log_url: str, since: datetime | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions and outcomes of an existing log: a URL that is none, a SQLite file that is
    not there (which opening would make, empty) or a store that cannot be read is one error."""
    try:
        url = make_url(log_url)
    except ArgumentError:
        raise DataContractError(
            f"--log-url: {log_url!r} is not a database URL", hint=_WHERE_THE_LOG_IS
        ) from None
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        if not path.is_file():
            raise DataContractError(f"no prediction log at {path}", hint=_WHERE_THE_LOG_IS)
    try:
        log = PredictionLog(log_url)
        try:
            return log.read_predictions(since=since), log.read_outcomes()
        finally:
            log.close()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DataContractError(f"cannot read the prediction log {shown}: {reason}") from None
    except ImportError as exc:  # a database whose driver is not installed
        raise DataContractError(f"cannot read the prediction log {shown}: {exc}") from None
