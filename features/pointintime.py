"""The point-in-time join: a snapshot (lead, as_of) sees only its lead's events before as_of.

Everything that reads behaviour (features, rule-based points) goes through `events_before`, so
no caller can look past `as_of` by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.vocabulary import EVENT_TYPE, LEAD_ID, TS

AS_OF = "as_of"
NS_PER_DAY = 86_400 * 10**9
# Upper bound on (snapshot, event) pairs joined at once; keeps memory flat for many snapshots.
MAX_PAIRS_PER_CHUNK = 24_000_000


@dataclass(frozen=True)
class EventsAtSnapshots:
    """One entry per (snapshot row, event) with the event strictly before the snapshot's as_of."""

    n_rows: int
    row: np.ndarray  # int64: position in the spine
    type_code: np.ndarray  # int64: position in the event type list
    age_days: np.ndarray  # float64: as_of - ts in days, always > 0
    day: np.ndarray  # int64: the event's UTC calendar day (days since epoch)


def as_utc_ns(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since epoch of UTC timestamps (NaT becomes the int64 minimum)."""
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return np.asarray(index.tz_convert("UTC").as_unit("ns").asi8)


def event_type_codes(kinds: pd.Series, event_types: list[str]) -> np.ndarray:
    """Position of each event's type in `event_types`, -1 for other types."""
    if isinstance(kinds.dtype, pd.CategoricalDtype):
        lookup = pd.Index(event_types).get_indexer(kinds.cat.categories)
        codes = kinds.cat.codes.to_numpy()
        return np.where(codes >= 0, lookup[codes], -1).astype(np.int64)
    return np.asarray(
        pd.Index(event_types).get_indexer(pd.Index(kinds.astype("str"))), dtype=np.int64
    )


def events_before(
    spine: pd.DataFrame, events: pd.DataFrame, event_types: list[str]
) -> EventsAtSnapshots:
    """Join events to snapshots on lead id, keeping those strictly before each snapshot's as_of.

    `spine` has `lead_id` and `as_of`; a lead may have several snapshots. Fully vectorised:
    events are repeated once per snapshot of their lead, then filtered by time.
    """
    n_rows = len(spine)
    spine_leads = pd.Index(spine[LEAD_ID].to_numpy())
    lead_index = spine_leads.unique()
    spine_code = lead_index.get_indexer(spine_leads)
    event_code = lead_index.get_indexer(events[LEAD_ID].to_numpy())
    type_code = event_type_codes(events[EVENT_TYPE], event_types)
    ts = as_utc_ns(events[TS])
    keep = (event_code >= 0) & (type_code >= 0)
    event_code, type_code, ts = event_code[keep], type_code[keep], ts[keep]

    # Snapshot rows grouped by lead: rows of lead c are order[starts[c]:starts[c] + counts[c]].
    order = np.argsort(spine_code, kind="stable")
    counts = np.bincount(spine_code, minlength=len(lead_index))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))

    per_event = counts[event_code]
    event_pos = np.repeat(np.arange(len(event_code)), per_event)
    first_pair = np.repeat(np.cumsum(per_event) - per_event, per_event)
    offset = np.arange(len(event_pos)) - first_pair
    row = order[starts[event_code[event_pos]] + offset]

    as_of = as_utc_ns(spine[AS_OF])
    age_ns = as_of[row] - ts[event_pos]
    before = age_ns > 0
    row, event_pos, age_ns = row[before], event_pos[before], age_ns[before]
    return EventsAtSnapshots(
        n_rows=n_rows,
        row=row.astype(np.int64),
        type_code=type_code[event_pos],
        age_days=age_ns / NS_PER_DAY,
        day=ts[event_pos] // NS_PER_DAY,
    )


def spine_chunks(spine: pd.DataFrame, events: pd.DataFrame) -> Iterator[np.ndarray]:
    """Positions of the spine split by lead so that each chunk joins a bounded number of pairs."""
    leads = pd.Index(spine[LEAD_ID].to_numpy())
    unique = leads.unique()
    code = unique.get_indexer(leads)
    snapshots_per_lead = np.bincount(code, minlength=len(unique))
    events_per_lead = np.bincount(
        unique.get_indexer(events[LEAD_ID].to_numpy()) + 1, minlength=len(unique) + 1
    )[1:]
    pairs = int(snapshots_per_lead @ events_per_lead)
    n_chunks = max(1, -(-pairs // MAX_PAIRS_PER_CHUNK))
    if n_chunks == 1:
        yield np.arange(len(spine))
        return
    chunk_of_lead = np.arange(len(unique)) % n_chunks
    chunk_of_row = chunk_of_lead[code]
    for chunk in range(n_chunks):
        yield np.flatnonzero(chunk_of_row == chunk)
