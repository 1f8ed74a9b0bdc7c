"""Point-in-time features: one row per snapshot (lead, as_of), from events strictly before as_of."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from features.batch import LeadBatch, batch_from_frames
from features.config import FeatureConfig
from features.contract import DataContractError
from features.fit import TITLE_FEATURES, LeadValues, text_codes
from features.pointintime import (
    AS_OF,
    NS_PER_DAY,
    EventArrays,
    EventsAtSnapshots,
    join_before,
    spine_chunks,
)
from features.vocabulary import CREATED_AT, LEAD_ID

logger = logging.getLogger(__name__)

ACCOUNT_FEATURES: tuple[str, ...] = (
    "account_leads",
    "account_engagement_decayed",
    "account_events_30d",
)


def behaviour_feature_names(config: FeatureConfig) -> list[str]:
    """Names of the behaviour features, in output order."""
    names: list[str] = []
    for kind in config.event_types:
        names += [f"{kind}_count_{w}d" for w in config.windows_days]
        names += [f"{kind}_count_all", f"{kind}_days_since_last"]
    return [*names, *_TAIL_FEATURES]


# Behaviour over all inbound events, after the per-type block (in `_behaviour_block`'s order).
_TAIL_FEATURES = (
    "engagement_decayed",
    "active_days",
    "velocity_7d_vs_30d",
    "days_since_last_activity",
    "email_open_rate",
)


def feature_names(config: FeatureConfig) -> list[str]:
    """All feature columns `build_features` returns, besides the key columns."""
    fit: list[str] = []
    if config.title_column is not None:
        fit += list(TITLE_FEATURES)
    if config.email_column is not None:
        fit.append("is_company_email")
    if config.source == "snapshot":
        return [*fit, *config.categorical_columns, *config.numeric_columns]
    return [
        "lead_age_days",
        *fit,
        *config.categorical_columns,
        *config.numeric_columns,
        *behaviour_feature_names(config),
        *(ACCOUNT_FEATURES if config.account_column is not None else ()),
    ]


def lead_columns(config: FeatureConfig) -> list[str]:
    """The lead columns the features read (an API caller sends these; others are ignored)."""
    return [
        LEAD_ID,
        *([CREATED_AT] if config.source == "events" else []),
        *(
            c
            for c in (config.title_column, config.email_column, config.account_column)
            if c is not None
        ),
        *config.categorical_columns,
        *config.numeric_columns,
    ]


def check_lead_columns(leads: pd.DataFrame, config: FeatureConfig) -> None:
    """The feature config names only columns the leads have."""
    missing = [c for c in lead_columns(config) if c not in leads.columns]
    if missing:
        raise DataContractError(
            f"the feature config names column(s) {', '.join(map(repr, missing))} "
            "that the leads do not have",
            hint=f"leads have: {', '.join(map(str, leads.columns[:15]))}",
        )


def _distinct_days(row: np.ndarray, day: np.ndarray, out: np.ndarray) -> None:
    """Write the number of distinct calendar days of each row into `out` (one entry per row),
    via a (rows x days) bitmap built in slices.

    Order-independent and linear in the number of events; the slices keep the bitmap small.
    """
    n_rows = len(out)
    if len(day) == 0:
        out[:] = 0.0
        return
    # ufunc reductions directly: the ndarray methods add a Python-level wrapper per call.
    first = int(np.minimum.reduce(day))
    span = int(np.maximum.reduce(day)) - first + 1
    rows_per_slice = max(1, _BITMAP_BYTES // span)
    # The bit of (row, day) is at row * span + day - first, less the slice's first bit.
    cell = row * span + day
    for low in range(0, n_rows, rows_per_slice):
        high = min(n_rows, low + rows_per_slice)
        seen = np.zeros((high - low) * span, dtype=bool)
        if rows_per_slice >= n_rows:
            seen[cell - first] = True
        else:
            inside = (row >= low) & (row < high)
            seen[cell[inside] - (low * span + first)] = True
        out[low:high] = np.add.reduce(seen.reshape(high - low, span), axis=1)


_BITMAP_BYTES = 256 * 2**20
# The windows of `velocity_7d_vs_30d`: inbound events of the last 7 days against the last 30.
_VELOCITY_DAYS = (7, 30)


@dataclass(frozen=True)
class _BehaviourLayout:
    """A config's behaviour constants, made once per config rather than on every call.

    Ages are cut into buckets at `edges` (the windows and the velocity windows, ascending):
    an event of bucket b is inside every window whose edge index is >= b, so counts per bucket
    summed cumulatively give the count in each window, the last bucket giving the all-time one.
    """

    n_types: int
    edges: np.ndarray  # float64, ascending: every window and velocity window, in days
    window_edges: tuple[int, ...]  # per window (config order): its edge index
    velocity_edges: slice  # the edge indexes of the 7- and 30-day windows, as a view's slice
    velocity_days: np.ndarray  # (2, 1) float64: the divisors of those counts (7 and 30)
    inbound: np.ndarray  # bool per type: not an outbound type
    inbound_column: np.ndarray  # the same as a (types, 1) column
    inbound_ones: np.ndarray  # int64 per type: 1 inbound, 0 outbound
    negative_half_life: float  # exp2(age / -h) == exp2(-age / h) bitwise: one op fewer
    email_sent_open: tuple[int, int] | None  # positions of email_sent and email_open


@lru_cache(maxsize=64)
def _layout_of(
    event_types: tuple[str, ...],
    outbound: tuple[str, ...],
    windows: tuple[int, ...],
    half_life: float,
) -> _BehaviourLayout:
    edges = sorted({*windows, *_VELOCITY_DAYS})
    week, month = edges.index(_VELOCITY_DAYS[0]), edges.index(_VELOCITY_DAYS[1])
    kinds = list(event_types)
    emails = "email_sent" in kinds and "email_open" in kinds
    inbound = np.array([kind not in outbound for kind in kinds], dtype=bool)
    layout = _BehaviourLayout(
        n_types=len(kinds),
        edges=np.array(edges, dtype=np.float64),
        window_edges=tuple(edges.index(w) for w in windows),
        velocity_edges=slice(week, month + 1, month - week),
        velocity_days=np.array(_VELOCITY_DAYS, dtype=np.float64).reshape(2, 1),
        inbound=inbound,
        inbound_column=inbound.reshape(-1, 1),
        inbound_ones=inbound.astype(np.int64),
        negative_half_life=-half_life,
        email_sent_open=(
            (kinds.index("email_sent"), kinds.index("email_open")) if emails else None
        ),
    )
    # Shared by every call (and thread) with this config: read-only.
    for constant in (
        layout.edges,
        layout.velocity_days,
        layout.inbound,
        layout.inbound_column,
        layout.inbound_ones,
    ):
        constant.flags.writeable = False
    return layout


def _behaviour_layout(config: FeatureConfig) -> _BehaviourLayout:
    """The config's behaviour constants, cached by the fields they depend on."""
    return _layout_of(
        tuple(config.event_types),
        tuple(config.outbound_event_types),
        tuple(config.windows_days),
        config.decay_half_life_days,
    )


