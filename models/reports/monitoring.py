"""Monitoring after deployment: drift against training and outcomes of logged predictions.

Pure functions, no I/O. `leadscore monitor` reads the prediction log and the outcomes posted back,
and these functions turn them into tables:

- drift: `reference_distribution` summarises a column at training time (on the newest holdout,
  stored as JSON in the model bundle); `population_stability_index` and `drift_report` compare
  what the service scores now against it.
- outcomes: `resolve_predictions` decides, for each logged prediction, whether its lead converted
  within the horizon, did not, or is still pending; `outcome_report` builds conversion by tier,
  calibration, model list against rules list, and a summary from that.

The label is the training label: won in [as_of, as_of + horizon). A lead that had closed before
the prediction's as_of is left out (training leaves such snapshots out too).

Undefined numbers are NaN, as in `models.reports.evaluation`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.reports.evaluation import (
    LIST_GROUPS,
    compare_lists,
    expected_calibration_error,
    reliability_table,
)

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

# Shares below this count as this, so an empty bin gives a large but finite PSI term.
PSI_FLOOR = 1e-4
# The usual reading of PSI (credit-scoring practice): below 0.1 stable, 0.1 to 0.25 a moderate
# shift worth a look, above 0.25 a major shift (retrain or find the broken input).
PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
NO_DATA = "no data"
_SHARE_TOLERANCE = 1e-6

DRIFT_COLUMNS = ["name", "psi", "level", "n"]
PREDICTION_COLUMNS = (
    "lead_id",
    "scored_at",
    "as_of",
    "model_version",
    "probability",
    "mql",
    "tier",
    "rule_score",
    "rule_mql",
)
OUTCOME_COLUMNS = ("lead_id", "outcome", "closed_at")

# Status of one prediction, see `resolve_predictions`.
CONVERTED = "converted"
NOT_CONVERTED = "not_converted"
PENDING = "pending"
CLOSED_BEFORE = "closed_before_as_of"
MISSING_TIER = "(missing)"

BY_TIER_COLUMNS = [
    "tier",
    "predictions",
    "resolved",
    "converted",
    "conversion_rate",
    "mean_probability",
]
MODEL_VS_RULES_COLUMNS = ["list", "count", "conversions", "conversion_rate"]


# --- drift -------------------------------------------------------------------------------------


def _values(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {array.shape}")
    return array


def _bin_shares(values: FloatArray, cuts: FloatArray, total: int) -> FloatArray:
    """Share of `total` per bin; a value on a cut falls in the lower bin, as in reliability_table.

    Only the inner cuts are used, so values outside the reference range land in the end bins.
    """
    bin_of = np.searchsorted(cuts, values, side="left")
    counts = np.bincount(bin_of, minlength=len(cuts) + 1)
    return counts.astype(np.float64) / total


def reference_distribution(values: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    """Quantile bins of `values` and the share of values in each, to measure drift against later.

    Returns `edges` (bins + 1 at most: -inf, the distinct inner quantiles, inf), `shares` (one per
    bin) and `missing` (one number: the share of NaN), which sum to 1 with `shares`. Missing
    values get their own share so that PSI sees a jump in missing values. Tied values cannot be
    split, so discrete or constant columns get fewer bins (a constant c: (-inf, c] and (c, inf)).
    Quantiles use finite values only; +-inf count in the end bins.

    JSON note: the end edges are infinite; `json.dumps` writes them as -Infinity/Infinity (which
    Python reads back) but refuses them with `allow_nan=False`. PSI never reads the end edges.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    x = _values(values)
    if x.size == 0:
        raise ValueError("no values to build a reference distribution from")
    missing = np.isnan(x)
    present = x[~missing]
    finite = present[np.isfinite(present)]
    if finite.size:
        quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        cuts = np.unique(quantiles)
    else:
        cuts = np.empty(0, dtype=np.float64)
    return {
        "edges": [-math.inf, *cuts.tolist(), math.inf],
        "shares": _bin_shares(present, cuts, x.size).tolist(),
        "missing": [float(missing.mean())],
    }


def _reference_arrays(reference: Mapping[str, list[float]]) -> tuple[FloatArray, FloatArray]:
    """(inner cuts, expected shares with the missing share last), checked."""
    edges = np.asarray(reference["edges"], dtype=np.float64)
    shares = np.asarray(reference["shares"], dtype=np.float64)
    missing = np.asarray(reference.get("missing", [0.0]), dtype=np.float64)
    if edges.ndim != 1 or len(edges) != len(shares) + 1 or len(shares) == 0:
        raise ValueError(f"reference has {len(edges)} edges for {len(shares)} shares")
    if missing.shape != (1,):
        raise ValueError("reference 'missing' must hold exactly one share")
    cuts = edges[1:-1]
    if np.isnan(cuts).any() or (np.diff(cuts) <= 0).any():
        raise ValueError("reference edges must be increasing")
    expected = np.concatenate([shares, missing])
    if (expected < 0).any() or abs(float(expected.sum()) - 1.0) > _SHARE_TOLERANCE:
        raise ValueError("reference shares (with the missing share) must be >= 0 and sum to 1")
    return cuts, expected


