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

from features.build import build_features_at, feature_names
from features.config import FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.pointintime import AS_OF, as_utc_ns
from features.snapshot import SnapshotTable, empty_events
from features.training import LABEL, make_training_set
from features.vocabulary import CONVERTED, LEAD_ID
from models.reports.evaluation import Evaluation, Scores, evaluate
from models.reports.monitoring import reference_distribution
from models.rules.points import RULE_MQL, RULE_SCORE, PointsRules
from models.rules.scorecard import ScorecardReport, fit_scorecard, scorecard_report
from models.scoring.scorer import LeadScorer
from models.training.calibration import (
    PROBABILITY_FLOOR,
    BoosterClassifier,
    ScoreColumn,
    choose_calibrator,
)
from models.training.config import LightGBMConfig, TrainConfig
from models.training.policy import fit_policy
from models.training.split import SLICES, TimeSplit, split_by_order, split_by_time

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
    # Each holdout lead once (its first holdout snapshot), scored as served, with its outcome:
    # the model-vs-rules comparison is made from it.
    holdout: pd.DataFrame
    # The suggested points table (fitted to the model's calibration-slice probabilities) and how
    # it does on the holdout; None when no rule candidate applies.
    scorecard: PointsRules | None
    scorecard_report: ScorecardReport | None


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


@dataclass(frozen=True)
class _Examples:
    """What both modes hand to the fit: features and labels per snapshot, in time order keys."""

    training_set: pd.DataFrame  # lead_id, as_of, the features, LABEL
    labels: np.ndarray
    split: TimeSplit
    rule_scores: pd.DataFrame
    order: np.ndarray  # time-order key per row
    features: FeatureConfig
    horizon_days: int
    segment_column: str | None
    leads: pd.DataFrame
    events: pd.DataFrame


