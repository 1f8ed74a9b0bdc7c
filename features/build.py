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

KEY_COLUMNS: tuple[str, ...] = (LEAD_ID, AS_OF)
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


def _distinct_days(row: np.ndarray, day: np.ndarray, n_rows: int) -> np.ndarray:
    """Number of distinct calendar days per row, via a (rows x days) bitmap built in slices.

    Order-independent and linear in the number of events; the slices keep the bitmap small.
    """
    counts = np.zeros(n_rows)
    if len(day) == 0:
        return counts
    first = int(day.min())
    span = int(day.max()) - first + 1
    rows_per_slice = max(1, _BITMAP_BYTES // span)
    for low in range(0, n_rows, rows_per_slice):
        high = min(n_rows, low + rows_per_slice)
        inside = (row >= low) & (row < high) if rows_per_slice < n_rows else slice(None)
        seen = np.zeros((high - low) * span, dtype=bool)
        seen[(row[inside] - low) * span + (day[inside] - first)] = True
        counts[low:high] = seen.reshape(high - low, span).sum(axis=1)
    return counts


_BITMAP_BYTES = 256 * 2**20


def _behaviour_block(joined: EventsAtSnapshots, config: FeatureConfig, out: np.ndarray) -> None:
    """Write the behaviour features of every joined row into `out` (rows x names)."""
    n, n_types, windows = joined.n_rows, len(config.event_types), config.windows_days
    key = joined.row * n_types + joined.type_code
    age = joined.age_days

    def per_type(mask: np.ndarray | None) -> np.ndarray:
        keys = key if mask is None else key[mask]
        return np.bincount(keys, minlength=n * n_types).reshape(n, n_types)

    # Per type: one column per window, then all-time count, then days since the last one.
    per_type_block = out[:, : n_types * (len(windows) + 2)].reshape(n, n_types, len(windows) + 2)
    for i, window in enumerate(windows):
        per_type_block[:, :, i] = per_type(age < window)
    all_time = per_type(None)
    per_type_block[:, :, len(windows)] = all_time
    newest = np.full(n * n_types, np.inf)
    np.minimum.at(newest, key, age)
    newest[np.isinf(newest)] = np.nan
    per_type_block[:, :, len(windows) + 1] = newest.reshape(n, n_types)
    if not np.shares_memory(per_type_block, out):
        out[:, : n_types * (len(windows) + 2)] = per_type_block.reshape(
            n, n_types * (len(windows) + 2)
        )

    inbound_types = np.array(
        [kind not in config.outbound_event_types for kind in config.event_types]
    )
    inbound = inbound_types[joined.type_code]
    row_in, age_in = joined.row[inbound], age[inbound]
    decay = np.exp2(-age_in / config.decay_half_life_days)
    last_7 = np.bincount(row_in[age_in < 7], minlength=n)
    last_30 = np.bincount(row_in[age_in < 30], minlength=n)
    last_activity = np.full(n, np.inf)
    np.minimum.at(last_activity, row_in, age_in)
    last_activity[np.isinf(last_activity)] = np.nan
    kinds = list(config.event_types)
    # Divided only where the divisor is positive: no warnings to silence.
    velocity = np.divide(last_7 / 7, last_30 / 30, out=np.zeros(n), where=last_30 > 0)
    open_rate = np.full(n, np.nan)
    if "email_sent" in kinds and "email_open" in kinds:
        sent = all_time[:, kinds.index("email_sent")]
        opened = all_time[:, kinds.index("email_open")]
        np.divide(opened, sent, out=open_rate, where=sent > 0)
    tail = out[:, n_types * (len(windows) + 2) :]
    tail[:, 0] = np.bincount(row_in, weights=decay, minlength=n)
    tail[:, 1] = _distinct_days(row_in, joined.day[inbound], n)
    tail[:, 2] = velocity
    tail[:, 3] = last_activity
    tail[:, 4] = open_rate


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
            columns[name] = np.where(codes >= 0, codes, np.nan)
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
