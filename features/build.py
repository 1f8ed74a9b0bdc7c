"""Point-in-time features: one row per snapshot (lead, as_of), from events strictly before as_of."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import DataContractError
from features.fit import fit_features
from features.pointintime import (
    AS_OF,
    NS_PER_DAY,
    EventsAtSnapshots,
    as_utc_ns,
    events_before,
    spine_chunks,
)
from features.vocabulary import CREATED_AT, LEAD_ID

logger = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = (LEAD_ID, AS_OF)


def behaviour_feature_names(config: FeatureConfig) -> list[str]:
    """Names of the behaviour features, in output order."""
    names: list[str] = []
    for kind in config.event_types:
        names += [f"{kind}_count_{w}d" for w in config.windows_days]
        names += [f"{kind}_count_all", f"{kind}_days_since_last"]
    return [
        *names,
        "engagement_decayed",
        "active_days",
        "velocity_7d_vs_30d",
        "days_since_last_activity",
        "email_open_rate",
    ]


def feature_names(config: FeatureConfig) -> list[str]:
    """All feature columns `build_features` returns, besides the key columns."""
    fit: list[str] = []
    if config.title_column is not None:
        fit.append("seniority")
    if config.email_column is not None:
        fit.append("is_company_email")
    return [
        "lead_age_days",
        *fit,
        *config.categorical_columns,
        *config.numeric_columns,
        *behaviour_feature_names(config),
    ]


def check_lead_columns(leads: pd.DataFrame, config: FeatureConfig) -> None:
    """The feature config names only columns the leads have."""
    wanted = [
        LEAD_ID,
        CREATED_AT,
        *(c for c in (config.title_column, config.email_column) if c is not None),
        *config.categorical_columns,
        *config.numeric_columns,
    ]
    missing = [c for c in wanted if c not in leads.columns]
    if missing:
        raise DataContractError(
            f"the feature config names column(s) {', '.join(map(repr, missing))} "
            "that the leads do not have",
            hint=f"leads have: {', '.join(map(str, leads.columns[:15]))}",
        )


def _behaviour_block(joined: EventsAtSnapshots, config: FeatureConfig) -> np.ndarray:
    """Behaviour features for every spine row as a float matrix (rows x names)."""
    n, n_types = joined.n_rows, len(config.event_types)
    key = joined.row * n_types + joined.type_code
    age = joined.age_days
    columns: list[np.ndarray] = []

    def per_type(mask: np.ndarray | None) -> np.ndarray:
        keys = key if mask is None else key[mask]
        return np.bincount(keys, minlength=n * n_types).reshape(n, n_types).astype(np.float64)

    windows = {w: per_type(age < w) for w in config.windows_days}
    all_time = per_type(None)
    newest_flat = np.full(n * n_types, np.inf)
    np.minimum.at(newest_flat, key, age)
    newest = newest_flat.reshape(n, n_types)
    newest[np.isinf(newest)] = np.nan
    for t in range(n_types):
        columns += [windows[w][:, t] for w in config.windows_days]
        columns += [all_time[:, t], newest[:, t]]

    inbound_types = np.array(
        [kind not in config.outbound_event_types for kind in config.event_types]
    )
    inbound = inbound_types[joined.type_code]
    row_in, age_in = joined.row[inbound], age[inbound]
    half_life = config.decay_half_life_days
    decayed = np.bincount(row_in, weights=np.exp2(-age_in / half_life), minlength=n)

    # Distinct (row, day) pairs: hash-based unique is order-independent and linear.
    day_in = joined.day[inbound]
    span = int(day_in.max() - day_in.min() + 1) if len(day_in) else 1
    pairs = pd.unique(row_in * span + (day_in - (day_in.min() if len(day_in) else 0)))
    active_days = np.bincount(pairs // span, minlength=n).astype(np.float64)

    last_7 = np.bincount(row_in[age_in < 7], minlength=n)
    last_30 = np.bincount(row_in[age_in < 30], minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        velocity = np.where(last_30 > 0, (last_7 / 7) / (last_30 / 30), 0.0)
    last_activity = np.full(n, np.inf)
    np.minimum.at(last_activity, row_in, age_in)
    last_activity[np.isinf(last_activity)] = np.nan

    kinds = list(config.event_types)
    if "email_sent" in kinds and "email_open" in kinds:
        sent = all_time[:, kinds.index("email_sent")]
        opened = all_time[:, kinds.index("email_open")]
        with np.errstate(divide="ignore", invalid="ignore"):
            open_rate = np.where(sent > 0, opened / sent, np.nan)
    else:
        open_rate = np.full(n, np.nan)
    columns += [decayed, active_days, velocity, last_activity, open_rate]
    return np.column_stack(columns)


def build_features_at(
    spine: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame, config: FeatureConfig
) -> pd.DataFrame:
    """Features for each snapshot in `spine` (columns `lead_id`, `as_of`), in spine order.

    Behaviour uses only events strictly before each row's as_of; fit attributes come from the
    lead row, which holds what is known at creation. Outcome columns are never read.
    """
    check_lead_columns(leads, config)
    lead_pos = pd.Index(leads[LEAD_ID].to_numpy()).get_indexer(spine[LEAD_ID].to_numpy())
    if (lead_pos < 0).any():
        raise DataContractError(
            "snapshots name leads that are not in the leads table",
            column=LEAD_ID,
            rows=np.flatnonzero(lead_pos < 0),
        )
    spine = spine[[LEAD_ID, AS_OF]].reset_index(drop=True)
    names = behaviour_feature_names(config)
    behaviour = np.empty((len(spine), len(names)), dtype=np.float64)
    for positions in spine_chunks(spine, events):
        joined = events_before(spine.iloc[positions], events, list(config.event_types))
        behaviour[positions] = _behaviour_block(joined, config)

    fit = fit_features(leads, config).iloc[lead_pos].reset_index(drop=True)
    created = as_utc_ns(leads[CREATED_AT])[lead_pos]
    lead_age = (as_utc_ns(spine[AS_OF]) - created) / NS_PER_DAY
    frame = pd.concat(
        [
            spine,
            pd.DataFrame({"lead_age_days": lead_age}),
            fit,
            pd.DataFrame(behaviour, columns=names),
        ],
        axis=1,
    )
    ordered: pd.DataFrame = frame[[*KEY_COLUMNS, *feature_names(config)]]
    return ordered


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
