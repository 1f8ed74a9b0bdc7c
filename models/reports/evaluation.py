"""Evaluate the model and the rule-based points the same way, on the same holdout.

Both scorers arrive as a `Scores`: a calibrated probability of converting within the horizon (the
rules' points are mapped to one by an isotonic fit elsewhere) and the scorer's own MQL flag. The
same functions measure both, and the two MQL lists are compared at their own thresholds and at
equal volume (the model's top k, k = number of rules MQLs), so "better" means more conversions
from the same amount of sales work.

Outputs are built for MLflow and people: `Evaluation.metrics` is a flat dict[str, float] whose
keys are valid MLflow metric keys, `Evaluation.tables` are DataFrames, the figures use
matplotlib's object API only (no pyplot: nothing global, no display), and `write_artifacts` writes
evaluation.json, three PNGs and a self-contained summary.html.

The rules' figures have one definition: their calibrated probability, the points mapped to a
probability by an isotonic fit on the calibration slice (`RULES_BASIS`), which is also what the
publish gate compares. Reports name it, because its ROC AUC can differ from the raw points'.

Undefined numbers are NaN, never a crash or a made-up value: AUCs on a single-class sample, rates
of empty lists, ratios over a zero. In the JSON they become `null`.

Ties: `top_k` breaks them by position (a list must have exactly k leads). Deciles and the gain
curve do not: a run of tied scores stays in one decile, and the gain curve is linear across it
(the expected capture under random tie-breaking), so coarse scores such as the isotonic-mapped
rules are not helped or hurt by row order. `ties_at_threshold` counts the leads that share the
probability of the weakest lead on an MQL list: a scorer cannot rank them against each other, so
a threshold there takes or leaves them as one block.
"""

from __future__ import annotations

import html
import io
import json
import logging
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from features.storage import atomic_paths

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
LabelArray = npt.NDArray[np.int8]

N_DECILES = 10
MISSING_SEGMENT = "(missing)"
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\-]+")
_MAX_KEY_PART = 100  # MLflow keys stop at 250 characters; leave room for prefix and metric name

# What the rules' probability is, named in every report that shows a rules figure.
RULES_BASIS = "calibrated probability"
RULES_BASIS_NOTE = (
    "The rules are judged by their calibrated probability: their points mapped to a probability "
    "by an isotonic fit on the calibration slice, as the publish gate compares them. Its ROC AUC "
    "can differ from that of the raw points, because the map gives neighbouring point values "
    "one probability (ties)."
)

# A share of leads at the model's threshold worth a warning: one block flips the list's size.
_MANY_TIES = 0.05

BY_SEGMENT_COLUMNS = [
    "key",
    "count",
    "conversions",
    "base_rate",
    "model_roc_auc",
    "rules_roc_auc",
    "model_list_count",
    "rules_list_count",
    "model_list_conversion_rate",
    "rules_list_conversion_rate",
    "conversion_ratio",
]


# --- inputs ------------------------------------------------------------------------------------


def _labels(y: npt.ArrayLike) -> LabelArray:
    """Outcomes as 0/1; anything else (NaN, 2, 'yes') is a caller's bug, not a label."""
    values = np.asarray(y)
    if values.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {values.shape}")
    if values.dtype != np.bool_:
        if pd.isna(values).any():
            raise ValueError("y has missing values; evaluate only leads with a known outcome")
        if not np.isin(values, [0, 1]).all():
            raise ValueError("y must hold only 0/1 or booleans")
    return values.astype(np.int8)


def _flags(values: npt.ArrayLike, n: int, what: str) -> BoolArray:
    flags = np.asarray(values)
    if flags.shape != (n,):
        raise ValueError(f"{what} has shape {flags.shape}, expected ({n},)")
    if flags.dtype != np.bool_:
        if pd.isna(flags).any() or not np.isin(flags, [0, 1]).all():
            raise ValueError(f"{what} must hold only booleans or 0/1")
        flags = flags.astype(np.bool_)
    return flags


def _scores(values: npt.ArrayLike, n: int | None, what: str) -> FloatArray:
    scores = np.asarray(values, dtype=np.float64)
    if scores.ndim != 1 or (n is not None and len(scores) != n):
        expected = "one-dimensional" if n is None else f"shape ({n},)"
        raise ValueError(f"{what} has shape {scores.shape}, expected {expected}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what} has NaN or infinite values")
    return scores


def _probabilities(values: npt.ArrayLike, n: int, what: str = "probability") -> FloatArray:
    probability = _scores(values, n, what)
    if len(probability) and (probability.min() < 0.0 or probability.max() > 1.0):
        raise ValueError(f"{what} has values outside [0, 1]")
    return probability


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 or NaN (an undefined rate)."""
    if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


@dataclass(frozen=True)
class Scores:
    """One scorer's output on the holdout: calibrated probability and its own MQL decision."""

    name: str  # "model" or "rules"; used in legends and headings
    probability: np.ndarray  # calibrated probability of converting within the horizon
    mql: np.ndarray  # bool, this scorer's own MQL decision

    def __post_init__(self) -> None:
        # Validate once here so every function below can trust the arrays.
        probability = _probabilities(self.probability, len(np.asarray(self.probability)))
        object.__setattr__(self, "probability", probability)
        object.__setattr__(self, "mql", _flags(self.mql, len(probability), f"{self.name}.mql"))


