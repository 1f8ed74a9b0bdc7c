"""The model's MQL list against the rules' MQL list, on the same labelled leads.

What a marketer asks: if sales worked the model's list instead of the rules' list, how many more
of the leads they call would convert? `compare_model_and_rules` answers on scored leads whose
outcome is known; `comparison_html` renders one self-contained page (the report the CLI writes and
the page the API serves at /compare); `write_comparison` writes that page with CSV lists.
`compare_within` is the same comparison within one source and/or tier: the page computes it for
every filter it offers, so its script only shows numbers, never works them out.

The lists. The rules' list is the leads the points score makes MQL (`rule_mql`). The model has two:
at its own threshold (`mql`) and at equal volume, its N most likely leads with N = the number of
rules MQLs, so that both lists ask the same amount of work of sales. Equal probabilities go to the
lower lead_id, so the list does not depend on row order.

The rules' ranking (their deciles) has the evaluation's definition, their calibrated probability
(`RULES_BASIS`), when the scored leads carry it as `rule_probability`; otherwise it is their points,
and `rules_ranked_by` says which: the page and the JSON name it. The rules' MQL list is always
their points' own (`rule_mql`). `model_ties_at_threshold` counts the leads exactly at the model's
threshold: the model cannot rank them against each other, so they are all on its list or none.

Undefined numbers (the rate of an empty list, a lift when nobody converted) are NaN here, `null`
in JSON and "n/a" on the page, never a crash or a made-up value.

Costs, when given per lead (a column) or per source (a mapping), count what was paid to acquire
the leads compared. Every list comes out of the same leads, so the spend is the same for both:
cost per MQL = total spend / MQLs on the list, cost per converted MQL = total spend / MQLs on the
list that converted. The spend on the list's own leads is reported too (is a list leaning on
expensive sources?). Leads without a known cost count as 0 and are counted in `leads_without_cost`.
"""

from __future__ import annotations

import functools
import html
import io
import itertools
import json
import logging
import math
import re
import textwrap
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
import matplotlib
import numpy as np
import numpy.typing as npt
import pandas as pd
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib.typing import RcKeyType

from features.storage import atomic_paths
from models.reports.evaluation import RULES_BASIS, decile_table, list_groups
from models.scoring.scorer import LeadScorer

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

OUTCOME = "converted"
MISSING = "(missing)"
TIERS = ("A", "B", "C", "D")
SCORED_COLUMNS = ("lead_id", "probability", "mql", "tier", "rule_score", "rule_mql")
RULE_PROBABILITY = "rule_probability"  # optional: the rules' calibrated probability
POINTS_BASIS = "points"

HTML_FILE = "compare.html"
JSON_FILE = "comparison.json"
ALL_LEADS_FILE = "all_leads.csv"
MODEL_LIST_FILE = "model_mql_list.csv"
MODEL_TOP_N_FILE = "model_top_n_list.csv"
RULES_LIST_FILE = "rules_mql_list.csv"

DEFAULT_TITLE = "Model or rules: which leads should go to sales?"
_MAX_SOURCES_CHARTED = 12
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --- the comparison, as data ------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """A set of leads and how many of them converted."""

    leads: int
    converted: int
    conversion_rate: float  # converted / leads; NaN for no leads
    lift: float  # conversion rate / base rate; NaN when either is undefined or the base is 0


@dataclass(frozen=True)
class ListComparison:
    """The model's list against the rules' list on one basis."""

    basis: str  # "equal_volume" (model's top N, N = rules MQLs) or "own_threshold"
    model: Group
    rules: Group
    both: Group
    model_only: Group
    rules_only: Group
    neither: Group
    overlap_share: float  # leads on both lists / leads on either (Jaccard); NaN if both empty
    conversion_ratio: float  # model list rate / rules list rate
    extra_converted: int  # converted leads on the model list minus on the rules list


@dataclass(frozen=True)
class DecileRow:
    """Decile 1 holds the top 10% of leads by score; tied scores stay in one decile."""

    decile: int
    leads: int
    converted: int
    conversion_rate: float
    lift: float
    cumulative_capture: float  # share of all conversions in this decile and those above
    min_score: float
    max_score: float


@dataclass(frozen=True)
class BandRow:
    """Conversion within one score band (a model tier, or a range of rule points)."""

    band: str
    leads: int
    converted: int
    conversion_rate: float
    lift: float
    share_of_leads: float


@dataclass(frozen=True)
class SourceRow:
    """One lead source: its leads, and what each list takes from it.

    The lists are the ones chosen on all leads, seen within the source (what sales would get from
    it), so the two lists may hold different numbers of leads from one source.
    """

    source: str
    leads: int
    converted: int
    conversion_rate: float
    rules_mqls: int
    rules_converted: int
    model_mqls: int  # at equal volume
    model_converted: int
    model_own_mqls: int  # at the model's own threshold
    model_own_converted: int
    spend: float | None  # None without costs
    rules_cost_per_mql: float | None  # source spend / rules MQLs from it
    model_cost_per_mql: float | None  # source spend / model MQLs (equal volume) from it


@dataclass(frozen=True)
class ListCost:
    mqls: int
    converted_mqls: int
    list_spend: float  # paid for the leads on this list
    cost_per_mql: float  # total spend / MQLs
    cost_per_converted_mql: float  # total spend / MQLs that converted


@dataclass(frozen=True)
class Costs:
    total_spend: float  # paid for all leads compared
    leads_without_cost: int  # counted as 0 in every spend
    model_equal_volume: ListCost
    model_own_threshold: ListCost
    rules: ListCost


@dataclass(frozen=True)
class Comparison:
    """Everything the report shows. `leads` (one row per lead, best model rank first) backs the
    CSV lists and the page's lead table; it is not part of equality and must not be mutated."""

    n_leads: int
    converted: int
    base_rate: float
    equal_volume_n: int  # = the number of rules MQLs
    model_threshold: float | None
    rules_threshold: float | None  # as given, or the lowest score among the rules' MQLs
    model_version: str | None
    source_name: str | None
    period: tuple[str, str] | None  # first and last `as_of` (ISO dates), if the frame has them
    # Leads exactly at the model's threshold (at its weakest MQL's probability when the
    # threshold is not given); None without a model MQL or threshold.
    model_ties_at_threshold: int | None
    rules_ranked_by: str  # RULES_BASIS or POINTS_BASIS: what `deciles_rules` sorts by
    equal_volume: ListComparison
    own_threshold: ListComparison
    deciles_model: tuple[DecileRow, ...]
    deciles_rules: tuple[DecileRow, ...]
    by_tier: tuple[BandRow, ...]
    by_rule_band: tuple[BandRow, ...]
    by_source: tuple[SourceRow, ...]  # empty without a source column
    costs: Costs | None
    leads: pd.DataFrame = field(repr=False, compare=False)

    def lists(self) -> dict[str, ListComparison]:
        return {"equal_volume": self.equal_volume, "own_threshold": self.own_threshold}

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready values (undefined numbers as None); without the per-lead rows."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "leads"}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- checking the input -----------------------------------------------------------------------