def _behaviour_block(joined: EventsAtSnapshots, config: FeatureConfig, out: np.ndarray) -> None:
    """Write the behaviour features of every joined row into `out` (rows x names)."""
    layout = _behaviour_layout(config)
    n, n_types, n_windows = joined.n_rows, layout.n_types, len(config.windows_days)
    # Per type: one column per window, then all-time count, then days since the last one; the
    # columns of one kind of value are every `stride`-th, so basic slices write them in place.
    stride = n_windows + 2
    end = n_types * stride
    tail = out[:, end:]
    # Cells are (type, row), type-major: sums over types then run along whole rows of cells,
    # and each type's values are one contiguous stretch, as a column-major `out` stores them.
    cell = joined.type_code * n + joined.row
    age = joined.age_days

    _newest_ages(cell, age, layout, out[:, n_windows + 1 : end : stride], tail[:, 3])
    cumulative = _counts_younger_than_edges(cell, age, layout, n)
    for slot, edge in enumerate(layout.window_edges):
        out[:, slot:end:stride] = cumulative[edge].T
    all_time = cumulative[-1]
    out[:, n_windows:end:stride] = all_time.T

    inbound = layout.inbound[joined.type_code]
    row_in, age_in = joined.row[inbound], age[inbound]
    tail[:, 0] = np.bincount(
        row_in, weights=np.exp2(age_in / layout.negative_half_life), minlength=n
    )
    _distinct_days(row_in, joined.day[inbound], tail[:, 1])
    # Inbound events of the last 7 and 30 days per row (exact integer sums over the inbound
    # types), per day; divided only where the divisor is positive: no warnings to silence.
    rates = (layout.inbound_ones @ cumulative[layout.velocity_edges]) / layout.velocity_days
    tail[:, 2] = 0.0
    np.divide(rates[0], rates[1], out=tail[:, 2], where=rates[1] > 0)
    tail[:, 4] = np.nan
    if layout.email_sent_open is not None:
        sent, opened = all_time[layout.email_sent_open[0]], all_time[layout.email_sent_open[1]]
        np.divide(opened, sent, out=tail[:, 4], where=sent > 0)