def train_lead_scorer(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    *,
    features: FeatureConfig,
    snapshots: SnapshotConfig,
    rules: PointsRules,
    config: TrainConfig,
    segment_column: str | None = SEGMENT_COLUMN,
    on_step: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Build snapshots from leads and events, split by time, fit, calibrate, set the MQL
    policy and evaluate."""
    step = _stepper(on_step)
    training_set = make_training_set(leads, events, snapshots, features)
    spine = training_set[[LEAD_ID, AS_OF]]
    labels = training_set[LABEL].to_numpy().astype(np.int64)
    check_labels(labels, None, config.min_conversions)
    split = split_by_time(training_set[AS_OF], snapshots.horizon_days, config.split)
    check_labels(labels, split, 1)
    step(f"{len(training_set):,} snapshots split by time")
    examples = _Examples(
        training_set=training_set,
        labels=labels,
        split=split,
        rule_scores=rules.score(spine, leads, events, features),
        order=as_utc_ns(training_set[AS_OF]),
        features=features,
        horizon_days=snapshots.horizon_days,
        segment_column=segment_column,
        leads=leads,
        events=events,
    )
    return _fit_and_evaluate(examples, rules, config, step)


def train_snapshot_scorer(
    table: SnapshotTable,
    *,
    rules: PointsRules,
    config: TrainConfig,
    horizon_days: int,
    segment_column: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> TrainingResult:
    """The same fit for a snapshot export: one example per lead with a known outcome, split by
    the export's order column (newest rows are the test)."""
    step = _stepper(on_step)
    known = table.leads[CONVERTED].notna().to_numpy() if CONVERTED in table.leads else None
    if known is None:
        raise DataContractError("a snapshot export needs its label column for training")
    leads = table.leads[known].reset_index(drop=True)
    order = table.order[known]
    # Sorted by time order, as the event-mode training set is.
    by_order = np.argsort(order, kind="stable")
    leads, order = leads.iloc[by_order].reset_index(drop=True), order[by_order]
    spine = leads[[LEAD_ID, AS_OF]]
    events = empty_events(leads[LEAD_ID])
    training_set = build_features_at(spine, leads, events, table.features)
    training_set[LABEL] = leads[CONVERTED].to_numpy(dtype=np.int8)
    labels = training_set[LABEL].to_numpy().astype(np.int64)
    check_labels(labels, None, config.min_conversions)
    split = split_by_order(order, table.order_column or "row", config.split)
    check_labels(labels, split, 1)
    step(f"{len(training_set):,} leads split by {table.order_column or 'file order'}")
    examples = _Examples(
        training_set=training_set,
        labels=labels,
        split=split,
        rule_scores=rules.score(spine, leads, events, table.features),
        order=order,
        features=table.features,
        horizon_days=horizon_days,
        segment_column=segment_column,
        leads=leads,
        events=events,
    )
    return _fit_and_evaluate(examples, rules, config, step)


def _stepper(on_step: Callable[[str], None] | None) -> Callable[[str], None]:
    def step(name: str) -> None:
        logger.info(name)
        if on_step is not None:
            on_step(name)

    return step


def _boost(
    params: dict[str, object],
    matrix: pd.DataFrame,
    labels: np.ndarray,
    rows: np.ndarray,
    rounds: int,
) -> lgb.Booster:
    return lgb.train(
        params, lgb.Dataset(matrix.iloc[rows], labels[rows], free_raw_data=True), rounds
    )


def _walk_forward(
    params: dict[str, object],
    matrix: pd.DataFrame,
    labels: np.ndarray,
    rows: np.ndarray,
    rounds: int,
    config: TrainConfig,
) -> tuple[lgb.Booster, np.ndarray, np.ndarray]:
    """A booster on all `rows` (time-ordered), and raw scores for the newest of them, each time
    block scored by a booster trained only on the rows before it: (booster, scored rows, raw)."""
    first = int(len(rows) * (1 - config.walk_forward_share))
    blocks = np.array_split(np.arange(first, len(rows)), config.walk_forward_folds)
    raw = np.concatenate(
        [
            _boost(params, matrix, labels, rows[: block[0]], rounds).predict(
                matrix.iloc[rows[block]], raw_score=True
            )
            for block in blocks
            if len(block)
        ]
    )
    return _boost(params, matrix, labels, rows, rounds), rows[first:], raw


def _fit_and_evaluate(
    examples: _Examples, rules: PointsRules, config: TrainConfig, step: Callable[[str], None]
) -> TrainingResult:
    training_set, labels, split = examples.training_set, examples.labels, examples.split
    rule_scores = examples.rule_scores
    features = fix_category_levels(training_set, examples.features)
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
    rounds = booster.best_iteration
    step(f"LightGBM trained ({rounds} rounds)")

    if config.strategy == "walk_forward":
        before_test = np.concatenate([train, valid, calib])
        before_test = before_test[np.argsort(examples.order[before_test], kind="stable")]
        booster, calibration_rows, raw = _walk_forward(
            params, matrix, labels, before_test, rounds, config
        )
        step(f"walked forward over {config.walk_forward_folds} time blocks, refit before the test")
    else:
        calibration_rows = calib
        raw = (
            BoosterClassifier(booster, num_threads=config.lightgbm.num_threads)
            .fit(matrix.iloc[calib], labels[calib])
            .decision_function(matrix.iloc[calib])
        )
    calibration_labels = labels[calibration_rows]
    raw_frame = pd.DataFrame({"raw_score": raw})
    calibrator, losses = choose_calibrator(
        ScoreColumn().fit(raw_frame, calibration_labels),
        raw_frame,
        calibration_labels,
        list(config.calibration_methods),
        np.argsort(examples.order[calibration_rows], kind="stable"),
    )
    step(f"calibrated ({calibrator.method})")

    calib_probability = calibrator.apply(raw)
    calibration_times = as_utc_ns(training_set[AS_OF].iloc[calibration_rows])
    policy = fit_policy(
        calib_probability,
        rule_scores[RULE_MQL].to_numpy()[calibration_rows],
        calibration_times,
        config.policy,
    )
    # The rules' points mapped to a probability on the same calibration rows, so that both
    # go through the same evaluation (log loss, Brier, calibration) on equal terms.
    rules_calibrator = IsotonicRegression(
        out_of_bounds="clip", y_min=PROBABILITY_FLOOR, y_max=1 - PROBABILITY_FLOOR
    )
    rules_calibrator.fit(rule_scores[RULE_SCORE].to_numpy()[calibration_rows], calibration_labels)

    scorer = LeadScorer(
        booster=booster,
        calibrator=calibrator,
        policy=policy,
        rules=rules,
        features=features,
        horizon_days=examples.horizon_days,
        feature_names=names,
        metadata={
            "trained_at": datetime.now(UTC).isoformat(),
            "slices": dict(split.first),
            "strategy": config.strategy,
            "best_iteration": rounds,
            "calibration_losses": losses,
        },
        num_threads=config.lightgbm.num_threads,
    )
    # The holdout is scored by the kernel that serves, from the leads and events themselves.
    test_batch = scorer.batch_at(
        training_set[[LEAD_ID, AS_OF]].iloc[test], examples.leads, examples.events
    )
    test_matrix = scorer.feature_matrix(test_batch)
    scorer.with_check_rows(test_matrix.values)
    test_probability = scorer.calibrator.apply(scorer.raw_scores(test_matrix.values))
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
    segment_column = examples.segment_column
    segment = (
        pd.Series(training_set[segment_column].to_numpy()[test]).astype("str")
        if segment_column is not None and segment_column in training_set.columns
        else None
    )
    evaluation = evaluate(
        labels[test],
        Scores("model", test_probability, test_frame["mql"].to_numpy()),
        Scores("rules", test_frame["rule_probability"].to_numpy(), test_frame[RULE_MQL].to_numpy()),
        segment=segment,
        segment_name=segment_column or "segment",
    )
    step("evaluated on the newest holdout")
    holdout = _holdout_leads(scorer, examples, test, labels, segment_column)
    spine = training_set[[LEAD_ID, AS_OF]]
    scorecard, scorecard_summary = _suggest_points(
        examples,
        spine.iloc[calibration_rows],
        calib_probability,
        float(policy.mql(calib_probability).mean()),
        spine.iloc[test],
        labels[test],
        test_probability,
        scorer,
        config,
    )
    return TrainingResult(
        scorer=scorer,
        evaluation=evaluation,
        split=split,
        test=test_frame,
        training_set=training_set,
        calibration_losses=losses,
        best_iteration=rounds,
        holdout=holdout,
        scorecard=scorecard,
        scorecard_report=scorecard_summary,
    )


# The comparison page embeds every lead it shows: the newest this many holdout leads.
HOLDOUT_LEADS_SHOWN = 20_000


def _holdout_leads(
    scorer: LeadScorer,
    examples: _Examples,
    test: np.ndarray,
    labels: np.ndarray,
    segment_column: str | None,
) -> pd.DataFrame:
    """Each holdout lead once, at its first holdout snapshot, scored as it is served."""
    training_set = examples.training_set
    first = ~pd.Series(training_set[LEAD_ID].to_numpy()[test]).duplicated().to_numpy()
    rows = test[first][-HOLDOUT_LEADS_SHOWN:]
    features = training_set.iloc[rows]
    frame = scorer.score_snapshots(
        features[[LEAD_ID, AS_OF]], examples.leads, examples.events
    ).drop(columns="model_version")
    frame[CONVERTED] = labels[rows]
    if segment_column is not None and segment_column in training_set.columns:
        frame[segment_column] = features[segment_column].astype("str").to_numpy()
        frame.loc[features[segment_column].isna().to_numpy(), segment_column] = None
        scorer.metadata["source_column"] = segment_column
    return frame


def _suggest_points(
    examples: _Examples,
    fit_spine: pd.DataFrame,
    fit_probability: np.ndarray,
    mql_share: float,
    test_spine: pd.DataFrame,
    test_labels: np.ndarray,
    test_probability: np.ndarray,
    scorer: LeadScorer,
    config: TrainConfig,
) -> tuple[PointsRules | None, ScorecardReport | None]:
    """Fit the suggested points table on rows the model was not trained on (calibration) and
    judge it on the holdout."""
    if not 0 < mql_share < 1:
        logger.warning("no suggested points table: the model marks no lead (or every lead) MQL")
        return None, None
    try:
        scorecard = fit_scorecard(
            fit_spine,
            examples.leads,
            examples.events,
            scorer.features,
            fit_probability,
            mql_share,
            config.scorecard,
        )
    except DataContractError as exc:
        logger.warning("no suggested points table: %s", exc)
        return None, None
    report = scorecard_report(
        scorecard,
        test_spine,
        examples.leads,
        examples.events,
        scorer.features,
        test_labels,
        test_probability,
        rules=scorer.rules,
    )
    logger.info(
        "suggested points table: %d rules, keeps %.0f%% of the model's lift on the holdout",
        report.n_rules,
        100 * report.lift_kept,
    )
    return scorecard, report
