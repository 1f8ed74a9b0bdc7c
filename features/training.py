"""Training snapshots and labels: examples taken the way production scores leads."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from features.build import build_features_at
from features.config import FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.pointintime import AS_OF, NS_PER_DAY, as_utc_ns
from features.vocabulary import CLOSED_AT, CONVERTED, CREATED_AT, LEAD_ID, TS

logger = logging.getLogger(__name__)

LABEL = "converted_within_horizon"
_NAT = np.iinfo(np.int64).min


def observed_until(leads: pd.DataFrame, events: pd.DataFrame) -> pd.Timestamp:
    """The last moment the data speaks of: nothing after it is known."""
    times = [leads[CREATED_AT].max()]
    if CLOSED_AT in leads.columns:
        times.append(leads[CLOSED_AT].max())
    if len(events):
        times.append(events[TS].max())
    return pd.Timestamp(max(t for t in times if pd.notna(t)))


def _outcome_arrays(leads: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(won flag, closed_at in ns with NaT as int64 min) per lead; won leads need a close date."""
    if CONVERTED not in leads.columns:
        raise DataContractError(f"leads need the outcome column '{CONVERTED}' for training")
    won = leads[CONVERTED].fillna(0).to_numpy(dtype=np.int64) == 1
    if CLOSED_AT in leads.columns:
        closed = as_utc_ns(leads[CLOSED_AT])
    else:
        closed = np.full(len(leads), _NAT, dtype=np.int64)
    undated = won & (closed == _NAT)
    if undated.any():
        raise DataContractError(
            f"won leads need '{CLOSED_AT}' to tell when they converted",
            column=CLOSED_AT,
            rows=np.flatnonzero(undated),
        )
    return won, closed


def undated_lost_handled(leads: pd.DataFrame, policy: str) -> pd.DataFrame:
    """The leads with lost-but-undated ones handled as `SnapshotConfig.undated_lost` says."""
    if CONVERTED not in leads.columns:
        return leads
    lost = (leads[CONVERTED] == 0).fillna(False).to_numpy(dtype=bool)
    dated = (
        leads[CLOSED_AT].notna().to_numpy()
        if CLOSED_AT in leads.columns
        else np.zeros(len(leads), dtype=bool)
    )
    undated = lost & ~dated
    if not undated.any() or policy == "keep_open":
        return leads
    if policy == "drop":
        logger.warning("%d lost leads without '%s' left out of training", undated.sum(), CLOSED_AT)
        return leads[~undated].reset_index(drop=True)
    raise DataContractError(
        f"{int(undated.sum()):,} lost leads have no '{CLOSED_AT}': when they were lost is unknown",
        column=CLOSED_AT,
        rows=np.flatnonzero(undated),
        hint="set snapshots.undated_lost to 'drop' (leave them out) or 'keep_open' (count them "
        "open until the data ends, labelled not converted)",
    )


def snapshot_spine(
    leads: pd.DataFrame, config: SnapshotConfig, until: pd.Timestamp
) -> pd.DataFrame:
    """(lead_id, as_of) of each snapshot whose lead is still open and whose horizon is observed."""
    _, closed = _outcome_arrays(leads)
    created = as_utc_ns(leads[CREATED_AT])
    lead_pos: list[np.ndarray] = []
    times: list[np.ndarray] = []
    for offset in config.offsets_days:
        lead_pos.append(np.arange(len(leads)))
        times.append(created + offset * NS_PER_DAY)
    last = as_utc_ns(pd.Series([until])).item() - config.horizon_days * NS_PER_DAY
    if config.weekly:
        # Mondays 00:00 UTC (the epoch was a Thursday, hence the 3-day shift).
        week = 7 * NS_PER_DAY
        first_monday = ((created - 4 * NS_PER_DAY) // week + 1) * week + 4 * NS_PER_DAY
        end = np.where(closed == _NAT, last, np.minimum(closed, last))
        n_weeks = np.maximum(0, (end - first_monday) // week + 1)
        lead_pos.append(np.repeat(np.arange(len(leads)), n_weeks))
        starts = np.repeat(np.cumsum(n_weeks) - n_weeks, n_weeks)
        step = np.arange(int(n_weeks.sum())) - starts
        times.append(np.repeat(first_monday, n_weeks) + step * week)
    pos = np.concatenate(lead_pos)
    as_of = np.concatenate(times)
    still_open = (closed[pos] == _NAT) | (closed[pos] >= as_of)
    keep = still_open & (as_of <= last)
    spine = pd.DataFrame(
        {
            LEAD_ID: leads[LEAD_ID].to_numpy()[pos[keep]],
            AS_OF: pd.to_datetime(as_of[keep], unit="ns", utc=True),
        }
    )
    spine = spine.drop_duplicates().sort_values([AS_OF, LEAD_ID], kind="stable")
    return spine.reset_index(drop=True)


def label_snapshots(spine: pd.DataFrame, leads: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """1 where the lead converted in [as_of, as_of + horizon), else 0. Reads outcomes only."""
    won, closed = _outcome_arrays(leads)
    pos = pd.Index(leads[LEAD_ID].to_numpy()).get_indexer(spine[LEAD_ID].to_numpy())
    as_of = as_utc_ns(spine[AS_OF])
    closed_at = closed[pos]
    within = (closed_at >= as_of) & (closed_at < as_of + horizon_days * NS_PER_DAY)
    labels: np.ndarray = (won[pos] & within).astype(np.int8)
    return labels


def make_training_set(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    snapshots: SnapshotConfig,
    features: FeatureConfig,
) -> pd.DataFrame:
    """Point-in-time features and the label for every snapshot, ordered by (as_of, lead_id).

    Leads closed before a snapshot's as_of are left out of it, and so are snapshots whose
    horizon reaches past the observed period (their label is not known yet).
    """
    leads = undated_lost_handled(leads, snapshots.undated_lost)
    until = pd.Timestamp(snapshots.observed_until or observed_until(leads, events))
    if until.tzinfo is None:
        raise DataContractError("observed_until must carry a timezone")
    spine = snapshot_spine(leads, snapshots, until)
    if spine.empty:
        raise DataContractError(
            "no snapshot has its whole horizon observed",
            hint=(
                f"the data ends {until:%Y-%m-%d} and the horizon is {snapshots.horizon_days} "
                "days: use a shorter horizon or data that covers a longer period"
            ),
        )
    frame = build_features_at(spine, leads, events, features)
    frame[LABEL] = label_snapshots(spine, leads, snapshots.horizon_days)
    logger.info(
        "training set: %d snapshots of %d leads, %.1f%% converted within %d days",
        len(frame),
        frame[LEAD_ID].nunique(),
        100 * frame[LABEL].mean(),
        snapshots.horizon_days,
    )
    return frame