def _first_ids(lead_id: pd.Series, bad: npt.ArrayLike, limit: int = 3) -> str:
    ids = lead_id[np.asarray(bad, dtype=bool)].head(limit).tolist()
    return ", ".join(map(str, ids))


def _zero_one(values: pd.Series, name: str, lead_id: pd.Series, missing_hint: str) -> IntArray:
    """0/1 or booleans as 0/1; anything else names the column and the first leads."""
    missing = values.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"column {name!r} is empty for {int(missing.sum())} lead(s) (lead_id "
            f"{_first_ids(lead_id, missing)}); {missing_hint}"
        )
    as_int = values.astype(object).map(lambda v: int(v) if isinstance(v, bool | np.bool_) else v)
    numeric = pd.to_numeric(as_int, errors="coerce")
    bad = ~numeric.isin([0, 1]).to_numpy()
    if bad.any():
        raise ValueError(
            f"column {name!r} must hold 0/1 or booleans (lead_id {_first_ids(lead_id, bad)})"
        )
    return numeric.to_numpy(dtype=np.int64)


def _numbers(
    values: pd.Series, name: str, lead_id: pd.Series, low: float = -math.inf, high: float = math.inf
) -> FloatArray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(numbers) | (numbers < low) | (numbers > high)
    if bad.any():
        bounds = f" between {low:g} and {high:g}" if math.isfinite(low) else ""
        raise ValueError(
            f"column {name!r} must hold finite numbers{bounds} (lead_id {_first_ids(lead_id, bad)})"
        )
    return numbers


def _labels(values: pd.Series) -> npt.NDArray[np.object_]:
    """Values as text for grouping; missing ones become '(missing)'."""
    return np.array(
        [MISSING if _is_missing(v) or str(v).strip() == "" else str(v) for v in values],
        dtype=object,
    )


def _is_missing(value: object) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float | np.floating) and math.isnan(value))
    )


def _costs_per_lead(
    scored: pd.DataFrame,
    source: npt.NDArray[np.object_] | None,
    cost_column: str | None,
    cost_per_lead: Mapping[str, float] | None,
) -> FloatArray | None:
    """Cost of each lead, NaN where unknown; None when no costs are given."""
    if cost_column is not None:
        cost = pd.to_numeric(scored[cost_column], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    elif cost_per_lead is not None:
        assert source is not None
        by_source = {str(k): float(v) for k, v in cost_per_lead.items()}
        cost = np.array([by_source.get(s, math.nan) for s in source], dtype=np.float64)
    else:
        return None
    if (cost < 0).any() or np.isinf(cost).any():
        raise ValueError("lead costs must be finite and not negative")
    return cost


# --- computing --------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when the denominator is 0 or either is NaN."""
    if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def _group(mask: BoolArray, y: IntArray, base_rate: float) -> Group:
    leads = int(mask.sum())
    converted = int(y[mask].sum())
    rate = _ratio(converted, leads)
    return Group(leads, converted, rate, _ratio(rate, base_rate))


def _list_comparison(
    basis: str, model: BoolArray, rules: BoolArray, y: IntArray, base_rate: float
) -> ListComparison:
    made = {name: _group(mask, y, base_rate) for name, mask in list_groups(model, rules).items()}
    return ListComparison(
        basis=basis,
        **made,
        overlap_share=_ratio(made["both"].leads, int((model | rules).sum())),
        conversion_ratio=_ratio(made["model"].conversion_rate, made["rules"].conversion_rate),
        extra_converted=made["model"].converted - made["rules"].converted,
    )


def _model_rank(lead_id: pd.Series, probability: FloatArray) -> IntArray:
    """1 = most likely to convert; equal probabilities go to the lower lead_id."""
    keys = pd.DataFrame({"p": -probability, "id": lead_id.to_numpy()})
    try:
        order = keys.sort_values(["p", "id"], kind="mergesort").index.to_numpy()
    except TypeError:  # ids of mixed types: compare them as text, still deterministic
        keys["id"] = keys["id"].astype(str)
        order = keys.sort_values(["p", "id"], kind="mergesort").index.to_numpy()
    rank = np.empty(len(probability), dtype=np.int64)
    rank[order] = np.arange(1, len(probability) + 1)
    return rank


def _deciles(y: IntArray, score: FloatArray) -> tuple[DecileRow, ...]:
    table = decile_table(y, score)
    counts = {c: table[c].to_numpy(dtype=np.int64) for c in ("decile", "count", "conversions")}
    rates = {
        c: table[c].to_numpy(dtype=np.float64)
        for c in ("conversion_rate", "lift", "cumulative_capture", "min_score", "max_score")
    }
    return tuple(
        DecileRow(
            decile=int(counts["decile"][i]),
            leads=int(counts["count"][i]),
            converted=int(counts["conversions"][i]),
            conversion_rate=float(rates["conversion_rate"][i]),
            lift=float(rates["lift"][i]),
            cumulative_capture=float(rates["cumulative_capture"][i]),
            min_score=float(rates["min_score"][i]),
            max_score=float(rates["max_score"][i]),
        )
        for i in range(len(table))
    )


def _bands(
    labels: npt.NDArray[np.object_], order: Sequence[str], y: IntArray, base_rate: float
) -> tuple[BandRow, ...]:
    n = len(y)
    rows = []
    for band in order:
        group = _group(labels == band, y, base_rate)
        rows.append(
            BandRow(
                band,
                group.leads,
                group.converted,
                group.conversion_rate,
                group.lift,
                _ratio(group.leads, n),
            )
        )
    return tuple(rows)


def _points(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def rule_bands(
    rule_score: FloatArray, threshold: float | None
) -> tuple[npt.NDArray[np.object_], list[str]]:
    """Each lead's rule-score band and the bands in order (lowest points first).

    With the rules' MQL threshold t the bands are: under t/2, t/2 to t, t to 2t, 2t and more, so
    the rules' MQLs are the top two; without one, the quartiles of the scores.
    """
    if threshold is not None and threshold > 0:
        edges = [threshold / 2, threshold, threshold * 2]
    elif len(rule_score):
        edges = sorted(set(np.quantile(rule_score, [0.25, 0.5, 0.75]).tolist()))
    else:
        edges = []
    names = (
        [f"under {_points(edges[0])}"]
        + [f"{_points(a)} to under {_points(b)}" for a, b in itertools.pairwise(edges)]
        + [f"{_points(edges[-1])} or more"]
        if edges
        else ["all scores"]
    )
    if threshold is not None and threshold > 0:
        names = [*names[:2], *(f"{name} (rules MQL)" for name in names[2:])]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), rule_score, side="right")
    return np.asarray(names, dtype=object)[index], names


