"""A suggested points table (scorecard): the sparse integer table that best approximates the model.

Marketers can load it into their marketing automation tool (HubSpot, Marketo, Mautic) like any
points table; `scorecard_report` says how much of the model's lift it keeps on a holdout, and
refuses the table (`ScorecardReport.refused`, with the reason) when it keeps too little of it or
ranks no better than chance: a table that looks like a scorecard but is not one is worse than none.

The report's ROC AUCs of the scorecard and the current rules have the evaluation's definition
(`RULES_BASIS`): each table's points mapped to a probability by an isotonic fit on the
calibration slice, given as `calibration`; the raw points' AUCs are reported beside them.

The candidates are exactly what the rules format expresses: attribute values, number bands and
event types (decayed, capped). Their design matrix comes from `PointsRules.points_by_rule`, the
code that scores a table, so the exported YAML scores what was fitted. The fit is a lasso path
on the model's log-odds (not on the labels: the scorecard explains the model), computed from
sufficient statistics, then a least-squares refit on the chosen rules, scaled and rounded.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.stats import spearmanr
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import lars_path_gram
from sklearn.metrics import roc_auc_score

from features.config import FeatureConfig
from features.contract import DataContractError
from models.reports.evaluation import RULES_BASIS, compare_at_equal_volume
from models.rules.points import (
    RULE_MQL,
    RULE_SCORE,
    EventPoints,
    NumberBand,
    PointsRules,
    RuleKey,
    attribute_names,
    attributes_at,
    numbers_at,
)
from models.training.calibration import PROBABILITY_FLOOR

logger = logging.getLogger(__name__)

# Model probabilities of exactly 0 or 1 (isotonic calibration) would have infinite log-odds.
_PROBABILITY_CLIP = 1e-6
# A suggested table must keep at least this share of the model's lift at equal volume.
MIN_LIFT_KEPT = 0.5
POINTS_BASIS = "points"


class ScorecardConfig(BaseModel):
    """How the suggested points table is fitted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_rules: int = Field(25, ge=1, description="most rules (event types, values, bands)")
    max_points: int = Field(30, ge=1, description="points of the strongest rule")
    point_step: int = Field(1, ge=1, description="points are multiples of this (5: 5, 10, ...)")
    half_life_days: float | None = Field(30.0, gt=0, description="None: points never decay")
    # An event type's points stop at this quantile of its (decayed) counts, in whole events.
    event_cap_quantile: float = Field(0.9, gt=0, le=1)
    # Candidate bands of a number start at these quantiles (rounded to 2 significant digits).
    number_quantiles: list[float] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    # A rule must apply to at least this share of snapshots, and not to all but this share:
    # it keeps ids and free text (every value rare) out without naming them.
    min_support: float = Field(0.01, gt=0, lt=0.5)
    max_values_per_attribute: int = Field(30, ge=1)
    # None: the feature config's categorical columns and the parsed fit attributes (seniority,
    # job function, email domain).
    attribute_columns: list[str] | None = None
    # None: the feature config's numeric columns.
    number_columns: list[str] | None = None

    @field_validator("number_quantiles")
    @classmethod
    def _quantiles_inside(cls, value: list[float]) -> list[float]:
        if not all(0 < q < 1 for q in value):
            raise ValueError("number_quantiles must lie strictly between 0 and 1")
        return sorted(set(value))


def candidate_rules(
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    features: FeatureConfig,
    config: ScorecardConfig,
) -> PointsRules:
    """Every rule the scorecard may choose, at one point each (event caps in whole events)."""
    n = len(spine)
    return PointsRules(
        mql_threshold=0,
        half_life_days=config.half_life_days,
        events=_event_candidates(spine, leads, events, features, config) if n else {},
        attributes=_attribute_candidates(spine, leads, features, config) if n else {},
        numbers=_number_candidates(spine, leads, features, config) if n else {},
    )


