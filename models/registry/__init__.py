"""The model registry: MLflow runs, the pyfunc bundle registered under one name, and the
`champion` alias that serves (`store`)."""

from models.registry.store import (
    ARTIFACTS_DIR,
    COMPARE_ARTIFACT,
    HOLDOUT_FILE,
    PYFUNC_ENTRY,
    SCORECARD_FILE,
    TRACKING_DB,
    Registration,
    check_store,
    current_champion,
    data_fingerprint,
    decide_alias,
    load_holdout,
    load_scorer,
    load_suggested_points,
    log_and_register,
    promote,
    tracking_uri,
    use_existing_store,
    use_tracking,
)
from models.training.gate import CHALLENGER, CHAMPION

__all__ = [
    "ARTIFACTS_DIR",
    "CHALLENGER",
    "CHAMPION",
    "COMPARE_ARTIFACT",
    "HOLDOUT_FILE",
    "PYFUNC_ENTRY",
    "SCORECARD_FILE",
    "TRACKING_DB",
    "Registration",
    "check_store",
    "current_champion",
    "data_fingerprint",
    "decide_alias",
    "load_holdout",
    "load_scorer",
    "load_suggested_points",
    "log_and_register",
    "promote",
    "tracking_uri",
    "use_existing_store",
    "use_tracking",
]