def _reason_text(reasons: object) -> tuple[str, str]:
    """Reasons for and against, as phrases joined by '; '."""
    if isinstance(reasons, str):
        try:
            reasons = json.loads(reasons)
        except json.JSONDecodeError:
            return str(reasons), ""  # already text
    if not isinstance(reasons, Mapping):
        return "", ""
    sides = []
    for side in ("for", "against"):
        items = reasons.get(side) or []
        phrases = [
            str(item.get("phrase") or item.get("feature") or "")
            for item in items
            if isinstance(item, Mapping)
        ]
        sides.append("; ".join(p for p in phrases if p))
    return sides[0], sides[1]


def _single_value(values: pd.Series, name: str) -> Any:
    """The one value a column holds for every lead (threshold, model version), or None."""
    distinct = values.dropna().unique()
    if len(distinct) > 1:
        logger.warning(
            "%s differs between leads (%d values); showing the first", name, len(distinct)
        )
    return distinct[0] if len(distinct) else None


def _period(scored: pd.DataFrame) -> tuple[str, str] | None:
    if "as_of" not in scored.columns or scored.empty:
        return None
    moments = pd.to_datetime(scored["as_of"], utc=True, errors="coerce").dropna()
    if moments.empty:
        return None
    return moments.min().date().isoformat(), moments.max().date().isoformat()


def _list_cost(total: float, known: FloatArray, mask: BoolArray, y: IntArray) -> ListCost:
    mqls = int(mask.sum())
    converted = int(y[mask].sum())
    return ListCost(
        mqls=mqls,
        converted_mqls=converted,
        list_spend=float(known[mask].sum()),
        cost_per_mql=_ratio(total, mqls),
        cost_per_converted_mql=_ratio(total, converted),
    )


def _source_rows(
    source: npt.NDArray[np.object_],
    y: IntArray,
    base_rate: float,
    model_top: BoolArray,
    model_mql: BoolArray,
    rules_mql: BoolArray,
    known_cost: FloatArray | None,
) -> tuple[SourceRow, ...]:
    """One row per source, most leads first."""
    counts = pd.Series(source).value_counts(sort=False)
    rows = []
    for name in sorted(counts.index, key=lambda s: (-int(counts[s]), str(s))):
        inside = source == name
        group = _group(inside, y, base_rate)
        rules_in, model_in, own_in = inside & rules_mql, inside & model_top, inside & model_mql
        spend = None if known_cost is None else float(known_cost[inside].sum())
        rows.append(
            SourceRow(
                source=str(name),
                leads=group.leads,
                converted=group.converted,
                conversion_rate=group.conversion_rate,
                rules_mqls=int(rules_in.sum()),
                rules_converted=int(y[rules_in].sum()),
                model_mqls=int(model_in.sum()),
                model_converted=int(y[model_in].sum()),
                model_own_mqls=int(own_in.sum()),
                model_own_converted=int(y[own_in].sum()),
                spend=spend,
                rules_cost_per_mql=None if spend is None else _ratio(spend, int(rules_in.sum())),
                model_cost_per_mql=None if spend is None else _ratio(spend, int(model_in.sum())),
            )
        )
    return tuple(rows)