def fit_scorecard(
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    features: FeatureConfig,
    model_probability: npt.ArrayLike,
    mql_share: float,
    config: ScorecardConfig,
) -> PointsRules:
    """The sparse integer points table closest to the model's log-odds on these snapshots.

    `model_probability` is the model's calibrated probability for each snapshot of `spine`;
    `mql_share` the share of snapshots the model's policy marks MQL: the table's threshold
    marks about the same share here.
    """
    probability = np.asarray(model_probability, dtype=np.float64)
    if probability.shape != (len(spine),):
        raise ValueError(
            f"model_probability has shape {probability.shape}, expected ({len(spine)},)"
        )
    if not np.isfinite(probability).all() or probability.min() < 0 or probability.max() > 1:
        raise ValueError("model_probability must hold probabilities in [0, 1]")
    if not 0 < mql_share < 1:
        raise ValueError(f"mql_share must be between 0 and 1, got {mql_share}")
    if len(spine) == 0:
        raise DataContractError("no snapshots to fit a scorecard on")
    clipped = np.clip(probability, _PROBABILITY_CLIP, 1 - _PROBABILITY_CLIP)
    log_odds = np.log(clipped / (1 - clipped))
    if np.ptp(log_odds) == 0:
        raise DataContractError("the model gives every snapshot the same probability")

    candidates = candidate_rules(spine, leads, events, features, config)
    design = candidates.points_by_rule_at(spine, leads, events, features)
    if not design.keys:
        raise DataContractError(
            f"no rule applies to at least {config.min_support:.0%} of the snapshots",
            hint="name categorical or numeric columns in the feature config, or lower min_support",
        )
    weights = _sparse_weights(design.points, log_odds, config.max_rules)
    points = _integer_points(weights, config)
    scorecard = _table(candidates, design.keys, points, mql_threshold=0.0)
    scores = scorecard.score(spine, leads, events, features)[RULE_SCORE].to_numpy()
    threshold = _threshold_for_share(scores, mql_share)
    fit = np.corrcoef(scores, log_odds)[0, 1] if np.ptp(scores) > 0 else 0.0
    logger.info(
        "scorecard: %d of %d candidate rules, correlation %.3f with the model's log-odds, "
        "MQL at %g points (%.1f%% of snapshots)",
        len(scorecard.rule_keys()),
        len(design.keys),
        fit,
        threshold,
        100 * np.mean(scores >= threshold),
    )
    return scorecard.model_copy(update={"mql_threshold": threshold})


@dataclass(frozen=True)
class ScorecardReport:
    """How a scorecard compares with the model (and the current rules) on one holdout."""

    n_snapshots: int
    base_rate: float
    model_roc_auc: float
    # Of `roc_auc_basis`: the calibrated probability (as the evaluation) or, without a
    # calibration slice, the points.
    scorecard_roc_auc: float
    rules_roc_auc: float | None  # None when no current rules were given
    scorecard_points_roc_auc: float  # of the raw points: ties and all, as a marketer ranks
    rules_points_roc_auc: float | None
    # The scorecard's MQLs, and the model's top list of the same size.
    list_size: int
    model_list_conversion_rate: float
    scorecard_list_conversion_rate: float
    # (scorecard list rate / base - 1) / (model list rate / base - 1): 1 keeps all the lift.
    lift_kept: float
    n_rules: int
    rank_correlation: float  # Spearman, scorecard points vs model probability
    roc_auc_basis: str = RULES_BASIS
    # Why the table is not suggested (`refusal`); None when it is.
    refused: str | None = None

    def as_dict(self) -> dict[str, float | int | str | None]:
        return dataclasses.asdict(self)


