"""What the `leadscore` commands use, in one place: `pipelines.cli` loads it when a command
runs (its names become the CLI module's), so starting the command line stays fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import uvicorn
from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from features.build import build_features
from features.config import DatasetConfig, FeatureConfig
from features.contract import (
    DataContractError,
    load_events,
    load_leads,
    map_labels,
    read_table,
)
from features.fit import derived_levels
from features.snapshot import SnapshotTable, empty_events, load_snapshot_table
from features.storage import write_table_atomic, write_text_atomic
from features.training import LABEL, make_training_set
from features.vocabulary import CONVERTED, LEAD_ID
from models.registry import (
    CHAMPION,
    check_store,
    load_holdout,
    load_scorer,
    load_suggested_points,
    tracking_uri,
    use_existing_store,
    use_tracking,
)
from models.registry import promote as promote_version
from models.reports.comparison import headline, holdout_comparison, write_comparison
from models.reports.evaluation import RULES_BASIS_NOTE
from models.rules.points import RULE_MQL, PointsRules
from models.scoring.scorer import LeadScorer, ScoresDisagree
from models.training.leakage import (
    auc_ranking_report,
    leakage_findings,
    leakage_report,
    rank_by_auc,
)
from pipelines.config import LeadscoreConfig, load_config
from pipelines.monitor import build_report
from pipelines.training import (
    TRAINING_STEPS,
    TrainingRun,
    run_snapshot_training,
    run_training,
)
from serve.protocol import HeaderDeadlineProtocol
from serve.settings import ServeSettings
from simulator.funnel import (
    SIMULATION_STEPS,
    SimulatorConfig,
    simulate_funnel,
    write_funnel,
)