def compare_model_and_rules(
    scored: pd.DataFrame,
    *,
    outcome: str = OUTCOME,
    source: str | None = None,
    cost_column: str | None = None,
    cost_per_lead: Mapping[str, float] | None = None,
    rules_threshold: float | None = None,
) -> Comparison:
    """Compare the model's MQL list with the rules' on scored leads with a known outcome.

    `scored` has the scorer's columns (lead_id, probability, mql, tier, rule_score, rule_mql;
    threshold, reasons, model_version, as_of and rule_probability are used when present) and
    the 0/1 `outcome`.
    `source` names an optional lead-source column; costs come from `cost_column` (per lead) or
    `cost_per_lead` (source -> cost of one lead from it), not both. `rules_threshold` (the rules'
    MQL points) sets the rule-score bands; without it, it is read off the rules' MQLs.
    """
    needed = [*SCORED_COLUMNS, outcome, *(c for c in (source, cost_column) if c is not None)]
    missing = [c for c in needed if c not in scored.columns]
    if missing:
        raise ValueError(f"the scored leads lack column(s) {', '.join(map(repr, missing))}")
    if cost_column is not None and cost_per_lead is not None:
        raise ValueError("give lead costs either as a column or per source, not both")
    if cost_per_lead is not None and source is None:
        raise ValueError("costs per source need the source column")
    frame = scored.reset_index(drop=True)
    lead_id = frame["lead_id"]
    if lead_id.isna().any() or lead_id.duplicated().any():
        repeated = lead_id.duplicated(keep=False).to_numpy() | lead_id.isna().to_numpy()
        raise ValueError(
            f"lead_id must be unique and present (lead_id {_first_ids(lead_id, repeated)})"
        )
    y = _zero_one(frame[outcome], outcome, lead_id, "compare only leads whose outcome is known")
    probability = _numbers(frame["probability"], "probability", lead_id, 0.0, 1.0)
    rule_score = _numbers(frame["rule_score"], "rule_score", lead_id)
    rule_probability = (
        _numbers(frame[RULE_PROBABILITY], RULE_PROBABILITY, lead_id, 0.0, 1.0)
        if RULE_PROBABILITY in frame.columns
        else None
    )
    model_mql = _zero_one(frame["mql"], "mql", lead_id, "score every lead").astype(np.bool_)
    rules_mql = _zero_one(frame["rule_mql"], "rule_mql", lead_id, "score every lead").astype(
        np.bool_
    )
    tier = _labels(frame["tier"])
    source_label = _labels(frame[source]) if source is not None else None
    cost = _costs_per_lead(frame, source_label, cost_column, cost_per_lead)

    n = len(frame)
    converted = int(y.sum())
    base_rate = _ratio(converted, n)
    rank = _model_rank(lead_id, probability)
    n_equal = int(rules_mql.sum())
    model_top = rank <= n_equal
    if rules_threshold is None and n_equal:
        rules_threshold = float(rule_score[rules_mql].min())
    band, band_order = rule_bands(rule_score, rules_threshold)
    tier_order = [*TIERS, *sorted(set(tier) - set(TIERS))]
    reasons = frame["reasons"] if "reasons" in frame.columns else pd.Series([None] * n)
    reason_text = [_reason_text(r) for r in reasons]

    leads = pd.DataFrame({"lead_id": lead_id.to_numpy()})
    if source_label is not None:
        leads["source"] = source_label
    leads = leads.assign(
        probability=probability,
        tier=tier,
        model_rank=rank,
        model_mql=model_mql,
        model_top_n=model_top,
        rule_score=rule_score,
        rule_mql=rules_mql,
        rule_band=band,
        converted=y,
    )
    if cost is not None:
        leads["cost"] = cost
    leads["reasons_for"] = [text[0] for text in reason_text]
    leads["reasons_against"] = [text[1] for text in reason_text]
    leads = leads.sort_values("model_rank", kind="mergesort").reset_index(drop=True)

    known_cost = None if cost is None else np.nan_to_num(cost, nan=0.0)
    costs = None
    if cost is not None and known_cost is not None:
        unknown = int(np.isnan(cost).sum())
        if unknown:
            logger.warning("%d of %d leads have no cost; counted as 0", unknown, n)
        total = float(known_cost.sum())
        costs = Costs(
            total_spend=total,
            leads_without_cost=unknown,
            model_equal_volume=_list_cost(total, known_cost, model_top, y),
            model_own_threshold=_list_cost(total, known_cost, model_mql, y),
            rules=_list_cost(total, known_cost, rules_mql, y),
        )
    by_source = (
        ()
        if source_label is None
        else _source_rows(source_label, y, base_rate, model_top, model_mql, rules_mql, known_cost)
    )

    threshold = (
        _single_value(pd.to_numeric(frame["threshold"], errors="coerce"), "threshold")
        if "threshold" in frame
        else None
    )
    version = (
        _single_value(frame["model_version"], "model_version") if "model_version" in frame else None
    )
    at = float(threshold) if threshold is not None else None
    if at is None and model_mql.any():
        at = float(probability[model_mql].min())
    return Comparison(
        n_leads=n,
        converted=converted,
        base_rate=base_rate,
        equal_volume_n=n_equal,
        model_threshold=None if threshold is None else float(threshold),
        rules_threshold=rules_threshold,
        model_version=None if version is None else str(version),
        source_name=source,
        period=_period(frame),
        model_ties_at_threshold=None if at is None else int(np.count_nonzero(probability == at)),
        rules_ranked_by=POINTS_BASIS if rule_probability is None else RULES_BASIS,
        equal_volume=_list_comparison("equal_volume", model_top, rules_mql, y, base_rate),
        own_threshold=_list_comparison("own_threshold", model_mql, rules_mql, y, base_rate),
        deciles_model=_deciles(y, probability),
        deciles_rules=_deciles(y, rule_score if rule_probability is None else rule_probability),
        by_tier=_bands(tier, tier_order, y, base_rate),
        by_rule_band=_bands(band, band_order, y, base_rate),
        by_source=by_source,
        costs=costs,
        leads=leads,
    )


# --- CSV lists --------------------------------------------------------------------------------


def _csv_safe(value: object) -> object:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_text(frame: pd.DataFrame) -> str:
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(_csv_safe)
    return out.to_csv(index=False, lineterminator="\n")


def csv_lists(comparison: Comparison) -> dict[str, str]:
    """File name -> CSV text: every lead, the model's list (own threshold and top N) and the
    rules' list; each lead with both scores and its reasons as text."""
    leads = comparison.leads
    rules = leads[leads["rule_mql"]].sort_values(
        ["rule_score", "model_rank"], ascending=[False, True], kind="mergesort"
    )
    return {
        ALL_LEADS_FILE: _csv_text(leads),
        MODEL_LIST_FILE: _csv_text(leads[leads["model_mql"]]),
        MODEL_TOP_N_FILE: _csv_text(leads[leads["model_top_n"]]),
        RULES_LIST_FILE: _csv_text(rules),
    }


def leads_csv(comparison: Comparison) -> str:
    """All leads as CSV text (what the API serves beside the page)."""
    return _csv_text(comparison.leads)


# --- formatting for people --------------------------------------------------------------------


def _undefined(value: float | None) -> bool:
    return value is None or not math.isfinite(value)


def fmt_count(value: float | None) -> str:
    return "n/a" if _undefined(value) else f"{round(value or 0):,}"


def fmt_percent(value: float | None) -> str:
    return "n/a" if _undefined(value) else f"{value:.1%}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if _undefined(value) else f"{value:.2f}×"


def fmt_money(value: float | None) -> str:
    return "n/a" if _undefined(value) else f"{value:,.2f}"


def _data_value(value: float | None) -> str:
    """Raw number for a data-value attribute: empty when undefined."""
    if isinstance(value, int | np.integer):
        return str(int(value))
    return "" if _undefined(value) else repr(float(value or 0))


def _list_phrase(who: str, group: Group, to_sales: str) -> str:
    if group.leads == 0:
        return f"the {who} would pass no leads to sales"
    return (
        f"of the {group.leads:,} leads the {who} would pass{to_sales}, {group.converted:,} "
        f"({fmt_percent(group.conversion_rate)}) converted"
    )


def headline(lists: ListComparison) -> str:
    """'Of the 412 leads the model would pass to sales, 157 (38.1%) converted; of the 412 …'.

    The page shows it for every filter (see `page_data`)."""
    model = _list_phrase("model", lists.model, " to sales")
    return f"{model[0].upper()}{model[1:]}; {_list_phrase('rules', lists.rules, '')}."


