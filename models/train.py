"""Training: time split, LightGBM with early stopping, calibration, MQL policy, evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from features.build import feature_names
from features.config import FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.pointintime import AS_OF, as_utc_ns
from features.training import LABEL, make_training_set
from features.vocabulary import LEAD_ID
from models.calibration import PROBABILITY_FLOOR, BoosterClassifier, choose_calibrator
from models.config import LightGBMConfig, TrainConfig
from models.evaluate import Evaluation, Scores, evaluate
from models.monitoring import reference_distribution
from models.points import RULE_MQL, RULE_SCORE, PointsRules
from models.policy import fit_policy
from models.scorer import LeadScorer
from models.split import SLICES, TimeSplit, split_by_time

logger = logging.getLogger(__name__)

SEGMENT_COLUMN = "lead_source"
# Positive actions: with monotone constraints on, more of them never lowers the score.
_NEGATIVE_EVENTS = ("unsubscribe", "email_bounce")


@dataclass(frozen=True)
class TrainingResult:
    """A trained scorer, how it did on the newest holdout, and what it was trained on."""

    scorer: LeadScorer
    evaluation: Evaluation
    split: TimeSplit
    test: pd.DataFrame  # lead_id, as_of, label, probability, rule_score, rule_probability, mqls
    training_set: pd.DataFrame
    calibration_losses: dict[str, float]
    best_iteration: int


def check_labels(labels: np.ndarray, split: TimeSplit | None, min_conversions: int) -> None:
    """Refuse label sets that cannot support an honest model, saying what is needed."""
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        only = "converted" if positives else "not converted"
        raise DataContractError(
            f"all {len(labels):,} training snapshots are labelled {only}: a model needs both",
            hint="check the label values in the dataset config and the horizon",
        )
    if positives < min_conversions:
        raise DataContractError(
            f"only {positives} conversions within the horizon; at least {min_conversions} "
            "are needed (Salesforce Einstein asks for 120)",
            hint="use a longer history, a longer horizon or more snapshots per lead",
        )
    if split is None:
        return
    for name in SLICES:
        part = labels[split.rows[name]]
        if part.min() == part.max():
            raise DataContractError(
                f"the {name} slice of the time split has only one class "
                f"({len(part):,} snapshots, {int(part.sum())} converted)",
                hint="use data over a longer period or other split shares",
            )


def _lightgbm_params(config: LightGBMConfig, names: list[str], monotone: bool) -> dict[str, object]:
    params: dict[str, object] = {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "max_depth": config.max_depth,
        "min_child_samples": config.min_child_samples,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": config.bagging_freq,
        "lambda_l2": config.lambda_l2,
        "num_threads": config.num_threads,
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }
    if monotone:
        params["monotone_constraints"] = [
            1
            if ("_count_" in name and not name.startswith(_NEGATIVE_EVENTS))
            or name in ("engagement_decayed", "active_days")
            else 0
            for name in names
        ]
    return params


def _monitored_features(
    booster: lgb.Booster, names: list[str], matrix: pd.DataFrame, count: int = 8
) -> list[str]:
    """The numeric features the model leans on most (by gain): the ones worth watching."""
    gain = booster.feature_importance(importance_type="gain")
    numeric = [
        i
        for i, name in enumerate(names)
        if not isinstance(matrix[name].dtype, pd.CategoricalDtype) and gain[i] > 0
    ]
    ranked = sorted(numeric, key=lambda i: -gain[i])
    return [names[i] for i in ranked[:count]]


def fix_category_levels(frame: pd.DataFrame, config: FeatureConfig) -> FeatureConfig:
    """The feature config with the categorical levels of the training data written in."""
    levels = {
        column: [str(v) for v in frame[column].cat.categories]
        for column in config.categorical_columns
    }
    return config.model_copy(update={"category_levels": levels})


def train_lead_scorer(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    *,
    features: FeatureConfig,
    snapshots: SnapshotConfig,
    rules: PointsRules,
    config: TrainConfig,
    on_step: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Build snapshots, split by time, fit, calibrate, set the MQL policy and evaluate."""

    def step(name: str) -> None:
        logger.info(name)
        if on_step is not None:
            on_step(name)

    training_set = make_training_set(leads, events, snapshots, features)
    spine = training_set[[LEAD_ID, AS_OF]]
    rule_scores = rules.score(spine, leads, events, features)
    labels = training_set[LABEL].to_numpy().astype(np.int64)
    check_labels(labels, None, config.min_conversions)
    split = split_by_time(training_set[AS_OF], snapshots.horizon_days, config.split)
    check_labels(labels, split, 1)
    step(f"{len(training_set):,} snapshots split by time")

    features = fix_category_levels(training_set, features)
    names = feature_names(features)
    matrix = training_set[names]
    train, valid, calib, test = (split.rows[name] for name in SLICES)
    params = _lightgbm_params(config.lightgbm, names, config.lightgbm.monotone_engagement)
    train_data = lgb.Dataset(matrix.iloc[train], labels[train], free_raw_data=True)
    valid_data = lgb.Dataset(matrix.iloc[valid], labels[valid], reference=train_data)
    booster = lgb.train(
        params,
        train_data,
        num_boost_round=config.lightgbm.max_rounds,
        valid_sets=[valid_data],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(config.lightgbm.early_stopping_rounds, verbose=False)],
    )
    step(f"LightGBM trained ({booster.best_iteration} rounds)")

    model = BoosterClassifier(booster, num_threads=config.lightgbm.num_threads).fit(
        matrix.iloc[calib], labels[calib]
    )
    calib_order = np.argsort(as_utc_ns(training_set[AS_OF].iloc[calib]), kind="stable")
    calibrator, losses = choose_calibrator(
        model, matrix.iloc[calib], labels[calib], list(config.calibration_methods), calib_order
    )
    step(f"calibrated ({calibrator.method})")

    calib_probability = calibrator.apply(model.decision_function(matrix.iloc[calib]))
    policy = fit_policy(
        calib_probability,
        rule_scores[RULE_MQL].to_numpy()[calib],
        as_utc_ns(training_set[AS_OF].iloc[calib]),
        config.policy,
    )
    # The rules' points mapped to a probability on the same calibration slice, so that both
    # go through the same evaluation (log loss, Brier, calibration) on equal terms.
    rules_calibrator = IsotonicRegression(
        out_of_bounds="clip", y_min=PROBABILITY_FLOOR, y_max=1 - PROBABILITY_FLOOR
    )
    rules_calibrator.fit(rule_scores[RULE_SCORE].to_numpy()[calib], labels[calib])

    scorer = LeadScorer(
        booster=booster,
        calibrator=calibrator,
        policy=policy,
        rules=rules,
        features=features,
        horizon_days=snapshots.horizon_days,
        feature_names=names,
        metadata={
            "trained_at": datetime.now(UTC).isoformat(),
            "slices": {name: split.starts[name].isoformat() for name in SLICES},
            "best_iteration": booster.best_iteration,
            "calibration_losses": losses,
        },
        num_threads=config.lightgbm.num_threads,
    )
    test_probability = scorer.probabilities(matrix.iloc[test])
    monitored = _monitored_features(booster, names, matrix)
    scorer.metadata["monitored_features"] = monitored
    # What the newest holdout looked like, for drift (PSI) against what is scored later.
    scorer.metadata["reference"] = {
        "probability": reference_distribution(test_probability),
        "features": {
            name: reference_distribution(matrix[name].iloc[test].to_numpy(dtype=np.float64))
            for name in monitored
        },
    }
    rule_score = rule_scores[RULE_SCORE].to_numpy()[test]
    test_frame = pd.DataFrame(
        {
            LEAD_ID: training_set[LEAD_ID].to_numpy()[test],
            AS_OF: training_set[AS_OF].array[test],
            LABEL: labels[test],
            "probability": test_probability,
            "mql": policy.mql(test_probability),
            RULE_SCORE: rule_score,
            "rule_probability": rules_calibrator.predict(rule_score),
            RULE_MQL: rule_scores[RULE_MQL].to_numpy()[test],
        }
    )
    segment = (
        pd.Series(training_set[SEGMENT_COLUMN].to_numpy()[test]).astype("str")
        if SEGMENT_COLUMN in training_set.columns
        else None
    )
    evaluation = evaluate(
        labels[test],
        Scores("model", test_probability, test_frame["mql"].to_numpy()),
        Scores("rules", test_frame["rule_probability"].to_numpy(), test_frame[RULE_MQL].to_numpy()),
        segment=segment,
        segment_name=SEGMENT_COLUMN,
    )
    step("evaluated on the newest holdout")
    return TrainingResult(
        scorer=scorer,
        evaluation=evaluation,
        split=split,
        test=test_frame,
        training_set=training_set,
        calibration_losses=losses,
        best_iteration=booster.best_iteration,
    )