def population_stability_index(reference: dict[str, list[float]], values: np.ndarray) -> float:
    """PSI of `values` against a `reference_distribution`: sum (p_i - q_i) * ln(p_i / q_i).

    p are the current shares, q the reference shares, over the reference bins plus the missing
    share; both are floored at PSI_FLOOR so an empty bin counts as a large, finite shift. Reading:
    < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift. On a finite sample PSI is positive
    even without drift (about (bins - 1) / n for n current values). NaN when `values` is empty.
    """
    cuts, expected = _reference_arrays(reference)
    x = _values(values)
    if x.size == 0:
        return math.nan
    missing = np.isnan(x)
    current = np.concatenate([_bin_shares(x[~missing], cuts, x.size), [missing.mean()]])
    p = np.maximum(current, PSI_FLOOR)
    q = np.maximum(expected, PSI_FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def drift_level(psi: float) -> str:
    """'stable', 'moderate' or 'major' by the usual PSI reading; 'no data' for NaN."""
    if math.isnan(psi):
        return NO_DATA
    if psi < PSI_MODERATE:
        return "stable"
    return "moderate" if psi <= PSI_MAJOR else "major"


def _numeric(column: pd.Series, name: str) -> FloatArray:
    if isinstance(column.dtype, pd.CategoricalDtype) or not (
        pd.api.types.is_numeric_dtype(column) or column.dtype == object
    ):
        raise TypeError(f"column '{name}' is not numeric ({column.dtype}); PSI needs numbers")
    try:
        numbers = pd.to_numeric(column)
    except (TypeError, ValueError) as error:
        raise TypeError(f"column '{name}' holds values that are not numbers") from error
    return np.asarray(numbers.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def drift_report(
    reference: dict[str, dict[str, list[float]]], current: pd.DataFrame
) -> pd.DataFrame:
    """PSI per column present in both `reference` and `current`, largest shift first.

    Columns: name, psi, level ('stable' / 'moderate' / 'major', 'no data' when `current` has no
    rows), n (rows of `current`, missing values included: they are part of the distribution).
    """
    rows: list[dict[str, object]] = []
    for name, distribution in reference.items():
        if name not in current.columns:
            continue
        psi = population_stability_index(distribution, _numeric(current[name], name))
        rows.append({"name": name, "psi": psi, "level": drift_level(psi), "n": len(current)})
    report = pd.DataFrame(rows, columns=DRIFT_COLUMNS).astype(
        {"name": "str", "psi": "float64", "level": "str", "n": "int64"}
    )
    return report.sort_values("psi", ascending=False, na_position="last", kind="stable")[
        DRIFT_COLUMNS
    ].reset_index(drop=True)


def expand_features(predictions: pd.DataFrame, column: str = "features") -> pd.DataFrame:
    """The JSON feature values of logged predictions as columns (index kept; blank -> no values)."""
    records = [
        json.loads(text) if isinstance(text, str) and text else {} for text in predictions[column]
    ]
    return pd.DataFrame.from_records(records, index=predictions.index)


# --- outcomes ----------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ValueError(f"{what} lack columns: {', '.join(absent)}")


def _utc(values: pd.Series, what: str) -> pd.Series:
    """Timezone-aware timestamps in UTC (ns). Naive ones are refused: their zone is a guess."""
    if len(values) == 0 and not isinstance(values.dtype, pd.DatetimeTZDtype):
        return pd.Series([], dtype="datetime64[ns, UTC]", index=values.index)
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        values = pd.to_datetime(values)
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"{what} must be timezone-aware timestamps")
    return pd.Series(values.dt.tz_convert("UTC").dt.as_unit("ns"))


def _latest_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    """One outcome per lead (the latest closed_at if there are several), keyed by lead id text."""
    _require(outcomes, OUTCOME_COLUMNS, "outcomes")
    outcome = outcomes["outcome"]
    if outcome.isna().any() or not outcome.isin([0, 1]).all():
        raise ValueError("outcomes 'outcome' must be 1 (won) or 0 (lost) on every row")
    closed_at = _utc(outcomes["closed_at"], "outcomes 'closed_at'")
    if closed_at.isna().any():
        raise ValueError("outcomes 'closed_at' is missing on some rows")
    frame = pd.DataFrame(
        {
            "key": outcomes["lead_id"].astype("str").array,
            "outcome": outcome.to_numpy(dtype=np.int8),
            "closed_at": closed_at.array,
        }
    )
    frame = frame.sort_values("closed_at", kind="stable")
    return frame.drop_duplicates("key", keep="last").reset_index(drop=True)


def _resolve(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    horizon_days: int,
    now: pd.Timestamp | None,
    only_matured: bool,
) -> tuple[pd.DataFrame, pd.Timestamp]:
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    _require(predictions, PREDICTION_COLUMNS, "predictions")
    frame = predictions.reset_index(drop=True)
    as_of = _utc(frame["as_of"], "predictions 'as_of'")
    if as_of.isna().any():
        raise ValueError("predictions 'as_of' is missing on some rows")
    latest = _latest_outcomes(outcomes)
    joined = pd.DataFrame({"key": frame["lead_id"].astype("str").array}).merge(
        latest, on="key", how="left", validate="many_to_one"
    )
    closed_at = joined["closed_at"].astype("datetime64[ns, UTC]")
    if now is None:
        scored_at = _utc(frame["scored_at"], "predictions 'scored_at'")
        moments = pd.concat([scored_at, as_of, latest["closed_at"]], ignore_index=True)
        now = moments.max() if moments.notna().any() else pd.Timestamp.now(tz="UTC")
    now = pd.Timestamp(now)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")

    deadline = as_of + pd.Timedelta(days=horizon_days)
    # Comparisons with NaT are False, so leads without an outcome fall through to the last rule.
    known = (closed_at <= now).to_numpy(dtype=np.bool_)
    before = known & (closed_at < as_of).to_numpy(dtype=np.bool_)
    won = (joined["outcome"] == 1).fillna(False).to_numpy(dtype=np.bool_)
    in_horizon = (closed_at < deadline).to_numpy(dtype=np.bool_)
    horizon_over = (deadline <= now).to_numpy(dtype=np.bool_)
    converted = known & ~before & won & in_horizon
    not_converted = (known & ~before & ~converted) | (~known & horizon_over)
    status = np.select(
        [before, converted, not_converted], [CLOSED_BEFORE, CONVERTED, NOT_CONVERTED], PENDING
    )
    if only_matured:
        status = np.where(~horizon_over & (status != CLOSED_BEFORE), PENDING, status)

    out = frame.copy()
    out["outcome"] = joined["outcome"].astype("Int8").array
    out["closed_at"] = closed_at.array
    out["status"] = pd.Series(status, dtype="str")
    label = np.where(status == CONVERTED, 1.0, np.where(status == NOT_CONVERTED, 0.0, np.nan))
    out["converted"] = pd.Series(label).astype("Int8")
    return out, now


def resolve_predictions(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    horizon_days: int,
    now: pd.Timestamp | None = None,
    *,
    only_matured: bool = False,
) -> pd.DataFrame:
    """`predictions` with `outcome`, `closed_at`, `status` and `converted` (Int8 1/0/NA) added.

    With deadline = as_of + horizon_days, a prediction is:
    - `converted` if its lead was won at a time in [as_of, deadline);
    - `not_converted` if its lead was lost after as_of, won at or after the deadline, or has no
      outcome and the deadline is not after `now`;
    - `pending` otherwise (no outcome yet and the horizon still running);
    - `closed_before_as_of` if the lead had closed before as_of: it should not have been scored,
      and training leaves such snapshots out, so it counts in neither rate.
    Outcomes closed after `now` are not known yet at `now`. `now` defaults to the latest time in
    the inputs (scored_at, as_of, closed_at). Lead ids are matched as text, so 17 and "17" meet.
    With several outcomes for one lead the latest closed_at is used.

    Early after a deployment, wins resolve as soon as they happen but most non-conversions only
    when the horizon has passed, so the conversion among resolved predictions is biased upward.
    `only_matured=True` counts only predictions whose horizon has passed (unbiased, but later).
    """
    resolved, _ = _resolve(predictions, outcomes, horizon_days, now, only_matured)
    return resolved


def _flags(values: pd.Series) -> npt.NDArray[np.bool_]:
    return np.asarray(values.to_numpy(dtype=np.bool_), dtype=np.bool_)


def _by_tier(resolved: pd.DataFrame, is_resolved: npt.NDArray[np.bool_]) -> pd.DataFrame:
    tier = resolved["tier"].astype("str").where(resolved["tier"].notna(), MISSING_TIER)
    groups = pd.DataFrame(
        {
            "tier": tier,
            "predictions": 1,
            "resolved": is_resolved.astype(np.int64),
            "converted": (resolved["status"] == CONVERTED).astype(np.int64),
            # Over resolved predictions only, so it compares with their conversion rate.
            "mean_probability": resolved["probability"].where(is_resolved),
        }
    ).groupby("tier", sort=True)
    table = groups[["predictions", "resolved", "converted"]].sum()
    table["mean_probability"] = groups["mean_probability"].mean()
    table["conversion_rate"] = table["converted"] / table["resolved"].where(table["resolved"] > 0)
    table = table.reset_index()
    return table.astype(
        {
            "tier": "str",
            "predictions": "int64",
            "resolved": "int64",
            "converted": "int64",
            "conversion_rate": "float64",
            "mean_probability": "float64",
        }
    )[BY_TIER_COLUMNS]


def outcome_report(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    horizon_days: int,
    now: pd.Timestamp | None = None,
    *,
    n_bins: int = 10,
    min_resolved_for_ece: int = 200,
    only_matured: bool = False,
) -> dict[str, pd.DataFrame]:
    """Conversion by tier, calibration, model vs rules and a summary, over resolved predictions.

    Each logged prediction counts once (a lead scored three times counts three times), resolved
    as in `resolve_predictions` (which documents `now` and `only_matured`). Tables:
    - `by_tier`: tier, predictions, resolved, converted, conversion_rate, mean_probability (over
      the resolved ones, so it compares with conversion_rate); tiers sorted by name;
    - `calibration`: `models.reports.evaluation.reliability_table` on the resolved predictions;
    - `model_vs_rules`: `models.reports.evaluation.compare_lists` of the `mql` and `rule_mql`
      lists on the resolved predictions where both flags are known; columns list (model, rules,
      both, model_only, rules_only, neither), count, conversions, conversion_rate;
    - `summary`: one row: predictions, leads, resolved, pending, closed_before_as_of, converted,
      resolved_share, conversion_rate, mean_probability, ece (NaN below `min_resolved_for_ece`
      resolved predictions: with fewer, ECE over 10 bins is mostly noise), the model and rules
      list conversion rates and their ratio, now, horizon_days.
    """
    frame, report_now = _resolve(predictions, outcomes, horizon_days, now, only_matured)
    status = frame["status"]
    is_resolved = status.isin([CONVERTED, NOT_CONVERTED]).to_numpy(dtype=np.bool_)
    resolved = frame[is_resolved]
    y = resolved["converted"].to_numpy(dtype=np.int8)
    probability = resolved["probability"].to_numpy(dtype=np.float64)

    both_known = (resolved["mql"].notna() & resolved["rule_mql"].notna()).to_numpy(dtype=np.bool_)
    lists = compare_lists(
        y[both_known],
        _flags(resolved["mql"][both_known]),
        _flags(resolved["rule_mql"][both_known]),
    )
    model_vs_rules = pd.DataFrame(
        {
            "list": list(LIST_GROUPS),
            "count": [int(lists[f"{group}_count"]) for group in LIST_GROUPS],
            "conversions": [int(lists[f"{group}_conversions"]) for group in LIST_GROUPS],
            "conversion_rate": [lists[f"{group}_conversion_rate"] for group in LIST_GROUPS],
        },
        columns=MODEL_VS_RULES_COLUMNS,
    )

    n = len(frame)
    n_resolved = int(is_resolved.sum())
    n_converted = int(y.sum())
    enough = n_resolved >= max(min_resolved_for_ece, 1)
    summary = pd.DataFrame(
        [
            {
                "predictions": n,
                "leads": int(frame["lead_id"].astype("str").nunique()),
                "resolved": n_resolved,
                "pending": int((status == PENDING).sum()),
                "closed_before_as_of": int((status == CLOSED_BEFORE).sum()),
                "converted": n_converted,
                "resolved_share": n_resolved / n if n else math.nan,
                "conversion_rate": n_converted / n_resolved if n_resolved else math.nan,
                "mean_probability": float(probability.mean()) if n_resolved else math.nan,
                "ece": expected_calibration_error(y, probability, n_bins) if enough else math.nan,
                "model_list_conversion_rate": lists["model_conversion_rate"],
                "rules_list_conversion_rate": lists["rules_conversion_rate"],
                "conversion_ratio": lists["conversion_ratio"],
                "now": report_now,
                "horizon_days": horizon_days,
            }
        ]
    )
    return {
        "by_tier": _by_tier(frame, is_resolved),
        "calibration": reliability_table(y, probability, n_bins),
        "model_vs_rules": model_vs_rules,
        "summary": summary,
    }


__all__ = [
    "CLOSED_BEFORE",
    "CONVERTED",
    "NOT_CONVERTED",
    "PENDING",
    "PSI_MAJOR",
    "PSI_MODERATE",
    "drift_level",
    "drift_report",
    "expand_features",
    "outcome_report",
    "population_stability_index",
    "reference_distribution",
    "resolve_predictions",
]