# --- metrics on one scorer ---------------------------------------------------------------------


def reliability_table(
    y: npt.ArrayLike, probability: npt.ArrayLike, n_bins: int = 10
) -> pd.DataFrame:
    """Observed conversion rate against mean predicted probability in equal-frequency bins.

    Bin edges are the quantiles of `probability` and values on an edge fall in the lower bin,
    exactly as `sklearn.calibration.calibration_curve(strategy="quantile")`; this table adds
    the count per bin, which that function does not return. Tied probabilities cannot be split,
    so coarse scores give fewer, larger bins; empty bins are dropped and `bin` counts 1, 2, ...
    over the bins that remain, from the lowest probabilities up.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    labels = _labels(y)
    p = _probabilities(probability, len(labels))
    if len(p) == 0:
        return pd.DataFrame(
            {
                "bin": pd.Series([], dtype="int64"),
                "mean_predicted": pd.Series([], dtype="float64"),
                "observed_rate": pd.Series([], dtype="float64"),
                "count": pd.Series([], dtype="int64"),
            }
        )
    edges = np.percentile(p, np.linspace(0.0, 100.0, n_bins + 1))
    bin_of = np.searchsorted(edges[1:-1], p)
    count = np.bincount(bin_of, minlength=n_bins)
    predicted = np.bincount(bin_of, weights=p, minlength=n_bins)
    observed = np.bincount(bin_of, weights=labels, minlength=n_bins)
    used = count > 0
    return pd.DataFrame(
        {
            "bin": np.arange(1, int(used.sum()) + 1, dtype=np.int64),
            "mean_predicted": predicted[used] / count[used],
            "observed_rate": observed[used] / count[used],
            "count": count[used].astype(np.int64),
        }
    )


def expected_calibration_error(
    y: npt.ArrayLike, probability: npt.ArrayLike, n_bins: int = 10
) -> float:
    """ECE over `n_bins` equal-frequency bins: sum of (bin share) * |mean predicted - observed|.

    Equal-frequency (quantile) bins, not equal-width ones, because lead conversion probabilities
    crowd near zero: equal-width bins would put nearly every lead in the first bin. The bins are
    those of `reliability_table`. On a finite sample ECE is positive even for perfect
    probabilities (each bin's observed rate is noisy, roughly sqrt(p(1-p) * n_bins / n)).
    NaN on an empty sample.
    """
    table = reliability_table(y, probability, n_bins)
    total = int(table["count"].sum())
    if total == 0:
        return math.nan
    gap = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float((table["count"] / total * gap).sum())


CLASSIFICATION_KEYS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "base_rate",
    "mean_probability",
)


def classification_metrics(
    y: npt.ArrayLike, probability: npt.ArrayLike, n_bins: int = 10
) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score, ECE, base rate and mean predicted probability.

    `pr_auc` is scikit-learn's average precision (the step-wise area, not the trapezoidal one,
    which is optimistic). ROC and PR AUC are NaN when `y` has a single class; `ece` is
    `expected_calibration_error`. Comparing `mean_probability` with `base_rate` shows calibration
    in the large. Everything is NaN on an empty sample.
    """
    labels = _labels(y)
    p = _probabilities(probability, len(labels))
    n = len(labels)
    if n == 0:
        return dict.fromkeys(CLASSIFICATION_KEYS, math.nan)
    positives = int(labels.sum())
    two_classes = 0 < positives < n
    return {
        "roc_auc": float(roc_auc_score(labels, p)) if two_classes else math.nan,
        "pr_auc": float(average_precision_score(labels, p)) if two_classes else math.nan,
        # labels=[0, 1]: a single-class sample still has a defined log loss.
        "log_loss": float(log_loss(labels, p, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, p, pos_label=1)),
        "ece": expected_calibration_error(labels, p, n_bins),
        "base_rate": positives / n,
        "mean_probability": float(p.mean()),
    }


def mql_metrics(y: npt.ArrayLike, mql: npt.ArrayLike) -> dict[str, float]:
    """Size and quality of one MQL list.

    precision is the list's conversion rate, recall the share of all conversions it holds, lift
    its conversion rate over the base rate. Rates of an empty list are NaN.
    """
    labels = _labels(y)
    flags = _flags(mql, len(labels), "mql")
    n = len(labels)
    count = int(flags.sum())
    conversions = int(labels[flags].sum())
    precision = _ratio(conversions, count)
    return {
        "mql_count": float(count),
        "mql_share": _ratio(count, n),
        "precision": precision,
        "recall": _ratio(conversions, int(labels.sum())),
        "lift": _ratio(precision, _ratio(int(labels.sum()), n)),
    }


def ties_at_threshold(probability: npt.ArrayLike, mql: npt.ArrayLike) -> float:
    """How many leads share the probability of the weakest lead on the MQL list: the block a
    threshold there takes (or, for a list not made by that probability, may split). NaN for an
    empty list."""
    p = _scores(probability, None, "probability")
    flags = _flags(mql, len(p), "mql")
    if not flags.any():
        return math.nan
    return float(np.count_nonzero(p == p[flags].min()))


def decile_table(y: npt.ArrayLike, score: npt.ArrayLike) -> pd.DataFrame:
    """Conversion by score decile; decile 1 holds the top 10% of leads by score.

    Always ten rows. A run of tied scores is kept together, in the decile of its average rank,
    so with coarse scores some deciles are larger and some empty (count 0, NaN rates): the score
    cannot tell those leads apart. `cumulative_capture` is the share of all conversions found in
    this decile and the ones above it. Also `min_score` / `max_score`, the score band.
    """
    labels = _labels(y)
    s = _scores(score, len(labels), "score")
    n = len(labels)
    rank = pd.Series(-s).rank(method="average").to_numpy()  # 1 = highest score
    decile = np.clip(np.ceil(rank * N_DECILES / max(n, 1)), 1, N_DECILES).astype(np.int64)
    grouped = (
        pd.DataFrame({"decile": decile, "y": labels.astype(np.int64), "score": s})
        .groupby("decile")
        .agg(
            count=("y", "size"),
            conversions=("y", "sum"),
            min_score=("score", "min"),
            max_score=("score", "max"),
        )
        .reindex(pd.RangeIndex(1, N_DECILES + 1, name="decile"))
    )
    count = grouped["count"].fillna(0).to_numpy(dtype=np.int64)
    conversions = grouped["conversions"].fillna(0).to_numpy(dtype=np.int64)
    positives = int(conversions.sum())
    base_rate = _ratio(positives, n)
    rate = np.where(count > 0, conversions / np.maximum(count, 1), np.nan)
    return pd.DataFrame(
        {
            "decile": np.arange(1, N_DECILES + 1, dtype=np.int64),
            "count": count,
            "conversions": conversions,
            "conversion_rate": rate,
            "lift": rate / base_rate if base_rate > 0 else np.full(N_DECILES, np.nan),
            "cumulative_capture": (
                np.cumsum(conversions) / positives if positives else np.full(N_DECILES, np.nan)
            ),
            "min_score": grouped["min_score"].to_numpy(dtype=np.float64),
            "max_score": grouped["max_score"].to_numpy(dtype=np.float64),
        }
    )


def gain_curve(y: npt.ArrayLike, score: npt.ArrayLike, n_points: int = 101) -> pd.DataFrame:
    """Cumulative gain and lift when contacting leads from the highest score down.

    `share_contacted` runs evenly from 0 to 1; `share_of_conversions_captured` is exact at the
    end of each run of tied scores and linear inside it (the expected capture if ties were
    broken at random). `lift` = captured / contacted, NaN at 0 where it is undefined; 1 is
    random. Capture and lift are NaN when there is no conversion at all.
    """
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}")
    labels = _labels(y)
    s = _scores(score, len(labels), "score")
    n = len(labels)
    positives = int(labels.sum())
    share = np.linspace(0.0, 1.0, n_points)
    if positives == 0:
        captured = np.full(n_points, np.nan)
    else:
        order = np.argsort(-s, kind="stable")
        ranked = s[order]
        ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), n - 1]  # last row of each tie run
        cumulative = np.cumsum(labels[order])
        captured = np.interp(
            share, np.r_[0.0, (ends + 1) / n], np.r_[0.0, cumulative[ends] / positives]
        )
    lift = np.full(n_points, np.nan)
    lift[1:] = captured[1:] / share[1:]
    return pd.DataFrame(
        {"share_contacted": share, "share_of_conversions_captured": captured, "lift": lift}
    )


