"""The kernel's one input: leads, the moments they are scored at and their events, as arrays.

Every path builds a `LeadBatch` here and the feature and points kernels read nothing else:
API bodies and pyfunc rows through `batch_from_records` (each record is its own lead, with the
events sent with it), loaded files and training sets through `batch_from_frames` (a leads
table, a spine of (lead_id, as_of) snapshots and an event log). Values stay raw: the kernels
decide what a missing value, a number or a category is, once for every path.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from features.contract import DataContractError
from features.pointintime import (
    AS_OF,
    EventArrays,
    EventsAtSnapshots,
    as_utc_ns,
    chunk_count,
    join_before,
    positions,
)
from features.vocabulary import CREATED_AT, EVENT_TYPE, LEAD_ID, TS

EVENTS_FIELD = "events"


@dataclass(frozen=True)
class LeadBatch:
    """Leads (one entry each), scored rows (one per (lead, as_of)) and events, as arrays."""

    lead_ids: np.ndarray  # per lead
    columns: Mapping[str, np.ndarray]  # raw attribute values per lead, by column name
    created_ns: np.ndarray | None  # int64 ns per lead; None for snapshot exports
    row_lead: np.ndarray  # int64 per scored row: position of its lead
    as_of_ns: np.ndarray  # int64 ns per scored row
    event_lead: np.ndarray  # int64 per event: position of its lead, -1 for unknown leads
    event_ts: np.ndarray  # int64 ns per event
    event_kind: np.ndarray  # int64 per event: position in `kinds`, -1 when missing
    kinds: tuple[str, ...]  # event type names, as sent

    @property
    def n_leads(self) -> int:
        return len(self.lead_ids)

    @property
    def n_rows(self) -> int:
        return len(self.row_lead)

    def column(self, name: str) -> np.ndarray | None:
        """A lead column's raw values, or None when no lead has it."""
        return self.columns.get(name, None)

    def events_of_types(self, event_types: Sequence[str]) -> EventArrays:
        """The events encoded against a type list: other types get -1 (and are not joined)."""
        return EventArrays(
            lead_pos=self.event_lead,
            type_code=self._type_lookup(event_types)[self.event_kind],
            ts=self.event_ts,
        )

    def events_before(self, event_types: Sequence[str]) -> EventsAtSnapshots | None:
        """Each row's events of `event_types` strictly before its as_of, cut from one join of
        all the batch's events that the features and the rules share; None when that join is
        too large to hold at once (callers then join their types in chunks)."""
        joined = self._all_events_before
        return None if joined is None else joined.of_types(self._type_lookup(event_types))

    @cached_property
    def _all_events_before(self) -> EventsAtSnapshots | None:
        every = EventArrays(lead_pos=self.event_lead, type_code=self.event_kind, ts=self.event_ts)
        if chunk_count(self.row_lead, every, self.n_leads) > 1:
            return None
        return join_before(self.row_lead, self.as_of_ns, every, self.n_leads)

    def _type_lookup(self, event_types: Sequence[str]) -> np.ndarray:
        return _type_lookup(self.kinds, tuple(event_types))


@lru_cache(maxsize=256)
def _type_lookup(kinds: tuple[str, ...], event_types: tuple[str, ...]) -> np.ndarray:
    """Each batch kind's position in `event_types` (-1 when not there); the last entry answers
    code -1 (no type). Cached, as the features and the rules ask on every call; read-only."""
    index = {kind: i for i, kind in enumerate(event_types)}
    lookup = np.array([*(index.get(kind, -1) for kind in kinds), -1], dtype=np.int64)
    lookup.flags.writeable = False
    return lookup


# The longest span between a lead's score time and its creation or one of its events. Times are
# int64 nanoseconds, which hold 292 years; longer spans are CRM placeholders, not history, and
# would overflow the ages computed from them.
MAX_SPAN_YEARS = 200
_MAX_SPAN_NS = float(MAX_SPAN_YEARS * 365 * 86_400 * 10**9)