def _newest_ages(
    cell: np.ndarray,
    age: np.ndarray,
    layout: _BehaviourLayout,
    per_type: np.ndarray,
    newest_inbound: np.ndarray,
) -> None:
    """Write the age of the newest event of each (row, type) into `per_type` (rows x types),
    and of each row's newest inbound event into `newest_inbound`; NaN where there is none."""
    n = len(newest_inbound)
    cells = layout.n_types * n
    newest = np.full(cells + n, np.inf)
    np.minimum.at(newest, cell, age)
    # The newest inbound event of a row is the newest of its inbound types' newest events.
    np.minimum.reduce(
        newest[:cells].reshape(layout.n_types, n),
        axis=0,
        where=layout.inbound_column,
        initial=np.inf,
        out=newest[cells:],
    )
    newest[np.isinf(newest)] = np.nan
    per_type[:] = newest[:cells].reshape(layout.n_types, n).T
    newest_inbound[:] = newest[cells:]


def _counts_younger_than_edges(
    cell: np.ndarray, age: np.ndarray, layout: _BehaviourLayout, n: int
) -> np.ndarray:
    """(edges + 1, types, rows) counts: [e] of the events younger than `layout.edges[e]`, the
    last of all of them. `cell` (type-major cells) is overwritten: no copy of the pairs."""
    cells = layout.n_types * n
    n_buckets = len(layout.edges) + 1
    # An event of bucket b (edges[b - 1] <= age < edges[b]) is younger than edges b and up.
    bucket = np.searchsorted(layout.edges, age, side="right")
    bucket *= cells
    cell += bucket
    del bucket  # before the counts are allocated: with millions of pairs it is a large array
    counts = np.bincount(cell, minlength=n_buckets * cells).reshape(n_buckets, layout.n_types, n)
    # In place, one bucket at a time: np.add.accumulate along a short axis goes element by element.
    for bucket_index in range(1, n_buckets):
        counts[bucket_index] += counts[bucket_index - 1]
    return counts


@dataclass(frozen=True)
class FeatureMatrix:
    """Features of every scored row of a batch, as LightGBM reads them: one float64 column per
    feature, categories as their position in `levels` (NaN when missing or unseen)."""

    names: list[str]
    values: np.ndarray  # (rows, features)
    levels: dict[str, list[str]]  # categorical feature -> its levels
    position: dict[str, int]  # feature -> its column

    def shown(self, name: str) -> np.ndarray:
        """A feature as the reasons read it: a category's text (None when unknown), numbers."""
        column = self.values[:, self.position[name]]
        if name not in self.levels:
            return column
        codes = np.where(column == column, column, -1.0).astype(np.int64)  # NaN -> -1
        shown: np.ndarray = _level_texts(tuple(self.levels[name]))[codes]
        return shown

    def category_codes(self, name: str) -> np.ndarray:
        column = self.values[:, self.position[name]]
        return np.where(np.isnan(column), -1, column).astype(np.int64)


def category_features(config: FeatureConfig) -> list[str]:
    """The features that are categories, in feature order."""
    return [
        *(TITLE_FEATURES if config.title_column is not None else ()),
        *config.categorical_columns,
    ]