# --- comparing two lists -----------------------------------------------------------------------


def top_k(score: npt.ArrayLike, k: int) -> BoolArray:
    """Flag the k highest scores; among equal scores the earlier position wins."""
    s = _scores(score, None, "score")
    k = operator.index(k)
    if not 0 <= k <= len(s):
        raise ValueError(f"k must be between 0 and {len(s)}, got {k}")
    chosen = np.zeros(len(s), dtype=np.bool_)
    chosen[np.argsort(-s, kind="stable")[:k]] = True
    return chosen


LIST_GROUPS = ("model", "rules", "both", "model_only", "rules_only", "neither")


def list_groups(model: BoolArray, rules: BoolArray) -> dict[str, BoolArray]:
    """Membership of each of LIST_GROUPS, from the two lists' flags."""
    return {
        "model": model,
        "rules": rules,
        "both": model & rules,
        "model_only": model & ~rules,
        "rules_only": rules & ~model,
        "neither": ~model & ~rules,
    }


def compare_lists(
    y: npt.ArrayLike, model_mql: npt.ArrayLike, rules_mql: npt.ArrayLike
) -> dict[str, float]:
    """Compare two MQL lists on the same leads.

    For each group in model, rules, both, model_only, rules_only, neither: `<group>_count`,
    `<group>_conversions` (converted leads in it; `model_only_conversions` are the conversions
    only the model found) and `<group>_conversion_rate` (NaN for an empty group). Then
    `overlap_jaccard` = both / (model or rules) and `conversion_ratio` = model list conversion
    rate / rules list conversion rate (NaN if either is undefined or the rules' rate is 0).
    """
    labels = _labels(y)
    model = _flags(model_mql, len(labels), "model_mql")
    rules = _flags(rules_mql, len(labels), "rules_mql")
    groups = list_groups(model, rules)
    out: dict[str, float] = {}
    for group, mask in groups.items():
        count = int(mask.sum())
        conversions = int(labels[mask].sum())
        out[f"{group}_count"] = float(count)
        out[f"{group}_conversions"] = float(conversions)
        out[f"{group}_conversion_rate"] = _ratio(conversions, count)
    out["overlap_jaccard"] = _ratio(out["both_count"], float((model | rules).sum()))
    out["conversion_ratio"] = _ratio(out["model_conversion_rate"], out["rules_conversion_rate"])
    return out