def verdict(lists: ListComparison) -> str:
    """One sentence on which list does better; empty when one list is empty."""
    model, rules = lists.model, lists.rules
    if model.leads == 0 and rules.leads == 0:
        return "Neither list has any leads here."
    if model.leads == 0 or rules.leads == 0:
        return ""
    ratio = fmt_ratio(lists.conversion_ratio)
    if model.leads == rules.leads:
        diff = lists.extra_converted
        if diff == 0:
            return "For the same number of leads, both lists hold as many converted leads."
        more = "more" if diff > 0 else "fewer"
        return (
            f"For the same number of leads, the model's list holds {abs(diff):,} {more} converted "
            f"leads than the rules' list ({ratio} the conversion rate)."
        )
    if math.isfinite(lists.conversion_ratio):
        return f"The model's list converts at {ratio} the rate of the rules' list."
    return ""


# --- charts: matplotlib's SVG, inlined ------------------------------------------------------

MODEL_COLOR = "#1f6fb4"
RULES_COLOR = "#e8780c"
_INK = "#333333"
_MUTED = "#666666"
_GRID = "#e3e3e3"
_NA_COLOR = "#999999"

# Applied while a chart is drawn and saved. A fixed hash salt and no date make the SVG the same
# on every render; text stays <text> (the page's font, small output); '$' in a source name is
# text, not mathtext.
_CHART_STYLE: dict[RcKeyType, Any] = {
    "svg.hashsalt": "leadscore-compare",
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 10,
    "axes.edgecolor": _MUTED,
    "axes.labelcolor": _INK,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlecolor": _INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": _MUTED,
    "ytick.color": _MUTED,
    "xtick.labelcolor": _INK,
    "ytick.labelcolor": _INK,
    "legend.frameon": False,
}
_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
# rcParams are global to the process: one chart at a time, so two threads building pages
# never draw with each other's settings.
_CHART_LOCK = threading.Lock()
_SVG_ROOT = re.compile(r"<svg\b[^>]*>")
_SVG_VIEW_BOX = re.compile(r'viewBox="([^"]*)"')
_SVG_TAG = re.compile(r"<[^<>]+>")  # text in the SVG has its < and > escaped
_SVG_ID = re.compile(r'(\sid=")([^"]*)')
_SVG_REFERENCE = re.compile(r'(url\(#|href="#)([^)"]*)')


@dataclass(frozen=True)
class _Series:
    name: str
    color: str
    values: Sequence[float]


def _inline_svg(figure: Figure, chart_id: str, title: str, tips: Mapping[str, str]) -> Markup:
    """The figure as an <svg> element to put in a page.

    matplotlib writes a standalone SVG file; inline, it must lose its XML prolog and namespace
    declarations (not needed in HTML), scope its style rule to itself and prefix its ids with
    `chart_id` (every chart has a 'figure_1', and ids are page-wide). `tips` maps an artist's
    gid to a tooltip, shown as that group's <title>.
    """
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_SVG_METADATA)
    text = buffer.getvalue()
    root = _SVG_ROOT.search(text)
    view_box = _SVG_VIEW_BOX.search(root.group(0)) if root else None
    if root is None or view_box is None:
        raise RuntimeError("matplotlib wrote an SVG without a root element or viewBox")
    body = text[root.end() :].replace(
        '<style type="text/css">*{', f'<style type="text/css">#{chart_id} *{{', 1
    )
    for gid, tip in tips.items():
        group = f'<g id="{gid}">'
        body = body.replace(group, f"{group}<title>{html.escape(tip)}</title>", 1)

    def prefixed(tag: re.Match[str]) -> str:
        named = _SVG_ID.sub(lambda m: f"{m.group(1)}{chart_id}-{m.group(2)}", tag.group(0))
        return _SVG_REFERENCE.sub(lambda m: f"{m.group(1)}{chart_id}-{m.group(2)}", named)

    body = _SVG_TAG.sub(prefixed, body)
    return Markup(
        f'<svg id="{chart_id}" class="chart" viewBox="{view_box.group(1)}" role="img" '
        f'aria-labelledby="{chart_id}-title"><title id="{chart_id}-title">{html.escape(title)}'
        f"</title>{body}"
    )


def _value_axis(
    axes: Axes,
    which: Literal["x", "y"],
    values: Sequence[float],
    reference: float | None,
    fmt: Callable[[float], str],
) -> None:
    """Value axis from 0 to above the largest value (room for the bar labels), gridlines."""
    finite = [v for v in values if math.isfinite(v)]
    if reference is not None and math.isfinite(reference):
        finite.append(reference)
    top = max(finite, default=0.0)
    limit = top * 1.18 if top > 0 else 1.0
    axis = axes.yaxis if which == "y" else axes.xaxis
    axis.set_major_formatter(FuncFormatter(lambda value, _position: fmt(value)))
    axis.set_major_locator(MaxNLocator(nbins=5))
    if which == "y":
        axes.set_ylim(0, limit)
    else:
        axes.set_xlim(0, limit)
    axes.grid(axis=which, color=_GRID, linewidth=0.8)
    axes.set_axisbelow(True)


def _legend(figure: Figure, axes: Axes) -> None:
    """The series and the dashed reference line, under the plot where they hide no bar."""
    handles, labels = axes.get_legend_handles_labels()
    bars_first = sorted(range(len(handles)), key=lambda i: isinstance(handles[i], Line2D))
    if handles:
        figure.legend(
            [handles[i] for i in bars_first],
            [labels[i] for i in bars_first],
            loc="outside lower center",
            ncols=len(handles),
        )


def _grouped_bars(
    axes: Axes,
    categories: Sequence[str],
    series: Sequence[_Series],
    value_fmt: Callable[[float], str],
    *,
    horizontal: bool,
    labels: bool,
) -> dict[str, str]:
    """One group of bars per category, one bar per series; each bar's tooltip by its gid (the
    returned map); 'n/a' where a value is undefined, and the value at the bar's end when
    `labels`."""
    group = 0.8 if horizontal else 0.78
    width = group / max(len(series), 1)
    draw = axes.barh if horizontal else axes.bar
    tips: dict[str, str] = {}
    for j, s in enumerate(series):
        positions = [i - group / 2 + width * (j + 0.5) for i in range(len(categories))]
        lengths = [max(v, 0.0) if math.isfinite(v) else 0.0 for v in s.values]
        bars = draw(
            positions, lengths, width * (0.92 if horizontal else 0.95), color=s.color, label=s.name
        )
        for at, bar, category, value in zip(positions, bars, categories, s.values, strict=True):
            known = math.isfinite(value)
            if known:
                gid = f"tip-{len(tips)}"
                bar.set_gid(gid)
                tips[gid] = f"{s.name}, {category}: {value_fmt(value)}"
            if known and not labels:
                continue
            end = max(value, 0.0) if known else 0.0
            axes.annotate(
                value_fmt(value) if known else "n/a",
                (end, at) if horizontal else (at, end),
                xytext=(3, 0) if horizontal else (0, 3),
                textcoords="offset points",
                ha="left" if horizontal else "center",
                va="center" if horizontal else "bottom",
                fontsize=9 if known and not horizontal else 8,
                color=_INK if known else _NA_COLOR,
            )
    return tips


