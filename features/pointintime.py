"""The point-in-time join: a snapshot (lead, as_of) sees only its lead's events before as_of.

Everything that reads behaviour (features, rule-based points) goes through `join_before`, so no
caller can look past `as_of` by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

AS_OF = "as_of"
NS_PER_DAY = 86_400 * 10**9
# Upper bound on (snapshot, event) pairs joined at once; keeps memory flat for many snapshots.
MAX_PAIRS_PER_CHUNK = 24_000_000


@dataclass(frozen=True)
class EventArrays:
    """Events as plain arrays: the position of each event's lead in a lead table, type, time."""

    lead_pos: np.ndarray  # int64, -1 for leads not in the table
    type_code: np.ndarray  # int64, -1 for types not in the type list
    ts: np.ndarray  # int64 ns since epoch, UTC


@dataclass(frozen=True)
class EventsAtSnapshots:
    """One entry per (snapshot row, event) with the event strictly before the snapshot's as_of."""

    n_rows: int
    row: np.ndarray  # int64: position in the spine
    type_code: np.ndarray  # int64: position in the event type list
    age_days: np.ndarray  # float64: as_of - ts in days, always > 0
    day: np.ndarray  # int64: the event's UTC calendar day (days since epoch)

    def __post_init__(self) -> None:
        # A batch keeps its join for features and rule points alike, and `of_types` shares
        # arrays: read-only, so that no reader can change what another reads.
        for values in (self.row, self.type_code, self.age_days, self.day):
            values.flags.writeable = False

    def of_types(self, lookup: np.ndarray) -> EventsAtSnapshots:
        """The pairs whose type `lookup` maps to a code >= 0, with that code as their type;
        pair order is kept, so sums over them add in the same order as a join of those types.
        When every pair is kept the other arrays are shared, not copied: no reader writes them."""
        code = lookup[self.type_code]
        if np.minimum.reduce(code, initial=0) >= 0:
            return EventsAtSnapshots(self.n_rows, self.row, code, self.age_days, self.day)
        keep = code >= 0
        return EventsAtSnapshots(
            n_rows=self.n_rows,
            row=self.row[keep],
            type_code=code[keep],
            age_days=self.age_days[keep],
            day=self.day[keep],
        )


def as_utc_ns(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since epoch of UTC timestamps (NaT becomes the int64 minimum)."""
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return np.asarray(index.tz_convert("UTC").as_unit("ns").asi8)


def positions(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Position of each query among the unique `keys`, -1 where absent.

    Integer ids in a compact range (the common case for CRM exports and the simulator) use a
    direct lookup table, several times faster than hashing; anything else uses a hash index.
    """
    if keys.dtype.kind in "iu" and queries.dtype.kind in "iu" and len(keys):
        low, high = int(keys.min()), int(keys.max())
        if high - low < 4 * len(keys) + 1024:
            lookup = np.full(high - low + 1, -1, dtype=np.int64)
            lookup[keys - low] = np.arange(len(keys))
            inside = (queries >= low) & (queries <= high)
            found = np.full(len(queries), -1, dtype=np.int64)
            found[inside] = lookup[queries[inside] - low]
            return found
    return np.asarray(pd.Index(keys).get_indexer(pd.Index(queries)), dtype=np.int64)


def join_before(
    spine_lead_pos: np.ndarray, spine_as_of: np.ndarray, events: EventArrays, n_leads: int
) -> EventsAtSnapshots:
    """Pair each snapshot with its lead's events strictly before its as_of.

    `spine_lead_pos` is each snapshot's lead position in the same lead table `events` was
    encoded against; `spine_as_of` is in ns. Fully vectorised: with one snapshot per lead each
    event maps to at most one row; otherwise events repeat once per snapshot of their lead.
    """
    n_rows = len(spine_lead_pos)
    counts = np.bincount(spine_lead_pos, minlength=n_leads)
    if n_rows == 0 or np.maximum.reduce(counts, initial=0) <= 1:
        # Each event's row and as_of through its lead; the extra last entry answers lead -1.
        row_of_lead = np.full(n_leads + 1, -1, dtype=np.int64)
        row_of_lead[spine_lead_pos] = np.arange(n_rows)
        as_of_of_lead = np.zeros(n_leads + 1, dtype=np.int64)
        as_of_of_lead[spine_lead_pos] = spine_as_of
        row = row_of_lead[events.lead_pos]
        age_ns = as_of_of_lead[events.lead_pos] - events.ts
        # The pairs of a scored lead and a known type (neither is negative, so neither is their
        # bitwise or), strictly before as_of.
        keep = ((row | events.type_code) >= 0) & (age_ns > 0)
        event_pos = np.flatnonzero(keep)
        row, age_ns = row[event_pos], age_ns[event_pos]
    else:
        # Rows of lead c are order[starts[c]:starts[c] + counts[c]].
        usable = (events.lead_pos >= 0) & (events.type_code >= 0)
        order = np.argsort(spine_lead_pos, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        candidates = np.flatnonzero(usable)
        per_event = counts[events.lead_pos[candidates]]
        event_pos = np.repeat(candidates, per_event)
        first_pair = np.repeat(np.cumsum(per_event) - per_event, per_event)
        offset = np.arange(len(event_pos)) - first_pair
        row = order[starts[events.lead_pos[event_pos]] + offset]
        age_ns = spine_as_of[row] - events.ts[event_pos]
        before = age_ns > 0
        row, event_pos, age_ns = row[before], event_pos[before], age_ns[before]

    return EventsAtSnapshots(
        n_rows=n_rows,
        row=row.astype(np.int64, copy=False),
        type_code=events.type_code[event_pos],
        age_days=age_ns / NS_PER_DAY,
        day=events.ts[event_pos] // NS_PER_DAY,
    )


def chunk_count(spine_lead_pos: np.ndarray, events: EventArrays, n_leads: int) -> int:
    """In how many chunks `spine_chunks` joins these snapshots (each a bounded number of pairs)."""
    if len(spine_lead_pos) * len(events.lead_pos) <= MAX_PAIRS_PER_CHUNK:
        return 1  # at most that many pairs: no need to count
    snapshots_per_lead = np.bincount(spine_lead_pos, minlength=n_leads)
    if (
        int(np.maximum.reduce(snapshots_per_lead, initial=0)) * len(events.lead_pos)
        <= MAX_PAIRS_PER_CHUNK
    ):
        return 1  # each event pairs with at most that many snapshots: no need to count either
    known = events.lead_pos[events.lead_pos >= 0]
    events_per_lead = np.bincount(known, minlength=n_leads)
    pairs = int(snapshots_per_lead @ events_per_lead)
    return max(1, -(-pairs // MAX_PAIRS_PER_CHUNK))


def spine_chunks(
    spine_lead_pos: np.ndarray, events: EventArrays, n_leads: int
) -> Iterator[np.ndarray]:
    """Spine positions split by lead so that each chunk joins a bounded number of pairs."""
    n_chunks = chunk_count(spine_lead_pos, events, n_leads)
    if n_chunks == 1:
        yield np.arange(len(spine_lead_pos))
        return
    chunk_of_row = spine_lead_pos % n_chunks
    for chunk in range(n_chunks):
        rows = np.flatnonzero(chunk_of_row == chunk)
        if len(rows):
            yield rows