def compare_at_equal_volume(
    y: npt.ArrayLike, model_probability: npt.ArrayLike, rules_mql: npt.ArrayLike
) -> dict[str, float]:
    """`compare_lists` with the model's list = its top k, k = the number of rules MQLs."""
    labels = _labels(y)
    rules = _flags(rules_mql, len(labels), "rules_mql")
    probability = _probabilities(model_probability, len(labels), "model_probability")
    return compare_lists(labels, top_k(probability, int(rules.sum())), rules)


# --- the whole evaluation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    """Everything measured on one holdout; `metrics` go to MLflow as they are."""

    metrics: dict[str, float]
    tables: dict[str, pd.DataFrame]
    model_name: str = "model"
    rules_name: str = "rules"
    rules_basis: str = RULES_BASIS  # what the rules' probability is (see RULES_BASIS_NOTE)


def metric_key_part(value: object) -> str:
    """A segment value as part of an MLflow metric key: ASCII letters, digits, _ . - only.

    Spaces and slashes are legal in MLflow keys but become `_` too: a slash makes a key look
    like a path and spaces are awkward to query.
    """
    text = MISSING_SEGMENT if _is_missing(value) else str(value)
    cleaned = _UNSAFE_KEY_CHARS.sub("_", text).strip("_")[:_MAX_KEY_PART]
    return cleaned or "blank"


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _unique_keys(values: Sequence[object]) -> list[str]:
    """Sanitised keys, with _2, _3 ... where two values would otherwise share one."""
    keys: list[str] = []
    seen: set[str] = set()
    for value in values:
        base = key = metric_key_part(value)
        suffix = 2
        while key in seen:
            key = f"{base}_{suffix}"
            suffix += 1
        seen.add(key)
        keys.append(key)
    return keys


def _roc_auc(labels: LabelArray, probability: FloatArray) -> float:
    positives = int(labels.sum())
    if not 0 < positives < len(labels):
        return math.nan
    return float(roc_auc_score(labels, probability))


def segment_table(
    y: npt.ArrayLike,
    model: Scores,
    rules: Scores,
    segment: pd.Series,
    segment_name: str = "lead_source",
) -> pd.DataFrame:
    """One row per segment value, largest first: size, base rate, AUCs, and the equal-volume lists.

    The lists are the ones chosen on the whole holdout (the model's top k overall, the rules'
    MQLs) seen inside each segment, not a new top k per segment: that is what sales would get
    from each source. So the two lists can differ in size within a segment; both counts are
    shown. Missing segment values form their own row, "(missing)". `key` is the value as used
    in metric names.
    """
    labels = _labels(y)
    n = len(labels)
    if len(segment) != n:
        raise ValueError(f"segment has {len(segment)} rows, y has {n}")
    if segment_name in BY_SEGMENT_COLUMNS:
        raise ValueError(f"segment_name {segment_name!r} clashes with a column of the table")
    values = pd.Series(segment.to_numpy(dtype=object))
    text = values.map(lambda v: MISSING_SEGMENT if _is_missing(v) else str(v))
    counts = text.value_counts(sort=False)
    ordered = sorted(counts.index, key=lambda v: (-int(counts[v]), v))
    model_list = top_k(model.probability, int(rules.mql.sum()))
    rows: list[dict[str, Any]] = []
    for value, key in zip(ordered, _unique_keys(ordered), strict=True):
        mask = (text == value).to_numpy()
        lists = compare_lists(labels[mask], model_list[mask], rules.mql[mask])
        conversions = int(labels[mask].sum())
        rows.append(
            {
                segment_name: value,
                "key": key,
                "count": int(mask.sum()),
                "conversions": conversions,
                "base_rate": _ratio(conversions, int(mask.sum())),
                "model_roc_auc": _roc_auc(labels[mask], model.probability[mask]),
                "rules_roc_auc": _roc_auc(labels[mask], rules.probability[mask]),
                "model_list_count": int(lists["model_count"]),
                "rules_list_count": int(lists["rules_count"]),
                "model_list_conversion_rate": lists["model_conversion_rate"],
                "rules_list_conversion_rate": lists["rules_conversion_rate"],
                "conversion_ratio": lists["conversion_ratio"],
            }
        )
    return pd.DataFrame(rows, columns=[segment_name, *BY_SEGMENT_COLUMNS])