def scorecard_report(
    scorecard: PointsRules,
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    features: FeatureConfig,
    labels: npt.ArrayLike,
    model_probability: npt.ArrayLike,
    rules: PointsRules | None = None,
    calibration: tuple[pd.DataFrame, npt.ArrayLike] | None = None,
    min_lift_kept: float = MIN_LIFT_KEPT,
) -> ScorecardReport:
    """Model vs scorecard (vs `rules`) on held-out snapshots with known outcomes.

    `calibration` (snapshots before the holdout and their outcomes: the calibration slice) maps
    each table's points to a probability as training maps the rules', so the AUCs are those the
    evaluation reports; without it they are the points' own.
    """
    y = np.asarray(labels).astype(np.int8)
    probability = np.asarray(model_probability, dtype=np.float64)
    scored = scorecard.score(spine, leads, events, features)
    points = scored[RULE_SCORE].to_numpy()
    lists = compare_at_equal_volume(y, probability, scored[RULE_MQL].to_numpy())
    base = float(y.mean()) if len(y) else math.nan
    model_rate = lists["model_conversion_rate"]
    scorecard_rate = lists["rules_conversion_rate"]
    model_lift = model_rate / base - 1 if base > 0 else math.nan

    def aucs(table: PointsRules, table_points: np.ndarray) -> tuple[float, float]:
        """ROC AUC of the table on its basis, and of its raw points."""
        if calibration is None:
            return _roc_auc(y, table_points), _roc_auc(y, table_points)
        fit_spine, fit_labels = calibration
        fit_points = table.score(fit_spine, leads, events, features)[RULE_SCORE].to_numpy()
        mapped = calibrate_points(fit_points, np.asarray(fit_labels), table_points)
        return _roc_auc(y, mapped), _roc_auc(y, table_points)

    scorecard_auc, scorecard_points_auc = aucs(scorecard, points)
    rules_auc: tuple[float | None, float | None] = (None, None)
    if rules is not None:
        rules_auc = aucs(rules, rules.score(spine, leads, events, features)[RULE_SCORE].to_numpy())
    report = ScorecardReport(
        n_snapshots=len(y),
        base_rate=base,
        model_roc_auc=_roc_auc(y, probability),
        scorecard_roc_auc=scorecard_auc,
        rules_roc_auc=rules_auc[0],
        scorecard_points_roc_auc=scorecard_points_auc,
        rules_points_roc_auc=rules_auc[1],
        list_size=int(lists["rules_count"]),
        model_list_conversion_rate=model_rate,
        scorecard_list_conversion_rate=scorecard_rate,
        lift_kept=(scorecard_rate / base - 1) / model_lift if model_lift else math.nan,
        n_rules=len(scorecard.rule_keys()),
        rank_correlation=float(spearmanr(points, probability).statistic)
        if np.ptp(points) > 0
        else math.nan,
        roc_auc_basis=POINTS_BASIS if calibration is None else RULES_BASIS,
    )
    return dataclasses.replace(report, refused=refusal(scorecard, report, min_lift_kept))


def refusal(
    scorecard: PointsRules, report: ScorecardReport, min_lift_kept: float = MIN_LIFT_KEPT
) -> str | None:
    """Why `scorecard` must not be suggested, from its holdout `report`; None when it may be.

    Refused when it keeps less than `min_lift_kept` of the model's lift at equal volume (or the
    lift cannot be measured), ranks no better than chance (ROC AUC at or below 0.5 on its basis
    or on its raw points), gives no rule positive points, or makes a lead with no points MQL.
    """
    reasons = []
    if not math.isfinite(report.lift_kept):
        reasons.append("the model's lift cannot be measured on this holdout")
    elif report.lift_kept < min_lift_kept:
        reasons.append(
            f"it keeps {report.lift_kept:.0%} of the model's lift at equal volume "
            f"(at least {min_lift_kept:.0%} is needed)"
        )
    for auc, basis in (
        (report.scorecard_roc_auc, report.roc_auc_basis),
        (report.scorecard_points_roc_auc, POINTS_BASIS),
    ):
        if not auc > 0.5:  # NaN too: a ranking that cannot be measured is not suggested
            reasons.append(f"its ROC AUC ({basis}) is {auc:.3f}, no better than chance")
            break
    if not _has_positive_points(scorecard):
        reasons.append("no rule gives positive points")
    if scorecard.mql_threshold <= 0:
        reasons.append(
            f"its MQL threshold is {scorecard.mql_threshold:g} points, so a lead with no "
            "points is an MQL"
        )
    return "; ".join(reasons) or None