def feature_matrix(
    batch: LeadBatch,
    config: FeatureConfig,
    values: LeadValues | None = None,
    names: list[str] | None = None,
) -> FeatureMatrix:
    """The one feature kernel: features for each scored row of `batch`, in row order.

    Behaviour uses only events strictly before each row's as_of; fit attributes come from the
    lead, which holds what is known at creation. Outcome columns are never read. Category
    levels are `config.category_levels` (a trained model's) or, when absent, learned from the
    batch's leads (training). `names`: `feature_names(config)`, when the caller keeps them.
    """
    values = values or LeadValues(batch, config)
    names = feature_names(config) if names is None else names
    position = _positions(tuple(names))
    n = batch.n_rows
    # Column-major, so that every feature column is one contiguous array.
    out = np.empty((n, len(names)), dtype=np.float64, order="F")
    per_lead, levels = _fit_per_lead(values, config)
    for name, column in per_lead.items():
        out[:, position[name]] = column[batch.row_lead]
    if config.source == "events":
        if batch.created_ns is None:
            raise DataContractError(f"leads need '{CREATED_AT}' for a model of events")
        as_of = batch.as_of_ns
        out[:, position["lead_age_days"]] = (as_of - batch.created_ns[batch.row_lead]) / NS_PER_DAY
        first = position[f"{config.event_types[0]}_count_{config.windows_days[0]}d"]
        width = len(config.event_types) * (len(config.windows_days) + 2) + len(_TAIL_FEATURES)
        behaviour = out[:, first : first + width]
        shared = batch.events_before(config.event_types)
        if shared is not None:
            _behaviour_block(shared, config, behaviour)
        else:
            arrays = batch.events_of_types(config.event_types)
            for rows in spine_chunks(batch.row_lead, arrays, batch.n_leads):
                joined = join_before(batch.row_lead[rows], as_of[rows], arrays, batch.n_leads)
                block = np.empty((len(rows), width))
                _behaviour_block(joined, config, block)
                behaviour[rows] = block
        if config.account_column is not None:
            accounts = _account_block(
                batch, values, batch.events_of_types(config.event_types), config
            )
            for i, name in enumerate(ACCOUNT_FEATURES):
                out[:, position[name]] = accounts[:, i]
    return FeatureMatrix(names=names, values=out, levels=levels, position=position)


@lru_cache(maxsize=256)
def _level_texts(levels: tuple[str, ...]) -> np.ndarray:
    """A category's levels as an object array, None last (for code -1); never written to."""
    return np.array([*levels, None], dtype=object)


@lru_cache(maxsize=64)
def _code_values(n_levels: int) -> np.ndarray:
    """Category code -> feature value: the code itself as a float, NaN for -1 (the last entry);
    one lookup instead of a comparison and a `where`. Shared read-only."""
    values = np.append(np.arange(n_levels, dtype=np.float64), np.nan)
    values.flags.writeable = False
    return values


@lru_cache(maxsize=64)
def _positions(names: tuple[str, ...]) -> dict[str, int]:
    """Each feature's column (shared read-only: a model's names are asked for on every call)."""
    return {name: i for i, name in enumerate(names)}