def _column_chart(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[_Series],
    axis_fmt: Callable[[float], str],
    value_fmt: Callable[[float], str],
    *,
    xlabel: str,
    ylabel: str,
    reference: float | None = None,
    reference_label: str = "",
    label_bars: bool = False,
) -> Markup:
    """Vertical grouped bars; a dashed line at `reference`; 'n/a' where a value is undefined."""
    figure = Figure(figsize=(6.4, 3.3), layout="constrained")
    axes = figure.add_subplot()
    tips = _grouped_bars(axes, categories, series, value_fmt, horizontal=False, labels=label_bars)
    _value_axis(axes, "y", [v for s in series for v in s.values], reference, axis_fmt)
    axes.set_xticks(range(len(categories)), [textwrap.fill(c, 14) for c in categories])
    axes.tick_params(axis="x", length=0)
    axes.set_xlim(-0.6, len(categories) - 0.4)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, loc="left", wrap=True)
    if reference is not None and math.isfinite(reference):
        axes.axhline(
            reference, color=_INK, linewidth=1, linestyle=(0, (5, 4)), label=reference_label
        )
    _legend(figure, axes)
    return _inline_svg(figure, chart_id, title, tips)


def _clip(text: str, size: int = 24) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _bar_chart(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[_Series],
    axis_fmt: Callable[[float], str],
    value_fmt: Callable[[float], str],
    *,
    xlabel: str,
    reference: float | None = None,
    reference_label: str = "",
) -> Markup:
    """Horizontal grouped bars, one row per category (long labels such as source names)."""
    figure = Figure(
        figsize=(6.4, 1.5 + 0.25 * len(series) * max(len(categories), 1)), layout="constrained"
    )
    axes = figure.add_subplot()
    tips = _grouped_bars(axes, categories, series, value_fmt, horizontal=True, labels=True)
    _value_axis(axes, "x", [v for s in series for v in s.values], reference, axis_fmt)
    axes.set_yticks(range(len(categories)), [_clip(c) for c in categories])
    axes.tick_params(axis="y", length=0)
    axes.set_ylim(len(categories) - 0.5, -0.5)  # the first category (largest source) on top
    axes.set_xlabel(xlabel)
    axes.set_title(title, loc="left", wrap=True)
    if reference is not None and math.isfinite(reference):
        axes.axvline(
            reference, color=_INK, linewidth=1, linestyle=(0, (5, 4)), label=reference_label
        )
    _legend(figure, axes)
    return _inline_svg(figure, chart_id, title, tips)


def _percent_axis(value: float) -> str:
    return f"{value * 100:g}%"


def _lift_axis(value: float) -> str:
    return f"{value:g}×"


def charts(comparison: Comparison) -> dict[str, Markup]:
    """The page's plots (on all leads) as inline SVG, drawn by matplotlib."""
    with _CHART_LOCK, matplotlib.rc_context(_CHART_STYLE):
        return _charts(comparison)


def _charts(comparison: Comparison) -> dict[str, Markup]:
    c = comparison
    base = c.base_rate
    out = {
        "deciles": _column_chart(
            "chart-deciles",
            "Lift by decile: how much better than average each tenth of leads converts",
            [str(row.decile) for row in c.deciles_model],
            [
                _Series("Model", MODEL_COLOR, [row.lift for row in c.deciles_model]),
                _Series(
                    f"Rules (by {c.rules_ranked_by})",
                    RULES_COLOR,
                    [row.lift for row in c.deciles_rules],
                ),
            ],
            _lift_axis,
            fmt_ratio,
            xlabel="decile (1 = the best-scored tenth of leads)",
            ylabel="lift",
            reference=1.0 if math.isfinite(base) and base > 0 else None,
            reference_label="average lead",
        ),
        "tiers": _column_chart(
            "chart-tiers",
            "Conversion rate by model tier",
            [row.band for row in c.by_tier],
            [_Series("Model tier", MODEL_COLOR, [row.conversion_rate for row in c.by_tier])],
            _percent_axis,
            fmt_percent,
            xlabel="model tier",
            ylabel="conversion rate",
            reference=base,
            reference_label="all leads",
            label_bars=True,
        ),
        "bands": _column_chart(
            "chart-bands",
            "Conversion rate by rule points",
            [row.band.replace(" (rules MQL)", "*") for row in c.by_rule_band],
            [_Series("Rule points", RULES_COLOR, [r.conversion_rate for r in c.by_rule_band])],
            _percent_axis,
            fmt_percent,
            xlabel="rule points (* = the rules' MQLs)",
            ylabel="conversion rate",
            reference=base,
            reference_label="all leads",
            label_bars=True,
        ),
    }
    if c.by_source:
        shown = c.by_source[:_MAX_SOURCES_CHARTED]
        out["sources"] = _bar_chart(
            "chart-sources",
            "Conversion rate of each list, by source",
            [row.source for row in shown],
            [
                _Series(
                    "Model list",
                    MODEL_COLOR,
                    [_ratio(r.model_converted, r.model_mqls) for r in shown],
                ),
                _Series(
                    "Rules list",
                    RULES_COLOR,
                    [_ratio(r.rules_converted, r.rules_mqls) for r in shown],
                ),
            ],
            _percent_axis,
            fmt_percent,
            xlabel="conversion rate of the leads each list takes from the source",
            reference=base,
            reference_label="all leads",
        )
    return out


# --- the comparison within a filter ----------------------------------------------------------

BASES = ("equal_volume", "own_threshold")
_BASIS_COLUMN = {"equal_volume": "model_top_n", "own_threshold": "model_mql"}
LIST_GROUPS = ("both", "model_only", "rules_only", "neither")  # each lead is in exactly one
# The choices of the lead table's "Show" filter, as the groups of leads each one lists.
SHOWS: dict[str, tuple[str, ...]] = {
    "either": ("both", "model_only", "rules_only"),
    "both": ("both",),
    "model_only": ("model_only",),
    "rules_only": ("rules_only",),
    "all": LIST_GROUPS,
}