def calibrate_points(
    fit_points: np.ndarray, fit_labels: np.ndarray, points: np.ndarray
) -> npt.NDArray[np.float64]:
    """`points` as a probability: the isotonic map from points to outcomes on (`fit_points`,
    `fit_labels`), as training maps the rules' points on the calibration slice."""
    isotonic = IsotonicRegression(
        out_of_bounds="clip", y_min=PROBABILITY_FLOOR, y_max=1 - PROBABILITY_FLOOR
    )
    mapped: npt.NDArray[np.float64] = isotonic.fit(fit_points, fit_labels).predict(points)
    return mapped


def _has_positive_points(table: PointsRules) -> bool:
    return (
        any(spec.points > 0 for spec in table.events.values())
        or any(p > 0 for values in table.attributes.values() for p in values.values())
        or any(band.points > 0 for bands in table.numbers.values() for band in bands)
    )


# --- candidates --------------------------------------------------------------------------------


def _supported(share: float, config: ScorecardConfig) -> bool:
    return config.min_support <= share <= 1 - config.min_support


def _event_candidates(
    spine: pd.DataFrame,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    features: FeatureConfig,
    config: ScorecardConfig,
) -> dict[str, EventPoints]:
    kinds = [k for k in features.event_types if k not in features.outbound_event_types]
    if not kinds or events.empty:
        return {}
    uncapped = PointsRules(
        mql_threshold=0,
        half_life_days=config.half_life_days,
        events={kind: EventPoints(points=1) for kind in kinds},
    )
    decayed = uncapped.points_by_rule_at(spine, leads, events, features).points
    candidates: dict[str, EventPoints] = {}
    for j, kind in enumerate(kinds):
        seen = decayed[:, j] > 0
        if not _supported(float(seen.mean()), config):
            continue
        # A cap in whole events keeps points x cap a whole number once points are.
        cap = max(1, round(float(np.quantile(decayed[seen, j], config.event_cap_quantile))))
        candidates[kind] = EventPoints(points=1, cap=cap)
    return candidates


def _attribute_candidates(
    spine: pd.DataFrame, leads: pd.DataFrame, features: FeatureConfig, config: ScorecardConfig
) -> dict[str, dict[str, float]]:
    columns = config.attribute_columns
    if columns is None:
        numeric = {*features.numeric_columns}
        columns = [
            c
            for c in attribute_names([str(c) for c in leads.columns], features)
            if (c not in leads.columns or c in features.categorical_columns) and c not in numeric
        ]
    texts = attributes_at(spine, leads, features, columns)
    candidates: dict[str, dict[str, float]] = {}
    for column in columns:
        shares = texts[column].value_counts(normalize=True, dropna=True)
        kept = [str(v) for v, share in shares.items() if _supported(float(share), config)]
        if kept:
            candidates[column] = dict.fromkeys(kept[: config.max_values_per_attribute], 1.0)
    return candidates


def _number_candidates(
    spine: pd.DataFrame, leads: pd.DataFrame, features: FeatureConfig, config: ScorecardConfig
) -> dict[str, list[NumberBand]]:
    columns = features.numeric_columns if config.number_columns is None else config.number_columns
    values = numbers_at(spine, leads, columns)
    candidates: dict[str, list[NumberBand]] = {}
    for column in columns:
        numbers = values[column].to_numpy()
        known = numbers[~np.isnan(numbers)]
        if len(known) == 0:
            continue
        cuts = np.quantile(known, config.number_quantiles, method="lower")
        bands = [
            NumberBand(at_least=cut, points=1)
            for cut in sorted({_two_significant_digits(c) for c in cuts})
            if _supported(float(np.mean(numbers >= cut)), config)
        ]
        if bands:
            candidates[column] = bands
    return candidates


def _two_significant_digits(value: float) -> float:
    """674 -> 670, 2.333 -> 2.3: thresholds a marketer can type."""
    return float(f"{value:.2g}")


# --- fit ---------------------------------------------------------------------------------------