def _fit_per_lead(
    values: LeadValues, config: FeatureConfig
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """The lead-row features (fit, and in snapshot mode behaviour too) per lead, and the levels
    of those that are categories."""
    columns: dict[str, np.ndarray] = {}
    levels: dict[str, list[str]] = {}
    if config.title_column is not None:
        for name, fixed in TITLE_FEATURES.items():
            codes, _ = values.text(name)
            columns[name] = _code_values(len(fixed))[codes]
            levels[name] = list(fixed)
    if config.email_column is not None:
        columns["is_company_email"] = values.company_email_flag()
    fixed_levels = config.category_levels or {}
    for column in config.categorical_columns:
        known = fixed_levels.get(column)
        levels[column] = values.learned_levels(column) if known is None else list(known)
        columns[column] = values.category(column, levels[column])
    for column in config.numeric_columns:
        columns[column] = values.number(column)
    return columns, levels


def build_features_at(
    spine: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame, config: FeatureConfig
) -> pd.DataFrame:
    """`feature_matrix` for the snapshots `spine` (`lead_id`, `as_of`) of a leads table and an
    event log, as a frame (categories as pandas categoricals), in spine order."""
    check_lead_columns(leads, config)
    spine = spine[[LEAD_ID, AS_OF]].reset_index(drop=True)
    batch = batch_from_frames(spine, leads, None if config.source == "snapshot" else events)
    return feature_frame(spine, feature_matrix(batch, config))


def feature_frame(spine: pd.DataFrame, matrix: FeatureMatrix) -> pd.DataFrame:
    """Key columns of `spine` and the features, categories as pandas categoricals."""
    columns: dict[str, object] = {
        LEAD_ID: spine[LEAD_ID].to_numpy(),
        AS_OF: spine[AS_OF].array,
    }
    for j, name in enumerate(matrix.names):
        if name in matrix.levels:
            columns[name] = pd.Categorical.from_codes(
                matrix.category_codes(name),
                categories=pd.Index(matrix.levels[name], dtype="str"),
            )
        else:
            columns[name] = matrix.values[:, j]
    return pd.DataFrame(columns)


def _account_block(
    batch: LeadBatch, values: LeadValues, events: EventArrays, config: FeatureConfig
) -> np.ndarray:
    """What everyone at the lead's account (the lead included) did strictly before as_of.

    The same point-in-time join as the lead's own behaviour, keyed by account instead of lead.
    Leads without an account get NaN; the account's other leads are those of the batch.
    """
    assert config.account_column is not None and batch.created_ns is not None
    account_of_lead, accounts = text_codes(values.raw(config.account_column))
    n_accounts = len(accounts)
    out = np.full((batch.n_rows, len(ACCOUNT_FEATURES)), np.nan)
    spine_account = account_of_lead[batch.row_lead]
    rows = np.flatnonzero(spine_account >= 0)
    if len(rows) == 0:
        return out
    spine_account, moments = spine_account[rows], batch.as_of_ns[rows]

    # Leads are "created" events of their account.
    created = EventArrays(
        lead_pos=account_of_lead.astype(np.int64),
        type_code=np.zeros(batch.n_leads, dtype=np.int64),
        ts=batch.created_ns,
    )
    joined = join_before(spine_account, moments, created, n_accounts)
    out[rows, 0] = np.bincount(joined.row, minlength=len(rows))

    outbound = np.array([kind in config.outbound_event_types for kind in config.event_types])
    inbound = (events.type_code >= 0) & ~outbound[np.maximum(events.type_code, 0)]
    owner = np.where(events.lead_pos >= 0, account_of_lead[np.maximum(events.lead_pos, 0)], -1)
    account_events = EventArrays(
        lead_pos=np.where(inbound, owner, -1), type_code=events.type_code, ts=events.ts
    )
    engagement = np.zeros(len(rows))
    recent = np.zeros(len(rows))
    for chunk in spine_chunks(spine_account, account_events, n_accounts):
        joined = join_before(spine_account[chunk], moments[chunk], account_events, n_accounts)
        decay = np.exp2(-joined.age_days / config.decay_half_life_days)
        engagement[chunk] = np.bincount(joined.row, weights=decay, minlength=len(chunk))
        recent[chunk] = np.bincount(joined.row[joined.age_days < 30], minlength=len(chunk))
    out[rows, 1] = engagement
    out[rows, 2] = recent
    return out


def build_features(
    leads: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp, config: FeatureConfig
) -> pd.DataFrame:
    """Features at one moment for every lead created at or before `as_of`, ordered by lead id."""
    as_of = pd.Timestamp(as_of)
    if as_of.tzinfo is None:
        raise DataContractError("as_of must carry a timezone (e.g. 2024-06-01T00:00:00Z)")
    known = leads[leads[CREATED_AT] <= as_of].sort_values(LEAD_ID, kind="stable")
    spine = pd.DataFrame(
        {LEAD_ID: known[LEAD_ID].to_numpy(), AS_OF: pd.Series(as_of, index=range(len(known)))}
    )
    spine[AS_OF] = spine[AS_OF].dt.tz_convert("UTC").dt.as_unit("ns")
    return build_features_at(spine, leads, events, config)