@dataclass(frozen=True)
class Selection:
    """The comparison within the leads of one source and/or one tier (a filter of the page).

    The lists are the ones chosen on all leads, seen within the selection (what sales would get
    from it), so the two can differ in size there; lifts are against the selection's own rate.
    """

    source: str | None  # None: every source
    tier: str | None  # None: every tier
    leads: Group  # every lead in the selection; its rate is the base rate of the lifts
    equal_volume: ListComparison
    own_threshold: ListComparison

    def lists(self) -> dict[str, ListComparison]:
        return {"equal_volume": self.equal_volume, "own_threshold": self.own_threshold}


def compare_within(
    comparison: Comparison, *, source: str | None = None, tier: str | None = None
) -> Selection:
    """The comparison on the leads of `source` and `tier` (None: all), computed the same way as
    the report's on all leads."""
    if source is not None and "source" not in comparison.leads.columns:
        raise ValueError("this comparison has no source column to filter on")
    return _selector(comparison.leads)(source, tier)


def _selector(leads: pd.DataFrame) -> Callable[[str | None, str | None], Selection]:
    """`compare_within` for many filters: the columns are read once, not once per filter."""
    y = leads["converted"].to_numpy(dtype=np.int64)
    rules = leads["rule_mql"].to_numpy(dtype=np.bool_)
    model = {b: leads[column].to_numpy(dtype=np.bool_) for b, column in _BASIS_COLUMN.items()}
    codes = {
        name: pd.factorize(leads[name]) for name in ("source", "tier") if name in leads.columns
    }

    def where(name: str, value: str | None) -> BoolArray | bool:
        if value is None:
            return True
        index, labels = codes[name]
        found = np.flatnonzero(labels == value)
        return index == found[0] if len(found) else False

    def select(source: str | None, tier: str | None) -> Selection:
        inside = np.broadcast_to(where("source", source) & where("tier", tier), y.shape)
        y_in, rules_in = y[inside], rules[inside]
        base_rate = _ratio(int(y_in.sum()), len(y_in))
        made = {
            basis: _list_comparison(basis, flags[inside], rules_in, y_in, base_rate)
            for basis, flags in model.items()
        }
        return Selection(
            source=source,
            tier=tier,
            leads=_group(np.ones(len(y_in), dtype=np.bool_), y_in, base_rate),
            equal_volume=made["equal_volume"],
            own_threshold=made["own_threshold"],
        )

    return select


# --- the page ---------------------------------------------------------------------------------


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("models.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        count=fmt_count,
        percent=fmt_percent,
        ratio=fmt_ratio,
        money=fmt_money,
    )
    return environment


def lead_table_note(total: int, max_rows: int) -> str:
    """How many of the selected leads the table shows."""
    if total > max_rows:
        return f"Showing the first {fmt_count(max_rows)} of {fmt_count(total)} leads"
    return f"Showing all {fmt_count(total)} leads"


def _shown_numbers(selection: Selection, lists: ListComparison) -> dict[str, list[str]]:
    """Element id -> [data-value, text] of every number the page's summary shows."""
    everyone = selection.leads
    numbers: dict[str, tuple[float, Callable[[float | None], str]]] = {
        "sel-leads": (everyone.leads, fmt_count),
        "sel-converted": (everyone.converted, fmt_count),
        "sel-base-rate": (everyone.conversion_rate, fmt_percent),
        "overlap-share": (lists.overlap_share, fmt_percent),
        "conversion-ratio": (lists.conversion_ratio, fmt_ratio),
        "model-lift": (lists.model.lift, fmt_ratio),
        "rules-lift": (lists.rules.lift, fmt_ratio),
    }
    for prefix, group in (
        ("model", lists.model),
        ("rules", lists.rules),
        ("both", lists.both),
        ("model-only", lists.model_only),
        ("rules-only", lists.rules_only),
    ):
        numbers[f"{prefix}-count"] = (group.leads, fmt_count)
        numbers[f"{prefix}-converted"] = (group.converted, fmt_count)
        numbers[f"{prefix}-rate"] = (group.conversion_rate, fmt_percent)
    return {key: [_data_value(value), fmt(value)] for key, (value, fmt) in numbers.items()}


def _view(selection: Selection, basis: str, max_rows: int) -> dict[str, Any]:
    """What the page shows for one filter and basis, as numbers and texts ready to display."""
    lists = selection.lists()[basis]
    shown = {}
    for show, members in SHOWS.items():
        total = sum(getattr(lists, group).leads for group in members)
        shown[show] = [total, lead_table_note(total, max_rows)]
    return {
        "numbers": _shown_numbers(selection, lists),
        "headline": headline(lists),
        "verdict": verdict(lists),
        "shown": shown,
    }


def _group_codes(leads: pd.DataFrame, basis: str) -> IntArray:
    """Each lead's group (an index into LIST_GROUPS) on one basis."""
    made = list_groups(
        leads[_BASIS_COLUMN[basis]].to_numpy(dtype=np.bool_),
        leads["rule_mql"].to_numpy(dtype=np.bool_),
    )
    codes = np.zeros(len(leads), dtype=np.int64)
    for code, name in enumerate(LIST_GROUPS):
        codes[made[name]] = code
    return codes


def _show_codes(show: str) -> list[int]:
    return [LIST_GROUPS.index(group) for group in SHOWS[show]]


def _table_candidates(cell: IntArray, codes: Mapping[str, IntArray], max_rows: int) -> BoolArray:
    """Leads that can be among the first `max_rows` rows of the lead table under some filter.

    Leads come in rank order and every filter is a union of (source, tier) cells, so its first
    rows are among the first rows of its cells: only those leads need display texts.
    """
    keep = np.zeros(len(cell), dtype=np.bool_)
    for groups in codes.values():
        for show in SHOWS:
            listed = np.flatnonzero(np.isin(groups, _show_codes(show)))
            place = pd.Series(cell[listed]).groupby(cell[listed]).cumcount().to_numpy()
            keep[listed[place < max_rows]] = True
    return keep


def _lead_columns(has_source: bool) -> list[tuple[str, str]]:
    """Heading and class of the lead table's columns before the list marks."""
    return [
        ("model rank", ""),
        ("lead", "text"),
        *([("source", "text")] if has_source else []),
        ("tier", "text"),
        ("chance of converting", ""),
        ("rule points", ""),
    ]


