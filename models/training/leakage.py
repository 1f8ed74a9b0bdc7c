"""Flag columns of a training export that leak the outcome, before anything is trained on them.

Three checks, each on one column at a time (see DESIGN.md, "Point-in-time correctness"):

- ``predicts_label``: the column alone separates the classes suspiciously well (ROC AUC above
  0.80; `rank_by_auc` ranks every column by it).
- ``filled_for_one_class``: the column is filled for one class and mostly empty for the other.
- ``post_outcome_values``: some values are nearly pure and together cover much of one class, the
  signature of status notes written during or after the sale ("Closed by ...", "Lost to ...").

The checks only look at the frame as given: mapping placeholders such as "Select" to missing is the
caller's job.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

PREDICTS_LABEL = "predicts_label"
FILLED_FOR_ONE_CLASS = "filled_for_one_class"
POST_OUTCOME_VALUES = "post_outcome_values"

N_FOLDS = 5
FOLD_SEED = 0
# Share of one class that pure values must cover, in aggregate, to look like post-outcome notes.
# Tags on X Education sits at 46% of negatives; no pre-outcome column there gets above 4%.
POST_OUTCOME_CLASS_COVERAGE = 0.3
_MISSING_LEVEL = "<missing>"


@dataclass(frozen=True)
class LeakageFinding:
    """One suspicious column: which check fired, why in one sentence, and the score it fired on."""

    column: str
    kind: str
    detail: str
    score: float


def _check_label(frame: pd.DataFrame, label: pd.Series) -> np.ndarray:
    if len(label) != len(frame):
        raise ValueError(f"label has {len(label)} rows, frame has {len(frame)}")
    if label.isna().any():
        raise ValueError("label has missing values")
    y = label.to_numpy()
    if set(np.unique(y)) != {0, 1}:
        raise ValueError("label must be 0/1 with both classes present")
    return y.astype(np.int64)


def _is_numeric(column: pd.Series) -> bool:
    # Booleans are flags, not magnitudes: encode them like categories.
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _levels(column: pd.Series) -> np.ndarray:
    """Values as strings with missing as its own level, so mixed types and NaN group cleanly."""
    return column.astype("string").fillna(_MISSING_LEVEL).to_numpy(dtype=object)


def _numeric_auc(column: pd.Series, y: np.ndarray) -> float:
    values = column.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(values)
    if missing.all():
        return 0.5
    # Missing becomes its own level below every observed value.
    filled = np.where(missing, np.nanmin(values) - 1.0, values)
    auc = float(roc_auc_score(y, filled))
    return max(auc, 1.0 - auc)


def _out_of_fold_rates(levels: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's value encoded by its label rate in the other folds.

    Values never seen in the other folds (ids, rare values) get that fold's base rate, so a unique
    id carries no information instead of memorising each row's own label.
    """
    encoded = np.empty(len(y), dtype=float)
    folds = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=FOLD_SEED)
    for train, held_out in folds.split(levels, y):
        rates = pd.Series(y[train]).groupby(levels[train]).mean()
        mapped = pd.Series(levels[held_out]).map(rates)
        encoded[held_out] = mapped.fillna(float(y[train].mean())).to_numpy(dtype=float)
    return encoded


def _categorical_auc(column: pd.Series, y: np.ndarray) -> float:
    auc = float(roc_auc_score(y, _out_of_fold_rates(_levels(column), y)))
    return max(auc, 1.0 - auc)


def _pure_value_coverage(
    column: pd.Series, y: np.ndarray, min_share: float, purity: float
) -> tuple[float, int, list[str]]:
    """Largest share of one class covered by common, nearly pure values; that class; the values."""
    stats = pd.DataFrame({"level": column.astype("string"), "y": y}).dropna()
    if stats.empty:
        return 0.0, 1, []
    rates = stats.groupby("level")["y"].agg(["size", "sum", "mean"])
    common = rates[rates["size"] >= min_share * len(y)]
    best: tuple[float, int, list[str]] = (0.0, 1, [])
    for cls, pure in ((1, common["mean"] >= purity), (0, common["mean"] <= 1.0 - purity)):
        in_class = common.loc[pure, "sum"] if cls == 1 else (common["size"] - common["sum"])[pure]
        coverage = float(in_class.sum()) / float((y == cls).sum())
        if coverage > best[0]:
            best = (coverage, cls, [str(v) for v in in_class.sort_values(ascending=False).index])
    return best


# Above this single-column ROC AUC a column is flagged: few honest pre-outcome fields separate
# won from lost this well alone.
AUC_WARNING = 0.80


@dataclass(frozen=True)
class ColumnAUC:
    column: str
    auc: float  # max(auc, 1 - auc): how well the column alone separates the classes
    how: str


def _column_auc(column: pd.Series, y: np.ndarray) -> ColumnAUC:
    if _is_numeric(column):
        return ColumnAUC(str(column.name), _numeric_auc(column, y), "by value")
    return ColumnAUC(str(column.name), _categorical_auc(column, y), "target-encoded out of fold")


