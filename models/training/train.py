"""Training: time split, LightGBM with early stopping, calibration, MQL policy, evaluation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from features.build import build_features_at, feature_names
from features.config import FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.pointintime import AS_OF, NS_PER_DAY, as_utc_ns
from features.snapshot import SnapshotTable, empty_events
from features.training import LABEL, make_training_set
from features.vocabulary import CONVERTED, LEAD_ID
from models.reports.evaluation import Evaluation, Scores, evaluate
from models.reports.monitoring import reference_distribution
from models.rules.points import RULE_MQL, RULE_SCORE, PointsRules
from models.rules.scorecard import (
    ScorecardReport,
    calibrate_points,
    fit_scorecard,
    scorecard_report,
)
from models.scoring.learners import Learner
from models.scoring.scorer import LeadScorer
from models.training.candidates import (
    CandidateResult,
    TrainingData,
    blend,
    calibrated,
    candidates,
    choice_reason,
    walk_forward,
)
from models.training.config import TrainConfig
from models.training.drift import DriftReport, drift_report
from models.training.policy import fit_policy
from models.training.split import SLICES, TimeSplit, split_by_order, split_by_time

logger = logging.getLogger(__name__)

SEGMENT_COLUMN = "lead_source"


@dataclass(frozen=True)
class TrainingResult:
    """A trained scorer, how it did on the newest holdout, and what it was trained on."""

    scorer: LeadScorer
    evaluation: Evaluation
    split: TimeSplit
    test: pd.DataFrame  # lead_id, as_of, label, probability, rule_score, rule_probability, mqls
    training_set: pd.DataFrame
    calibration_losses: dict[str, float]
    drift: DriftReport  # each slice's size, span and conversion rate; drift warnings
    candidates: list[CandidateResult]  # every candidate, calibrated; `chosen` is one of them
    chosen: CandidateResult
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


def _monitored_features(
    learner: Learner, data: TrainingData, rows: np.ndarray, count: int = 8
) -> list[str]:
    """The numeric features the model leans on most: the ones worth watching."""
    importance = learner.importance(data.values[rows])
    numeric = [
        i for i, name in enumerate(data.names) if name not in data.levels and importance[i] > 0
    ]
    ranked = sorted(numeric, key=lambda i: -importance[i])
    return [data.names[i] for i in ranked[:count]]


def known_before(examples: _Examples, later: np.ndarray) -> np.ndarray:
    """The rows before the slice `later` whose label was known when it starts."""
    start = examples.order[later].min()
    known = examples.order < start
    if examples.resolved is not None:
        known &= examples.resolved <= start
    return np.flatnonzero(known)


def recency_weights(
    order: np.ndarray, rows: np.ndarray, half_life_share: float | None
) -> np.ndarray | None:
    """Row weights that halve every `half_life_share` of `rows` (by time `order`), counted back
    from the newest of them; other rows weigh 1. None without a half-life."""
    if half_life_share is None:
        return None
    weights = np.ones(len(order))
    ranked = rows[np.argsort(order[rows], kind="stable")]
    age = (len(ranked) - 1 - np.arange(len(ranked))) / max(len(ranked), 1)
    weights[ranked] = np.exp2(-age / half_life_share)
    return weights


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
    # When each row's label became known, in `order` units; None: unknown (no embargo).
    resolved: np.ndarray | None
    describe_order: Callable[[float], str]  # an `order` key in words
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
    resolved = as_utc_ns(training_set[AS_OF]) + snapshots.horizon_days * NS_PER_DAY
    check_labels(labels, split, 1)
    step(f"{len(training_set):,} snapshots split by time")
    examples = _Examples(
        training_set=training_set,
        labels=labels,
        split=split,
        rule_scores=rules.score(spine, leads, events, features),
        order=as_utc_ns(training_set[AS_OF]),
        resolved=resolved if config.split.embargo else None,
        describe_order=lambda ns: f"{pd.Timestamp(int(ns), tz='UTC'):%Y-%m-%d}",
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
        resolved=None,  # no dates: when a label became known is unknown
        describe_order=lambda key: f"{table.order_column or 'row'} {key:,.0f}",
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


def _fit_and_evaluate(
    examples: _Examples, rules: PointsRules, config: TrainConfig, step: Callable[[str], None]
) -> TrainingResult:
    training_set, labels, split = examples.training_set, examples.labels, examples.split
    rule_scores = examples.rule_scores
    features = fix_category_levels(training_set, examples.features)
    names = feature_names(features)
    train, valid, calib, test = (split.rows[name] for name in SLICES)
    weights = recency_weights(
        examples.order, np.flatnonzero(examples.order < examples.order[test].min()),
        config.recency_half_life_share,
    )  # fmt: skip
    data = TrainingData.of(training_set[names], labels, weights)
    drift = drift_report(split, examples.order, examples.describe_order, labels, data.values, names)
    for warning in drift.warnings:
        logger.warning("drift: %s", warning)
    made = candidates(data, train, valid, config)
    step(f"candidates trained: {', '.join(config.candidates)}")
    if config.strategy == "walk_forward":
        before_test = np.concatenate([train, valid, calib])
        before_test = before_test[np.argsort(examples.order[before_test], kind="stable")]
    fits: dict[str, CandidateResult] = {}
    for candidate in made:
        if config.strategy == "walk_forward":
            learner, rows, raw = walk_forward(
                candidate, data, before_test, examples.order, examples.resolved, config
            )
        else:
            # Settings were tuned on the train slice; the learner itself learns from every row
            # whose outcome was known when calibration starts (train, validation and the train
            # rows the validation embargo held back), as production could at that moment.
            learner, rows = candidate.fit(known_before(examples, calib)), calib
            raw = learner.raw_scores(data.values[calib], config.lightgbm.num_threads)
        fits[candidate.name] = calibrated(
            candidate.name, candidate.settings, candidate.notes, learner, rows, raw,
            labels[rows], np.argsort(examples.order[rows], kind="stable"), config,
        )  # fmt: skip
    if "blend" in config.candidates:
        rows = fits["lightgbm"].calibration_rows
        fits["blend"] = blend(
            fits["lightgbm"], fits["logistic"], labels[rows],
            np.argsort(examples.order[rows], kind="stable"), config,
        )  # fmt: skip
    offered = [fits[name] for name in config.candidates]
    chosen = min(offered, key=lambda fit: fit.choice_loss)
    learner, calibration_rows, raw, calibrator = (
        chosen.learner, chosen.calibration_rows, chosen.raw, chosen.calibrator,
    )  # fmt: skip
    losses = chosen.losses
    calibration_labels = labels[calibration_rows]
    why = choice_reason(offered, chosen)
    step(f"chose {chosen.name} ({why}), calibrated ({calibrator.method})")

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
    calibration_points = rule_scores[RULE_SCORE].to_numpy()[calibration_rows]

    def rules_probability(points: np.ndarray) -> np.ndarray:
        return calibrate_points(calibration_points, calibration_labels, points)

    scorer = LeadScorer(
        learner=learner,
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
            "learner": chosen.name,
            "learner_settings": chosen.settings,
            "chosen_because": why,
            "candidates": [fit.summary() for fit in offered],
            "calibration_losses": losses,
            "drift_warnings": drift.warnings,
        },
    )
    # The holdout is scored by the kernel that serves, from the leads and events themselves.
    test_batch = scorer.batch_at(
        training_set[[LEAD_ID, AS_OF]].iloc[test], examples.leads, examples.events
    )
    test_matrix = scorer.feature_matrix(test_batch)
    scorer.with_check_rows(test_matrix.values)
    test_probability = scorer.calibrator.apply(scorer.raw_scores(test_matrix.values))
    monitored = _monitored_features(learner, data, calibration_rows)
    scorer.metadata["monitored_features"] = monitored
    # What the newest holdout looked like, for drift (PSI) against what is scored later.
    scorer.metadata["reference"] = {
        "probability": reference_distribution(test_probability),
        "features": {
            name: reference_distribution(data.values[test, data.names.index(name)])
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
            "rule_probability": rules_probability(rule_score),
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
    # The rules' figures on the comparison page are of the same calibrated probability.
    holdout["rule_probability"] = rules_probability(holdout[RULE_SCORE].to_numpy())
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
        drift=drift,
        candidates=offered,
        chosen=chosen,
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
    judge it on the holdout. A table the report refuses (`ScorecardReport.refused`: too little
    of the model's lift, no better than chance, no positive rule) is not returned; its report
    is, so the numbers and the reason can be shown."""
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
    # The fit rows' outcomes: points become probabilities on them, as the rules' do in training.
    fit_labels = examples.labels[examples.training_set.index.get_indexer(fit_spine.index)]
    report = scorecard_report(
        scorecard,
        test_spine,
        examples.leads,
        examples.events,
        scorer.features,
        test_labels,
        test_probability,
        rules=scorer.rules,
        calibration=(fit_spine, fit_labels),
    )
    if report.refused is not None:
        logger.warning("no suggested points table: %s", report.refused)
        return None, report
    logger.info(
        "suggested points table: %d rules, keeps %.0f%% of the model's lift on the holdout",
        report.n_rules,
        100 * report.lift_kept,
    )
    return scorecard, report