def _lead_cells(row: Mapping[Hashable, Any], has_source: bool) -> list[str]:
    """The lead table's texts for one lead: rank, lead, [source], tier, chance, rule points,
    converted, reasons for, reasons against (the list marks depend on the basis)."""
    return [
        str(row["model_rank"]),
        str(row["lead_id"]),
        *([str(row["source"])] if has_source else []),
        str(row["tier"]),
        fmt_percent(row["probability"]),
        f"{row['rule_score']:g}",
        "yes" if row["converted"] else "no",
        str(row["reasons_for"]),
        str(row["reasons_against"]),
    ]


def _csv_records(frame: pd.DataFrame) -> tuple[str, list[str]]:
    """The header and one record per row of the CSV text the files hold, so a download from
    the page matches them. A record ends at a newline outside quotes (after an even number of
    quote characters): a quoted field such as a reason may hold a newline."""
    records: list[str] = []
    pending: str | None = None
    for line in _csv_text(frame).split("\n")[:-1]:
        pending = line if pending is None else f"{pending}\n{line}"
        if pending.count('"') % 2 == 0:
            records.append(pending)
            pending = None
    return records[0], records[1:]


def page_data(comparison: Comparison, max_rows: int = 100) -> dict[str, Any]:
    """Everything the page's script shows, prepared here: the summary for every filter it offers
    (each source x each tier, '' for all) and basis, and per lead its filter keys, its group on
    each basis, its table texts (only for leads the table can show) and its CSV record."""
    c = comparison
    leads = c.leads
    has_source = bool(c.by_source)
    sources = [row.source for row in c.by_source]
    tiers = [row.band for row in c.by_tier]
    select = _selector(leads)
    views: dict[str, dict[str, dict[str, Any]]] = {}
    for source in [None, *sources]:
        by_tier = views.setdefault(source or "", {})
        for tier in [None, *tiers]:
            selection = select(source, tier)
            by_tier[tier or ""] = {basis: _view(selection, basis, max_rows) for basis in BASES}
    source_index = (
        leads["source"].map({s: i for i, s in enumerate(sources)}).to_numpy(dtype=np.int64)
        if has_source
        else np.zeros(len(leads), dtype=np.int64)
    )
    tier_index = leads["tier"].map({t: i for i, t in enumerate(tiers)}).to_numpy(dtype=np.int64)
    codes = {basis: _group_codes(leads, basis) for basis in BASES}
    keep = _table_candidates(source_index * len(tiers) + tier_index, codes, max_rows)
    cells: list[list[str] | None] = [None] * len(leads)
    for i, row in zip(np.flatnonzero(keep), leads[keep].to_dict("records"), strict=True):
        cells[i] = _lead_cells(row, has_source)
    header, records = _csv_records(leads)
    lead_data: dict[str, Any] = {
        "tier": tier_index.tolist(),
        "group": {basis: codes[basis].tolist() for basis in BASES},
        "cells": cells,
        "csv": records,
    }
    if has_source:
        lead_data["source"] = source_index.tolist()
    return {
        "sources": sources,
        "tiers": tiers,
        "groups": list(LIST_GROUPS),
        "shows": {show: _show_codes(show) for show in SHOWS},
        # The lead table's marks in the model's and the rules' list columns, by group.
        "marks": [["✓", "✓"], ["✓", ""], ["", "✓"], ["", ""]],
        "views": views,
        "csv_header": header,
        "leads": lead_data,
    }


def comparison_html(
    comparison: Comparison,
    *,
    title: str = DEFAULT_TITLE,
    csv_href: str | None = None,
    max_rows: int = 100,
) -> str:
    """The whole comparison as one self-contained HTML page (no network, openable from disk).

    Filters by source and tier (also from the address: ?source=Google&tier=A, or the same after
    `#`), a switch between equal volume and own thresholds, a lead table of the first `max_rows`
    leads of the selection and a CSV download of all of them. `csv_href`, if given, adds a link
    to the full list served elsewhere (e.g. the API's /compare.csv). Every number and sentence
    for every filter is computed here; the page's script only picks the one for the filter.
    """
    c = comparison
    data = page_data(c, max_rows)
    view = data["views"][""][""]["equal_volume"]
    cells, marks = data["leads"]["cells"], data["marks"]
    groups = np.asarray(data["leads"]["group"]["equal_volume"], dtype=np.int64)
    first = np.flatnonzero(np.isin(groups, _show_codes("either")))[:max_rows]
    template = _environment().get_template("compare.html")
    return template.render(
        title=title,
        c=c,
        view=view,
        first_rows=[(cells[i], marks[groups[i]]) for i in first],
        lead_columns=_lead_columns(bool(c.by_source)),
        charts=charts(c),
        data=data,
        csv_href=csv_href,
        max_rows=max_rows,
        has_source=bool(c.by_source),
        model_color=MODEL_COLOR,
        rules_color=RULES_COLOR,
    )


def write_comparison(
    comparison: Comparison, out_dir: Path, *, title: str = DEFAULT_TITLE
) -> list[Path]:
    """Write compare.html, comparison.json and the CSV lists into `out_dir`, all or nothing.

    Everything is rendered in memory first; files are written beside their targets and renamed
    into place only once all are written, so a failure leaves no partial output behind.
    """
    payloads = {
        HTML_FILE: comparison_html(comparison, title=title),
        JSON_FILE: comparison.to_json(),
        **csv_lists(comparison),
    }
    paths = [out_dir / name for name in payloads]
    with atomic_paths(paths) as temporaries:
        for temporary, text in zip(temporaries, payloads.values(), strict=True):
            temporary.write_text(text, encoding="utf-8")
    logger.info("wrote the comparison of %d leads to %s", comparison.n_leads, out_dir)
    return paths


def holdout_comparison(
    holdout: pd.DataFrame, scorer: LeadScorer, cost_per_lead: Mapping[str, float] | None = None
) -> Comparison:
    """The comparison of a model's scored holdout (`TrainingResult.holdout`, or the copy logged
    with the model), with the model's source column and its rules' MQL threshold."""
    source = scorer.metadata.get("source_column")
    source = source if source in holdout.columns else None
    return compare_model_and_rules(
        holdout,
        source=source,
        cost_per_lead=(cost_per_lead or None) if source is not None else None,
        rules_threshold=scorer.rules.mql_threshold,
    )