def _segment_metrics(by_segment: pd.DataFrame) -> dict[str, float]:
    names = {
        "count": "count",
        "base_rate": "base_rate",
        "model_roc_auc": "model_roc_auc",
        "rules_roc_auc": "rules_roc_auc",
        "model_list_count": "equal_volume_model_count",
        "rules_list_count": "equal_volume_rules_count",
        "model_list_conversion_rate": "equal_volume_model_conversion_rate",
        "rules_list_conversion_rate": "equal_volume_rules_conversion_rate",
        "conversion_ratio": "equal_volume_conversion_ratio",
    }
    out: dict[str, float] = {}
    for row in by_segment.to_dict(orient="records"):
        for column, name in names.items():
            out[f"segment_{row['key']}_{name}"] = float(row[column])
    return out


def evaluate(
    y: npt.ArrayLike,
    model: Scores,
    rules: Scores,
    segment: pd.Series | None = None,
    segment_name: str = "lead_source",
    rules_basis: str = RULES_BASIS,
) -> Evaluation:
    """Measure model and rules the same way on the same leads, and compare their MQL lists.

    `rules.probability` is the rules' calibrated probability (`RULES_BASIS`); a caller passing
    anything else names it in `rules_basis`, which every report shows.

    Metric keys (all floats, NaN where undefined):
    - `n_leads`, `base_rate`;
    - per scorer, with prefix `model_` / `rules_`: roc_auc, pr_auc, log_loss, brier, ece,
      mean_probability, mql_count, mql_share, mql_precision, mql_recall, mql_lift,
      ties_at_threshold (see `ties_at_threshold`), ties_at_threshold_share (of all leads),
      top_decile_lift, decile_<1..10>_conversion_rate;
    - `equal_volume_<compare_lists key>`: the model's top k against the rules' k MQLs;
    - `own_threshold_<compare_lists key>`: each scorer's own MQL flag;
    - with `segment`, per value: `segment_<value>_` count, base_rate, model_roc_auc,
      rules_roc_auc, equal_volume_model_count, equal_volume_rules_count,
      equal_volume_model_conversion_rate, equal_volume_rules_conversion_rate,
      equal_volume_conversion_ratio (<value> through `metric_key_part`).
    Tables: reliability_, deciles_, gain_ (each _model and _rules) and by_segment (empty, with
    its columns, when no segment is given).
    """
    labels = _labels(y)
    n = len(labels)
    if n == 0:
        raise ValueError("no leads to evaluate")
    for scores in (model, rules):
        if len(scores.probability) != n:
            raise ValueError(f"{scores.name} has {len(scores.probability)} rows, y has {n}")

    metrics: dict[str, float] = {"n_leads": float(n), "base_rate": float(labels.mean())}
    tables: dict[str, pd.DataFrame] = {}
    for prefix, scores in (("model", model), ("rules", rules)):
        for key, value in classification_metrics(labels, scores.probability).items():
            if key != "base_rate":  # the same for both; kept once, unprefixed
                metrics[f"{prefix}_{key}"] = value
        for key, value in mql_metrics(labels, scores.mql).items():
            metrics[f"{prefix}_mql_{key.removeprefix('mql_')}"] = value
        ties = ties_at_threshold(scores.probability, scores.mql)
        metrics[f"{prefix}_ties_at_threshold"] = ties
        metrics[f"{prefix}_ties_at_threshold_share"] = ties / n
        deciles = decile_table(labels, scores.probability)
        lift = deciles["lift"].to_numpy(dtype=np.float64)
        metrics[f"{prefix}_top_decile_lift"] = float(lift[0])
        for decile, rate in enumerate(deciles["conversion_rate"].to_numpy(dtype=np.float64), 1):
            metrics[f"{prefix}_decile_{decile}_conversion_rate"] = float(rate)
        tables[f"reliability_{prefix}"] = reliability_table(labels, scores.probability)
        tables[f"deciles_{prefix}"] = deciles
        tables[f"gain_{prefix}"] = gain_curve(labels, scores.probability)

    equal_volume = compare_at_equal_volume(labels, model.probability, rules.mql)
    metrics.update({f"equal_volume_{k}": v for k, v in equal_volume.items()})
    own_threshold = compare_lists(labels, model.mql, rules.mql)
    metrics.update({f"own_threshold_{k}": v for k, v in own_threshold.items()})

    if segment is None:
        tables["by_segment"] = pd.DataFrame(columns=[segment_name, *BY_SEGMENT_COLUMNS])
    else:
        tables["by_segment"] = segment_table(labels, model, rules, segment, segment_name)
        metrics.update(_segment_metrics(tables["by_segment"]))

    logger.info(
        "evaluated %d leads: ROC AUC model %.3f rules %.3f; at equal volume (%d leads) the "
        "model's list converts %.2fx the rules'",
        n,
        metrics["model_roc_auc"],
        metrics["rules_roc_auc"],
        int(equal_volume["rules_count"]),
        equal_volume["conversion_ratio"],
    )
    if metrics["model_ties_at_threshold_share"] > _MANY_TIES:
        logger.warning(
            "%.0f of %d holdout leads (%.0f%%) tie at the model's MQL threshold",
            metrics["model_ties_at_threshold"],
            n,
            100 * metrics["model_ties_at_threshold_share"],
        )
    return Evaluation(
        metrics, tables, model_name=model.name, rules_name=rules.name, rules_basis=rules_basis
    )


