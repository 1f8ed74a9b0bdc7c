"""Train, evaluate, log and register: the steps of `leadscore train`, wired together."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from features.snapshot import SnapshotTable, empty_events
from features.vocabulary import LEAD_ID
from models.registry import Registration, log_and_register
from models.rules.points import PointsRules
from models.training.train import TrainingResult, train_lead_scorer, train_snapshot_scorer
from pipelines.config import LeadscoreConfig

logger = logging.getLogger(__name__)

TRAINING_STEPS = 6  # snapshots, fit, calibrate, evaluate, log + register, alias


@dataclass(frozen=True)
class TrainingRun:
    result: TrainingResult
    registration: Registration


def run_training(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    config: LeadscoreConfig,
    rules: PointsRules,
    on_step: Callable[[str], None] | None = None,
) -> TrainingRun:
    """All is checked and trained before MLflow sees anything: bad input registers nothing."""
    result = train_lead_scorer(
        leads,
        events,
        features=config.features,
        snapshots=config.snapshots,
        rules=rules,
        config=config.train,
        segment_column=config.dataset.source_column,
        on_step=on_step,
    )
    horizon = config.snapshots.horizon_days
    result.scorer.metadata["label_meaning"] = f"won within {horizon} days after as_of"
    result.scorer.metadata["as_of_source"] = "snapshots at creation + offsets_days (snapshots)"
    return register(result, leads, events, config, on_step)


def run_snapshot_training(
    table: SnapshotTable,
    config: LeadscoreConfig,
    rules: PointsRules,
    on_step: Callable[[str], None] | None = None,
) -> TrainingRun:
    """The same for a snapshot export (dataset mode `snapshot`)."""
    result = train_snapshot_scorer(
        table,
        rules=rules,
        config=config.train,
        horizon_days=config.snapshots.horizon_days,
        segment_column=config.dataset.source_column,
        on_step=on_step,
    )
    result.scorer.metadata["label_meaning"] = table.label_meaning
    result.scorer.metadata["as_of_source"] = table.as_of_source
    return register(result, table.leads, empty_events(table.leads[LEAD_ID]), config, on_step)


def register(
    result: TrainingResult,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    config: LeadscoreConfig,
    on_step: Callable[[str], None] | None,
) -> TrainingRun:
    registration = log_and_register(
        result,
        leads,
        events,
        config=config.train,
        run_config=config.model_dump(mode="json"),
        workdir=config.workdir,
        cost_per_lead=config.dataset.cost_per_lead,
    )
    if on_step is not None:
        on_step(f"registered v{registration.version} as {registration.alias}")
    return TrainingRun(result=result, registration=registration)