def rank_by_auc(frame: pd.DataFrame, label: pd.Series) -> list[ColumnAUC]:
    """Every column of `frame` by its single-column ROC AUC against `label`, highest first."""
    y = _check_label(frame, label)
    ranked = [_column_auc(frame[name], y) for name in frame.columns]
    return sorted(ranked, key=lambda c: -c.auc)


def auc_ranking_report(ranked: Sequence[ColumnAUC], excluded: Collection[str] = ()) -> str:
    """One line per column, highest AUC first; columns above AUC_WARNING marked."""
    if not ranked:
        return "No columns to rank."
    width = max(len(c.column) for c in ranked)
    lines = [
        f"{c.column:<{width}}  {c.auc:.3f}"
        + ("  above 0.80: check when it is recorded" if c.auc > AUC_WARNING else "")
        + ("  (excluded by the config)" if c.column in excluded else "")
        for c in ranked
    ]
    return "\n".join(["Single-column ROC AUC, every column:", *lines])


def leakage_findings(
    frame: pd.DataFrame,
    label: pd.Series,
    *,
    auc_threshold: float = AUC_WARNING,
    # 0.35, not 0.5: X Education's rep-set Lead Quality is filled for 71% of converted leads and
    # 34% of the rest (gap 0.37) and no other check catches it; the largest gaps among form fields
    # there are 0.30-0.31 (occupation, "what matters most", which may also be sales-filled).
    fill_gap: float = 0.35,
    min_share: float = 0.01,
    post_outcome_purity: float = 0.97,
    exclude: Sequence[str] = (),
) -> list[LeakageFinding]:
    """Columns of `frame` that leak `label` (0/1, no missing values), strongest first per check.

    - predicts_label: single-column ROC AUC, as max(auc, 1 - auc), is > `auc_threshold`. Numeric
      columns are ranked by value with missing below the minimum; other columns are target-encoded
      out of fold (5 stratified, seeded folds), so ids and rare values score ~0.5, not 1.0.
    - filled_for_one_class: |fill rate among positives - fill rate among negatives| >= `fill_gap`.
    - post_outcome_values (non-numeric columns): take the values that cover at least `min_share` of
      all rows and whose label rate is >= `post_outcome_purity` (pure positive) or
      <= 1 - `post_outcome_purity` (pure negative). Flag when the pure-positive values together hold
      at least POST_OUTCOME_CLASS_COVERAGE (30%) of all positives, or the pure-negative ones that
      share of all negatives. One pure value is a useful segment; a third of a class decided by
      such values is an outcome written into the record.

    `label` is matched to `frame` by position, not index. A column can appear under several kinds.
    Columns in `exclude` are skipped.
    """
    y = _check_label(frame, label)
    positives = y == 1
    findings: list[LeakageFinding] = []
    for name in frame.columns:
        if name in exclude:
            continue
        column = frame[name]
        numeric = _is_numeric(column)

        ranked = _column_auc(column, y)
        if ranked.auc > auc_threshold:
            detail = (
                f"alone gives ROC AUC {ranked.auc:.3f} {ranked.how} (threshold {auc_threshold:.2f})"
            )
            findings.append(LeakageFinding(str(name), PREDICTS_LABEL, detail, ranked.auc))

        filled = column.notna().to_numpy()
        pos_fill, neg_fill = float(filled[positives].mean()), float(filled[~positives].mean())
        gap = abs(pos_fill - neg_fill)
        if gap >= fill_gap:
            detail = (
                f"filled for {pos_fill:.0%} of positives but {neg_fill:.0%} of negatives "
                f"(gap {gap:.2f}, threshold {fill_gap:.2f})"
            )
            findings.append(LeakageFinding(str(name), FILLED_FOR_ONE_CLASS, detail, gap))

        if numeric:
            continue
        coverage, cls, values = _pure_value_coverage(column, y, min_share, post_outcome_purity)
        if coverage >= POST_OUTCOME_CLASS_COVERAGE:
            side = "positives" if cls == 1 else "negatives"
            shown = ", ".join(repr(v) for v in values[:3]) + (", ..." if len(values) > 3 else "")
            detail = (
                f"{len(values)} nearly pure value(s) ({shown}) cover {coverage:.0%} of {side} "
                f"(purity {post_outcome_purity:.2f}, threshold {POST_OUTCOME_CLASS_COVERAGE:.0%})"
            )
            findings.append(LeakageFinding(str(name), POST_OUTCOME_VALUES, detail, coverage))

    return sorted(findings, key=lambda f: (f.kind, -f.score))


def leakage_report(findings: Sequence[LeakageFinding], excluded: Collection[str] = ()) -> str:
    """Plain text, one line per finding; says so when nothing was found. Columns in `excluded`
    (already left out of training) are marked."""
    if not findings:
        return "No leakage found."
    width = max(len(f.column) for f in findings)
    lines = [
        f"{f.column:<{width}}  {f.kind:<20}  {f.detail}"
        + ("  (excluded by the config)" if f.column in excluded else "")
        for f in findings
    ]
    return "\n".join([f"{len(findings)} possible leak(s):", *lines])