HEADLINE_ROWS: tuple[tuple[str, str], ...] = (
    ("ROC AUC", "roc_auc"),
    ("PR AUC (average precision)", "pr_auc"),
    ("Log loss", "log_loss"),
    ("Brier score", "brier"),
    ("Expected calibration error", "ece"),
    ("Mean probability", "mean_probability"),
    ("MQL count", "mql_count"),
    ("MQL share of leads", "mql_share"),
    ("MQL conversion rate", "mql_precision"),
    ("Share of conversions in MQLs", "mql_recall"),
    ("MQL lift over base rate", "mql_lift"),
    ("Leads tied at the MQL threshold", "ties_at_threshold"),
    ("Share of leads tied at the MQL threshold", "ties_at_threshold_share"),
    ("Top-decile lift", "top_decile_lift"),
)


def headline_table(evaluation: Evaluation) -> pd.DataFrame:
    """Model against rules, one metric a row (metric, key, model, rules): for terminal and HTML."""
    m = evaluation.metrics
    return pd.DataFrame(
        [
            {"metric": label, "key": key, "model": m[f"model_{key}"], "rules": m[f"rules_{key}"]}
            for label, key in HEADLINE_ROWS
        ]
    )


# --- figures -----------------------------------------------------------------------------------

_COLORS = {"model": "#1f77b4", "rules": "#ff7f0e"}


def _named(evaluation: Evaluation) -> list[tuple[str, str]]:
    return [("model", evaluation.model_name), ("rules", evaluation.rules_name)]


def reliability_figure(evaluation: Evaluation) -> Figure:
    """Reliability curves of model and rules against the diagonal, and the leads per bin."""
    figure = Figure(figsize=(6.4, 6.4), layout="constrained")
    curve_ax, count_ax = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    tables = {prefix: evaluation.tables[f"reliability_{prefix}"] for prefix in _COLORS}
    # Conversion probabilities crowd near zero: zoom to the data rather than the unit square.
    peak = max(
        (
            float(t[["mean_predicted", "observed_rate"]].to_numpy().max())
            for t in tables.values()
            if len(t)
        ),
        default=0.0,
    )
    upper = min(1.0, peak * 1.1) if peak > 0 else 1.0
    curve_ax.plot([0, upper], [0, upper], linestyle="--", color="grey", label="perfect")
    for prefix, name in _named(evaluation):
        table = tables[prefix]
        ece = evaluation.metrics[f"{prefix}_ece"]
        curve_ax.plot(
            table["mean_predicted"],
            table["observed_rate"],
            marker="o",
            color=_COLORS[prefix],
            label=f"{name} (ECE {ece:.3f})",
        )
        count_ax.plot(table["mean_predicted"], table["count"], marker="o", color=_COLORS[prefix])
    curve_ax.set(
        xlim=(0, upper),
        ylim=(0, upper),
        ylabel="observed conversion rate",
        title="Reliability (equal-frequency bins)",
    )
    curve_ax.legend(loc="upper left")
    curve_ax.grid(alpha=0.3)
    count_ax.set(xlabel="mean predicted probability", ylabel="leads in bin")
    count_ax.set_ylim(bottom=0)
    count_ax.grid(alpha=0.3)
    return figure