def unscorable_rows(batch: LeadBatch) -> tuple[np.ndarray, str, str] | None:
    """Scored rows that no kernel may score, the field at fault and why: a lead scored before
    it was created, or a creation or event further than MAX_SPAN_YEARS from the score time.
    None when all can be scored."""
    # Few numpy calls on the common path (each has a fixed cost that dominates one row):
    # `count_nonzero` rather than `any`, and events checked against the batch's bounds first.
    if not batch.n_rows:
        return None
    as_of = batch.as_of_ns
    if batch.created_ns is not None:
        created = batch.created_ns[batch.row_lead]
        early = as_of < created
        if np.count_nonzero(early):
            return early.nonzero()[0], CREATED_AT, "is scored before it was created"
        # In float: the difference itself may not fit int64.
        old = as_of.astype(np.float64) - created.astype(np.float64) > _MAX_SPAN_NS
        if np.count_nonzero(old):
            return (
                old.nonzero()[0],
                CREATED_AT,
                f"was created over {MAX_SPAN_YEARS} years before its score time",
            )
    ts = batch.event_ts
    if len(ts):
        # No event is further from any score time than the batch's extremes are from each
        # other (float rounding is monotonic), so only a batch failing this looks per lead.
        latest, earliest = float(np.maximum.reduce(as_of)), float(np.minimum.reduce(as_of))
        if (
            latest - float(np.minimum.reduce(ts)) > _MAX_SPAN_NS
            or float(np.maximum.reduce(ts)) - earliest > _MAX_SPAN_NS
        ):
            return _rows_with_far_events(batch)
    return None


def _rows_with_far_events(batch: LeadBatch) -> tuple[np.ndarray, str, str] | None:
    """The rows of leads with an event over MAX_SPAN_YEARS from one of their score times."""
    known = batch.event_lead >= 0
    if not known.any():
        return None
    moments = batch.as_of_ns.astype(np.float64)
    latest = np.full(batch.n_leads, -np.inf)
    earliest = np.full(batch.n_leads, np.inf)
    np.maximum.at(latest, batch.row_lead, moments)
    np.minimum.at(earliest, batch.row_lead, moments)
    owners = batch.event_lead[known]
    ts = batch.event_ts[known].astype(np.float64)
    far = (latest[owners] - ts > _MAX_SPAN_NS) | (ts - earliest[owners] > _MAX_SPAN_NS)
    if not far.any():
        return None
    leads = np.unique(owners[far])
    return (
        np.flatnonzero(np.isin(batch.row_lead, leads)),
        EVENTS_FIELD,
        f"has events over {MAX_SPAN_YEARS} years from its score time",
    )


# --- records: API bodies and pyfunc rows -------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def read_time_text(text: str) -> datetime | None:
    """The one reading of a time sent as text, for record fields (`created_at`, `as_of`, in the
    API's schema too) and events alike: ISO 8601 as `datetime.fromisoformat` reads it, with
    surrounding spaces and RFC 3339's lower-case "t" and "z" allowed; None when it is not one.
    Whether it has a timezone is the caller's to check."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip().upper())
    except ValueError:
        return None


def _since_epoch(text: str) -> timedelta | None:
    """An aware time's distance from the epoch, for the spellings `read_events` does not read
    inline; None when it is not an aware time or too far to subtract."""
    moment = read_time_text(text)
    if moment is None or moment.utcoffset() is None:
        return None
    try:
        return moment - _EPOCH
    except OverflowError:
        return None


def time_ns(value: object, name: str) -> int:
    """Nanoseconds since epoch (UTC) of an aware datetime, pandas Timestamp or ISO 8601 text
    with an offset (`read_time_text`); anything else is refused with the field's name."""
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            raise DataContractError(f"{name}: time {value} has no timezone")
        return int(value.value)
    if isinstance(value, str):
        moment = read_time_text(value)
        if moment is None:
            raise DataContractError(f"{name}: {value!r} is not an ISO 8601 time")
        value = moment
    if not isinstance(value, datetime):
        raise DataContractError(f"{name}: {value!r} is not a time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataContractError(f"{name}: time {value.isoformat()} has no timezone")
    # Exact integer arithmetic: float seconds would round some microseconds.
    return (value - _EPOCH) // _MICROSECOND * 1_000


def batch_from_records(
    records: Sequence[Mapping[str, Any]],
    now_ns: int,
    *,
    with_created: bool = True,
) -> LeadBatch:
    """One lead per record: its attributes, `created_at` (when `with_created`), an optional
    `as_of` (default `now_ns`) and an optional `events` list of {"ts", "event_type"} (or its
    JSON text). A repeated lead id is another lead: each copy sees only its own events. A
    column some records lack is missing for them."""
    n = len(records)
    # Every record's keys, in order of first appearance.
    names = dict.fromkeys(chain.from_iterable(records))
    for key in (LEAD_ID, CREATED_AT, AS_OF, EVENTS_FIELD):
        names.pop(key, None)
    values: dict[str, np.ndarray] = {}
    for name in names:
        column = np.empty(n, dtype=object)
        column[:] = [record.get(name) for record in records]
        values[name] = column
    lead_ids = np.empty(n, dtype=object)
    lead_ids[:] = [record.get(LEAD_ID) for record in records]
    created = (
        np.array(
            [time_ns(record.get(CREATED_AT), CREATED_AT) for record in records], dtype=np.int64
        )
        if with_created
        else None
    )
    as_of = np.array(
        [
            now_ns if _absent(record.get(AS_OF)) else time_ns(record[AS_OF], AS_OF)
            for record in records
        ],
        dtype=np.int64,
    )
    # The API hands over events it has already read (`LeadIn.events`); others are read here.
    listed = [
        events if isinstance(events, EventList) else read_events(events)
        for events in [record.get(EVENTS_FIELD) for record in records]
    ]
    kinds = chain.from_iterable([events.kinds for events in listed])
    # Each kind's code is its position in order of first appearance: a new kind is given the
    # dict's size, in one pass in C.
    code_of: defaultdict[str, int] = defaultdict()
    code_of.default_factory = code_of.__len__
    event_kind = np.fromiter(map(code_of.__getitem__, kinds), dtype=np.int64)
    counts = [len(events) for events in listed]
    event_ts = np.fromiter(
        chain.from_iterable([events.ts_ns for events in listed]), dtype=np.int64, count=sum(counts)
    )
    event_lead = np.repeat(np.arange(n, dtype=np.int64), counts)
    batch = LeadBatch(
        lead_ids=lead_ids,
        columns=values,
        created_ns=created,
        row_lead=np.arange(n, dtype=np.int64),
        as_of_ns=as_of,
        event_lead=event_lead,
        event_ts=event_ts,
        event_kind=event_kind,
        kinds=tuple(code_of),
    )
    refused = unscorable_rows(batch)
    if refused is not None:
        rows, field, why = refused
        raise LeadsUnscorable(
            f"lead {lead_ids[rows[0]]!r} (position {rows[0]}) {why}", rows.tolist(), field, why
        )
    return batch


class LeadsUnscorable(DataContractError):
    """Leads sent as records that cannot be scored: their positions among the records, the
    field at fault and why."""

    def __init__(self, problem: str, positions: list[int], field: str, why: str) -> None:
        self.positions, self.field, self.why = positions, field, why
        super().__init__(problem)


def _absent(value: object) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


class EventsUnreadable(DataContractError):
    """A lead's events that cannot be read: `problems` holds (event position or None, field or
    None, message), so the API can answer each with its path in the request."""

    def __init__(self, problems: list[tuple[int | None, str | None, str]]) -> None:
        self.problems = problems
        first = problems[0]
        where = ".".join(str(part) for part in ("events", *first[:2]) if part is not None)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{where}: {first[2]}{more}")


@dataclass(frozen=True, slots=True)
class EventList:
    """One lead's events as read by `read_events`: UTC nanoseconds and type names, in the order
    sent."""

    ts_ns: list[int]
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.ts_ns)