def _sparse_weights(design: np.ndarray, target: np.ndarray, max_rules: int) -> np.ndarray:
    """Weights per design column, at most `max_rules` non-zero, fitting `target` least squares.

    The lasso path (LARS) on standardised columns picks the rules, from the Gram matrix alone
    so 100k snapshots cost one matrix product; an unpenalised refit on the chosen ones undoes
    the lasso's shrinkage, which would otherwise flatten the points.
    """
    n, n_columns = design.shape
    centred = design - design.mean(axis=0)
    scale = np.sqrt((centred**2).mean(axis=0))
    usable = scale > 0
    scale[~usable] = 1.0
    gram = centred.T @ centred / np.outer(scale, scale)
    xy = centred.T @ (target - target.mean()) / scale
    # A column equal to an earlier one or its complement (a yes/no attribute's two values) is
    # the same rule: LARS would stall on it.
    for j in range(n_columns):
        earlier = np.flatnonzero(usable[:j])
        if usable[j] and (np.abs(gram[j, earlier]) > n * (1 - 1e-9)).any():
            usable[j] = False
    columns = np.flatnonzero(usable)
    # The path only needs to run until it holds more rules than allowed.
    _, _, path = lars_path_gram(
        xy[columns],
        gram[np.ix_(columns, columns)],
        n_samples=n,
        method="lasso",
        max_iter=2 * max_rules + 10,
    )
    chosen = np.zeros(0, dtype=np.int64)
    for step in range(path.shape[1]):
        active = columns[path[:, step] != 0]
        if len(active) > max_rules:
            break
        chosen = active
    weights = np.zeros(n_columns)
    if len(chosen):
        sub = gram[np.ix_(chosen, chosen)]
        weights[chosen] = np.linalg.lstsq(sub, xy[chosen], rcond=None)[0] / scale[chosen]
    return weights


def _integer_points(weights: np.ndarray, config: ScorecardConfig) -> np.ndarray:
    """Weights scaled so the strongest rule has `max_points`, rounded to `point_step`."""
    strongest = np.abs(weights).max(initial=0.0)
    if strongest == 0:
        return np.zeros_like(weights)
    step = config.point_step
    points: np.ndarray = np.round(weights * config.max_points / strongest / step) * step
    return points


def _table(
    candidates: PointsRules, keys: list[RuleKey], points: np.ndarray, mql_threshold: float
) -> PointsRules:
    """The candidates' table with the rules of non-zero points, strongest first per section."""
    events: dict[str, EventPoints] = {}
    attributes: dict[str, dict[str, float]] = {}
    numbers: dict[str, list[NumberBand]] = {}
    order = sorted(range(len(keys)), key=lambda j: -abs(points[j]))
    for j in order:
        key, value = keys[j], float(points[j])
        if value == 0:
            continue
        if key.section == "events":
            cap = candidates.events[key.name].cap
            events[key.name] = EventPoints(
                points=value, cap=None if cap is None else abs(value) * cap
            )
        elif key.section == "attributes":
            attributes.setdefault(key.name, {})[str(key.value)] = value
        else:
            assert isinstance(key.value, float)
            numbers.setdefault(key.name, []).append(NumberBand(at_least=key.value, points=value))
    return PointsRules(
        mql_threshold=mql_threshold,
        half_life_days=candidates.half_life_days,
        events=events,
        attributes=attributes,
        numbers={
            column: sorted(bands, key=lambda band: band.at_least)
            for column, bands in numbers.items()
        },
    )


def _threshold_for_share(scores: np.ndarray, share: float) -> float:
    """The whole number whose MQL list (score >= it) comes closest to `share` of the snapshots.

    Decayed event points make scores fractional; every distinct list has a whole-number
    threshold, the next one up from a score.
    """
    values = np.unique(np.ceil(scores))
    at_or_above = 1 - np.searchsorted(np.sort(scores), values, side="left") / len(scores)
    return float(values[np.argmin(np.abs(at_or_above - share))])


def _roc_auc(labels: np.ndarray, score: np.ndarray) -> float:
    if labels.min(initial=0) == labels.max(initial=0):
        return math.nan
    return float(roc_auc_score(labels, score))