def gain_lift_figure(evaluation: Evaluation) -> Figure:
    """Cumulative gain and lift of model and rules, with the random baseline and rules' volume."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    gain_ax, lift_ax = figure.subplots(1, 2)
    gain_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    lift_ax.axhline(1.0, linestyle="--", color="grey", label="random")
    for prefix, name in _named(evaluation):
        gain = evaluation.tables[f"gain_{prefix}"]
        share = gain["share_contacted"]
        gain_ax.plot(
            share, gain["share_of_conversions_captured"], color=_COLORS[prefix], label=name
        )
        lift_ax.plot(share, gain["lift"], color=_COLORS[prefix], label=name)
    volume = evaluation.metrics["rules_mql_share"]
    if math.isfinite(volume) and volume > 0:
        for ax in (gain_ax, lift_ax):
            ax.axvline(
                volume, linestyle=":", color="black", label=f"rules' MQL volume {volume:.0%}"
            )
    gain_ax.set(
        xlabel="share of leads contacted (highest score first)",
        ylabel="share of conversions captured",
        title="Cumulative gain",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    lift_ax.set(
        xlabel="share of leads contacted (highest score first)",
        ylabel="lift over random",
        title="Lift",
        xlim=(0, 1),
    )
    lift_ax.set_ylim(bottom=0)
    for ax in (gain_ax, lift_ax):
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    return figure


def score_distribution_figure(y: npt.ArrayLike, model: Scores, rules: Scores) -> Figure:
    """Histograms of each scorer's probability, converted against not converted.

    Densities, not counts: converted leads are a small minority and would vanish on a count
    scale. The same bins for both panels, so the scorers' spreads compare directly.
    """
    labels = _labels(y).astype(np.bool_)
    for scores in (model, rules):
        if len(scores.probability) != len(labels):
            raise ValueError(
                f"{scores.name} has {len(scores.probability)} rows, y has {len(labels)}"
            )
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharex=True)
    highest = max(
        float(model.probability.max(initial=0.0)), float(rules.probability.max(initial=0.0))
    )
    bins = np.linspace(0.0, highest if highest > 0 else 1.0, 41)
    for ax, scores in zip(axes, (model, rules), strict=True):
        for outcome, text, color in (
            (True, "converted", "#2ca02c"),
            (False, "not converted", "grey"),
        ):
            values = scores.probability[labels == outcome]
            if len(values):  # a density of nothing is undefined
                ax.hist(
                    values,
                    bins=bins,
                    density=True,
                    histtype="stepfilled" if outcome else "step",
                    alpha=0.5 if outcome else 1.0,
                    color=color,
                    label=f"{text} (n={len(values):,})",
                )
        ax.set(title=scores.name, xlabel="predicted probability", ylabel="density")
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
    return figure


# --- HTML and artifacts ------------------------------------------------------------------------


def _number(value: Any, kind: str) -> str:
    """Format for people: 'n/a' for undefined, counts with separators, rates as percentages."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    number = float(value)
    if kind == "count":
        return f"{round(number):,}"
    if kind == "percent":
        return f"{number:.1%}"
    if kind == "ratio":
        return f"{number:.2f}"
    return f"{number:.3f}"


_HEADLINE_KINDS = {
    "mql_count": "count",
    "mql_share": "percent",
    "mql_precision": "percent",
    "mql_recall": "percent",
    "mql_lift": "ratio",
    "ties_at_threshold": "count",
    "ties_at_threshold_share": "percent",
    "top_decile_lift": "ratio",
}


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _frame_html(frame: pd.DataFrame, kinds: Mapping[str, str]) -> str:
    """A table of `frame`'s columns listed in `kinds` (column -> number kind, or 'text')."""
    columns = [c for c in kinds if c in frame.columns]
    rows = [
        [
            str(value) if kinds[c] == "text" else _number(value, kinds[c])
            for c, value in zip(columns, record, strict=True)
        ]
        for record in frame[columns].itertuples(index=False)
    ]
    return _html_table([c.replace("_", " ") for c in columns], rows)


def _lists_html(metrics: Mapping[str, float], prefix: str, names: Mapping[str, str]) -> str:
    labels = {
        "model": f"{names['model']} list",
        "rules": f"{names['rules']} list",
        "both": "in both",
        "model_only": f"only {names['model']}",
        "rules_only": f"only {names['rules']}",
        "neither": "in neither",
    }
    rows = [
        [
            labels[group],
            _number(metrics[f"{prefix}{group}_count"], "count"),
            _number(metrics[f"{prefix}{group}_conversions"], "count"),
            _number(metrics[f"{prefix}{group}_conversion_rate"], "percent"),
        ]
        for group in LIST_GROUPS
    ]
    table = _html_table(["leads", "count", "conversions", "conversion rate"], rows)
    ratio = _number(metrics[f"{prefix}conversion_ratio"], "ratio")
    overlap = _number(metrics[f"{prefix}overlap_jaccard"], "percent")
    return (
        f"{table}<p>{html.escape(names['model'])} list conversion rate / "
        f"{html.escape(names['rules'])} list conversion rate: <b>{ratio}</b>; "
        f"overlap (Jaccard): {overlap}.</p>"
    )


_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto;
       max-width: 60rem; color: #222; line-height: 1.4; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; font-weight: 600; }
