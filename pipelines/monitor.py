"""`leadscore monitor`: what the served model has done since deployment, from the prediction log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

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
    log = PredictionLog(log_url)
    try:
        predictions = log.read_predictions(since=since)
        outcomes = log.read_outcomes()
    finally:
        log.close()
    if not all_versions:
        predictions = predictions[predictions["model_version"] == scorer.model_version]
    tables = outcome_report(predictions, outcomes, scorer.horizon_days)
    reference = scorer.metadata.get("reference", {})
    current = expand_features(predictions).assign(probability=predictions["probability"])
    references = {"probability": reference.get("probability"), **reference.get("features", {})}
    tables["drift"] = drift_report({k: v for k, v in references.items() if v}, current)
    return MonitorReport(version=scorer.model_version, tables=tables)