NO_EVENTS = EventList([], [])
MAX_EVENT_TYPE_LENGTH = 100
# What int64 nanoseconds (pandas' timestamps) can hold, in whole years; CRM placeholders such as
# 0001-01-01 are refused with the event's position rather than failing later.
EARLIEST = datetime(1678, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)
OUT_OF_RANGE = "time outside the supported range (years 1678 to 2261)"
_EARLIEST_NS = (EARLIEST - _EPOCH) // _MICROSECOND * 1_000
_LATEST_NS = (LATEST - _EPOCH) // _MICROSECOND * 1_000
NOT_A_TIME = "not an ISO 8601 time with a timezone (e.g. 2025-03-02T10:00:00Z)"


def read_events(cell: object) -> EventList:
    """The one reader of a lead's events, for every path: a list of {"ts", "event_type"}
    objects (or its JSON text; None or missing for none). `ts` is ISO 8601 text with a
    timezone (or an aware datetime), `event_type` non-empty text; other keys are ignored.
    Anything else raises `EventsUnreadable` naming every unreadable event.

    One loop, with no function of ours called per event: a 1,000-lead request holds tens of
    thousands of them."""
    if _absent(cell):
        return NO_EVENTS
    if isinstance(cell, str):
        try:
            cell = json.loads(cell)
        except ValueError as exc:
            raise EventsUnreadable([(None, None, f"not a JSON list ({exc})")]) from exc
    if not isinstance(cell, list | tuple | np.ndarray):
        raise EventsUnreadable([(None, None, 'expected a list of {"ts", "event_type"} objects')])
    ts_ns: list[int] = []
    kinds: list[str] = []
    parse = datetime.fromisoformat
    epoch, micro = _EPOCH, _MICROSECOND
    earliest, latest, longest = _EARLIEST_NS, _LATEST_NS, MAX_EVENT_TYPE_LENGTH
    problems: list[tuple[int | None, str | None, str]] = []
    for position, event in enumerate(cell):
        try:
            ts = event[TS]
            kind = event[EVENT_TYPE]
        except (KeyError, TypeError, IndexError):
            problems.extend(_event_shape(position, event))
            continue
        ns: int | None
        if type(ts) is str:  # what a request sends: parsed and converted inline
            try:
                # Only an aware datetime can be subtracted from the (aware) epoch.
                since: timedelta | None = parse(ts) - epoch
            except (ValueError, TypeError, OverflowError):
                since = _since_epoch(ts)  # other spellings, as every time field reads them
            # Exact integer arithmetic (what `since // micro * 1_000` gives, cheaper): float
            # seconds would round some microseconds.
            ns = (
                None
                if since is None
                else (since.days * 86_400 + since.seconds) * 1_000_000_000
                + since.microseconds * 1_000
            )
        else:
            try:
                if isinstance(ts, pd.Timestamp):
                    ns = ts.value if ts.tzinfo is not None else None
                else:
                    # An aware datetime; a naive one raises TypeError here.
                    ns = (ts - epoch) // micro * 1_000
            except (ValueError, TypeError, OverflowError):
                ns = None
        if ns is None:
            problems.append((position, TS, NOT_A_TIME))
        elif not earliest <= ns < latest:
            problems.append((position, TS, OUT_OF_RANGE))
        if type(kind) is not str or not 0 < len(kind) <= longest:
            problems.append((position, EVENT_TYPE, f"text of 1 to {longest} characters"))
        if not problems:
            ts_ns.append(ns)  # type: ignore[arg-type]
            kinds.append(kind)
    if problems:
        raise EventsUnreadable(problems)
    return EventList(ts_ns, kinds)