.note { color: #666; font-size: 0.9rem; }
"""


def summary_html(evaluation: Evaluation, title: str) -> str:
    """One self-contained HTML page: headline metrics, list comparisons, deciles, segments."""
    m = evaluation.metrics
    names = {"model": evaluation.model_name, "rules": evaluation.rules_name}
    headline = headline_table(evaluation)
    headline_rows = [
        [
            str(row.metric),
            _number(row.model, _HEADLINE_KINDS.get(str(row.key), "")),
            _number(row.rules, _HEADLINE_KINDS.get(str(row.key), "")),
        ]
        for row in headline.itertuples(index=False)
    ]
    deciles = evaluation.tables["deciles_model"].merge(
        evaluation.tables["deciles_rules"], on="decile", suffixes=("_model", "_rules")
    )
    decile_kinds = {"decile": "count"} | {
        f"{column}_{prefix}": kind
        for prefix in ("model", "rules")
        for column, kind in (
            ("count", "count"),
            ("conversion_rate", "percent"),
            ("lift", "ratio"),
            ("cumulative_capture", "percent"),
        )
    }
    by_segment = evaluation.tables["by_segment"]
    segment_html = ""
    if len(by_segment):
        segment_column = str(by_segment.columns[0])
        segment_kinds = {
            segment_column: "text",
            "count": "count",
            "conversions": "count",
            "base_rate": "percent",
            "model_roc_auc": "",
            "rules_roc_auc": "",
            "model_list_count": "count",
            "rules_list_count": "count",
            "model_list_conversion_rate": "percent",
            "rules_list_conversion_rate": "percent",
            "conversion_ratio": "ratio",
        }
        segment_html = (
            f"<h2>By {html.escape(segment_column.replace('_', ' '))}</h2>"
            '<p class="note">The equal-volume lists chosen on all leads, seen within each '
            "segment; AUC is n/a where a segment has one outcome only.</p>"
            + _frame_html(by_segment, segment_kinds)
        )
    k = _number(m["equal_volume_rules_count"], "count")
    ties = m["model_ties_at_threshold"]
    ties_html = (
        f'<p id="model-ties">{_number(ties, "count")} of {_number(m["n_leads"], "count")} leads '
        f"({_number(m['model_ties_at_threshold_share'], 'percent')}) tie exactly at the "
        f"probability of the weakest {html.escape(names['model'])} MQL: it cannot rank them "
        "against each other, so its threshold takes them all or none.</p>"
        if math.isfinite(ties)
        else f'<p id="model-ties">The {html.escape(names["model"])} makes no MQL here.</p>'
    )
    basis = evaluation.rules_basis
    # The note explains the standard basis; any other is at least named.
    basis_html = html.escape(
        RULES_BASIS_NOTE
        if basis == RULES_BASIS
        else f"{names['rules']} figures are for their {basis}."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{_number(m["n_leads"], "count")} leads, {_number(m["base_rate"], "percent")} converted
within the horizon.</p>
<h2>{html.escape(names["model"])} against {html.escape(names["rules"])}</h2>
{_html_table(["metric", names["model"], names["rules"]], headline_rows)}
{ties_html}
<p class="note" id="rules-basis">{basis_html}</p>
<p class="note">ECE: expected calibration error over 10 equal-frequency bins. Lift: conversion
rate over the base rate.</p>
<h2>At equal volume: top {k} by {html.escape(names["model"])} against the {k}
{html.escape(names["rules"])} MQLs</h2>
{_lists_html(m, "equal_volume_", names)}
<h2>Each at its own MQL threshold</h2>
{_lists_html(m, "own_threshold_", names)}
<h2>Conversion by decile (1 = highest scores)</h2>
{_frame_html(deciles, decile_kinds)}
{segment_html}
</body></html>
"""


def _json_value(value: Any) -> Any:
    """JSON has no NaN: undefined numbers become null, numpy scalars plain Python."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluation_json(evaluation: Evaluation) -> str:
    """Metrics and tables (as lists of records) as strict JSON, undefined numbers as null."""
    document = {
        "model_name": evaluation.model_name,
        "rules_name": evaluation.rules_name,
        "rules_basis": evaluation.rules_basis,
        "metrics": {key: _json_value(value) for key, value in evaluation.metrics.items()},
        "tables": {
            name: [
                {str(column): _json_value(value) for column, value in record.items()}
                for record in table.to_dict(orient="records")
            ]
            for name, table in evaluation.tables.items()
        },
    }
    return json.dumps(document, indent=2, allow_nan=False)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_artifacts(
    evaluation: Evaluation,
    y: npt.ArrayLike,
    model: Scores,
    rules: Scores,
    out_dir: Path,
    title: str = "Lead scoring: model against rules",
) -> list[Path]:
    """Write evaluation.json, reliability.png, gain_lift.png, score_distribution.png, summary.html.

    Everything is rendered in memory first and each file is renamed into place only once all are
    written, so a failure leaves no partial artifact behind.
    """
    payloads = {
        "evaluation.json": evaluation_json(evaluation).encode(),
        "reliability.png": _png(reliability_figure(evaluation)),
        "gain_lift.png": _png(gain_lift_figure(evaluation)),
        "score_distribution.png": _png(score_distribution_figure(y, model, rules)),
        "summary.html": summary_html(evaluation, title).encode(),
    }
    paths = [out_dir / name for name in payloads]
    with atomic_paths(paths) as temporaries:
        for temporary, payload in zip(temporaries, payloads.values(), strict=True):
            temporary.write_bytes(payload)
    logger.info("wrote %d evaluation artifacts to %s", len(paths), out_dir)
    return paths


__all__ = [
    "RULES_BASIS",
    "RULES_BASIS_NOTE",
    "Evaluation",
    "Scores",
    "classification_metrics",
    "compare_at_equal_volume",
    "compare_lists",
    "decile_table",
    "evaluate",
    "evaluation_json",
    "expected_calibration_error",
    "gain_curve",
    "gain_lift_figure",
    "headline_table",
    "metric_key_part",
    "mql_metrics",
    "reliability_figure",
    "reliability_table",
    "score_distribution_figure",
    "segment_table",
    "summary_html",
    "ties_at_threshold",
    "top_k",
    "write_artifacts",
]