def _event_shape(position: int, event: object) -> list[tuple[int | None, str | None, str]]:
    if not isinstance(event, Mapping):
        return [(position, None, 'expected an object {"ts", "event_type"}')]
    return [(position, key, "Field required") for key in (TS, EVENT_TYPE) if key not in event]


# --- frames: loaded files and training sets ----------------------------------------------------


class _FrameColumns(Mapping[str, np.ndarray]):
    """A leads frame's columns as arrays, converted when a kernel first asks for one."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._names = [str(c) for c in frame.columns if c not in (LEAD_ID, CREATED_AT)]
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            if name not in self._names:
                raise KeyError(name)
            column = self._frame[name]
            numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(
                column
            )
            # Nullable numbers (Int64, Float64) as float with NaN, not objects holding pd.NA.
            self._cache[name] = (
                column.to_numpy(dtype=np.float64, na_value=np.nan) if numeric else column.to_numpy()
            )
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


def batch_from_frames(
    spine: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame | None
) -> LeadBatch:
    """Snapshots `spine` (`lead_id`, `as_of`) of the leads table (unique ids), with the event
    log `events` (`lead_id`, `ts`, `event_type`; None or empty for none). Events of leads not
    in the table are kept aside by the join."""
    lead_ids = leads[LEAD_ID].to_numpy()
    row_lead = positions(lead_ids, spine[LEAD_ID].to_numpy())
    if (row_lead < 0).any():
        raise DataContractError(
            "snapshots name leads that are not in the leads table",
            column=LEAD_ID,
            rows=np.flatnonzero(row_lead < 0),
        )
    created = as_utc_ns(leads[CREATED_AT]) if CREATED_AT in leads.columns else None
    if events is None or events.empty:
        event_lead = event_ts = event_kind = np.zeros(0, dtype=np.int64)
        kinds: tuple[str, ...] = ()
    else:
        event_lead = positions(lead_ids, events[LEAD_ID].to_numpy())
        event_ts = as_utc_ns(events[TS])
        types = events[EVENT_TYPE]
        if isinstance(types.dtype, pd.CategoricalDtype):
            event_kind = types.cat.codes.to_numpy().astype(np.int64)
            kinds = tuple(str(k) for k in types.cat.categories)
        else:
            codes, uniques = pd.factorize(types)
            event_kind = codes.astype(np.int64)
            kinds = tuple(str(k) for k in uniques)
    batch = LeadBatch(
        lead_ids=lead_ids,
        columns=_FrameColumns(leads),
        created_ns=created,
        row_lead=row_lead.astype(np.int64),
        as_of_ns=as_utc_ns(spine[AS_OF]),
        event_lead=event_lead.astype(np.int64),
        event_ts=event_ts,
        event_kind=event_kind,
        kinds=kinds,
    )
    refused = unscorable_rows(batch)
    if refused is not None:
        rows, field, why = refused
        column = CREATED_AT if field == CREATED_AT else TS
        raise DataContractError(f"a lead {why}", column=column, rows=rows)
    return batch
