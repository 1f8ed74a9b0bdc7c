"""The prediction log: every answer of /predict, recorded before it is sent, and outcomes.

The API hands records to `PredictionLog.append`, which puts them on a queue and returns a ticket;
a background thread commits what is queued in one transaction (group commit), or spills it to a
local file while the store fails, and completes the tickets. The API answers once its ticket has
completed (see `PredictionLog` for the guarantee). Outcomes posted back (won/lost) are written
synchronously by `record_outcomes`. `leadscore monitor` reads both back as DataFrames (see
`models.reports.monitoring`).

Storage is any SQLAlchemy URL (SQLAlchemy Core, no ORM); the app's default is
`sqlite:///predictions.db` in the working directory. SQLite runs in WAL mode so the API's writer
and a reading `leadscore monitor` do not block each other. Two tables, created if missing:

- `leadscore_predictions`: id, lead_id, scored_at, as_of, model_version, probability, mql, tier,
  threshold, rule_score, rule_mql, features (JSON text); indexed on scored_at, as it is read. Not
  on lead_id: ids arrive in no order, so such an index makes every commit write pages all over
  it, more as the table grows (SQLite, 340,000 rows: 31 ms per 1,000-row commit with it, 8 ms
  without). Stores made by earlier versions keep theirs until dropped
  (`DROP INDEX ix_leadscore_predictions_lead_id`); add one where lookups by lead need it;
- `leadscore_outcomes`: lead_id (primary key: a later outcome replaces the earlier one), outcome
  (1 won / 0 lost), closed_at, recorded_at.

No personal data: only the PREDICTION_FIELDS of a record are kept (any other key, such as an
email address, is ignored), and `features` keeps only the scalar feature values the caller chose,
minus any key that looks like contact data. Lead ids are stored as text. Times are UTC: stored as
naive UTC timestamps (portable across databases, microsecond precision) and returned as
timezone-aware UTC pandas columns; naive times are refused.

Text is stored as given or refused, alike on every database: a lead_id or model_version longer
than 255 characters, a tier longer than 32, or any of them holding a NUL character (`\\x00`,
which PostgreSQL text cannot hold) makes the record an `InvalidRecord` when it is converted,
never a truncated or cleaned value. The writer logs and counts such a record in `failed` and
stores the rest of its batch; `record_outcomes` refuses the call. Feature names and values may be
any text of any length, NUL included: `features` is JSON text, where a NUL is written `\\u0000`
and reads back as it was given.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pandas as pd
import pydantic_core
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from models.reports.monitoring import PREDICTION_COLUMNS

logger = logging.getLogger(__name__)

# What the monitor reads, plus the threshold in force and the key feature values (JSON).
PREDICTION_FIELDS: tuple[str, ...] = (*PREDICTION_COLUMNS, "threshold", "features")
OUTCOME_FIELDS: tuple[str, ...] = ("lead_id", "outcome", "closed_at", "recorded_at")
PREDICTIONS_TABLE = "leadscore_predictions"
OUTCOMES_TABLE = "leadscore_outcomes"

_REQUIRED = ("lead_id", "scored_at", "as_of", "model_version", "probability")
# Feature keys that look like contact data are never stored, whatever the caller passes.
_PERSONAL_KEY_PARTS = ("email", "phone", "first_name", "last_name", "full_name")
_PERSONAL_KEYS = frozenset({"name", "title", "job_title"})
_DROP_WARNING_SECONDS = 10.0  # at most one "queue full" warning per interval: the API is busy
_CHUNK = 500  # rows per statement for IN (...) lists; far below every database's limit
_ID_LENGTH = 255  # characters of lead_id and model_version
_TIER_LENGTH = 32
# How long a locked SQLite file is waited for: by the background writer (replays, outcomes,
# `append`), and by `record` on the request path, which then spills instead.
_BUSY_TIMEOUT_MS = 1_000
_RECORD_BUSY_TIMEOUT_MS = 100
_SPILL_GLOB = "spill-*.jsonl"
_FIRST_BACKOFF_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 30.0
# Spilled rows per transaction: a replay holds SQLite's write lock well under the request path's
# busy timeout.
_REPLAY_CHUNK = 1_000

# MySQL's DATETIME drops fractions of a second and its FLOAT is single precision.
_Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
_metadata = sa.MetaData()
predictions_table = sa.Table(
    PREDICTIONS_TABLE,
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # No index on lead_id: the log is read by time, and an index on ids that arrive in no order
    # makes each commit rewrite pages all over it (see the module docstring).
    sa.Column("lead_id", sa.String(_ID_LENGTH), nullable=False),
    sa.Column("scored_at", _Time, nullable=False, index=True),
    sa.Column("as_of", _Time, nullable=False),
    sa.Column("model_version", sa.String(_ID_LENGTH), nullable=False),
    sa.Column("probability", sa.Double, nullable=False),
    sa.Column("mql", sa.Boolean, nullable=True),
    sa.Column("tier", sa.String(_TIER_LENGTH), nullable=True),
    sa.Column("threshold", sa.Double, nullable=True),
    sa.Column("rule_score", sa.Double, nullable=True),
    sa.Column("rule_mql", sa.Boolean, nullable=True),
    sa.Column("features", sa.Text, nullable=True),
)
outcomes_table = sa.Table(
    OUTCOMES_TABLE,
    _metadata,
    sa.Column("lead_id", sa.String(_ID_LENGTH), primary_key=True),
    sa.Column("outcome", sa.SmallInteger, nullable=False),
    sa.Column("closed_at", _Time, nullable=False),
    sa.Column("recorded_at", _Time, nullable=False),
)


class InvalidRecord(ValueError):
    """A record that cannot be stored (missing field, naive time, wrong type)."""


# --- conversion of one record ------------------------------------------------------------------


def _utc_naive(value: object, field: str) -> datetime:
    """A timezone-aware time (datetime, pandas Timestamp or ISO text) as naive UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as error:
            raise InvalidRecord(f"{field}: not an ISO time: {value!r}") from error
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime(warn=False)  # nanoseconds go: the store keeps microseconds
    if not isinstance(value, datetime):
        raise InvalidRecord(f"{field}: expected a time, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord(f"{field}: time has no timezone: {value.isoformat()}")
    return value.astimezone(UTC).replace(tzinfo=None)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _plain(value: object) -> object:
    """numpy scalars as Python ones, NaN and NA as None."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if _missing(value) else value


def _optional_float(value: object, field: str) -> float | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRecord(f"{field}: expected a number, got {type(value).__name__}")
    return float(value)


def _optional_bool(value: object, field: str) -> bool | None:
    value = _plain(value)
    if value is None:
        return None
    if not isinstance(value, bool | int) or value not in (0, 1):
        raise InvalidRecord(f"{field}: expected true/false, got {value!r}")
    return bool(value)


def _optional_text(value: object, field: str, limit: int) -> str | None:
    value = _plain(value)
    return None if value is None else _column_text(value, field, limit)


def _storable(text: str, limit: int) -> bool:
    return len(text) <= limit and "\x00" not in text


def _column_text(value: object, field: str, limit: int) -> str:
    """Text for a column of `limit` characters, as given: too long or holding a NUL, refused."""
    text = str(value)
    if "\x00" in text:
        raise InvalidRecord(f"{field}: holds a NUL character (\\x00), which cannot be stored")
    if len(text) > limit:
        raise InvalidRecord(f"{field}: {len(text)} characters, more than the {limit} stored")
    return text


def _is_personal(key: str) -> bool:
    lowered = key.lower()
    return lowered in _PERSONAL_KEYS or any(part in lowered for part in _PERSONAL_KEY_PARTS)


def _feature_value(value: object, key: str) -> object:
    value = _plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InvalidRecord(f"features.{key}: expected a number, text or bool, got {type(value)}")


def _features_json(value: object) -> str | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise InvalidRecord(f"features: not JSON: {error}") from None
    if not isinstance(value, Mapping):
        raise InvalidRecord("features: expected a mapping of feature name to value")
    # Personal data is text (an address, a name, a title); a number under a name such as
    # `email_open_count_30d` is behaviour and is kept.
    values = {str(k): _feature_value(v, str(k)) for k, v in value.items()}
    kept = {k: v for k, v in values.items() if not (isinstance(v, str) and _is_personal(k))}
    return json.dumps(kept, sort_keys=True, allow_nan=False)


class PredictionRow(NamedTuple):
    """A row of the predictions table as stored: times naive UTC, features as JSON text."""

    lead_id: str
    scored_at: datetime
    as_of: datetime
    model_version: str
    probability: float
    mql: bool | None
    tier: str | None
    threshold: float | None
    rule_score: float | None
    rule_mql: bool | None
    features: str | None


def prediction_row(record: Mapping[str, object]) -> PredictionRow:
    """One record as a row of the predictions table; keys not in PREDICTION_FIELDS are ignored."""
    absent = [field for field in _REQUIRED if _missing(record.get(field))]
    if absent:
        raise InvalidRecord(f"missing {', '.join(absent)}")
    probability = _optional_float(record["probability"], "probability")
    if probability is None or not 0.0 <= probability <= 1.0:
        raise InvalidRecord(f"probability must be in [0, 1], got {record['probability']!r}")
    return PredictionRow(
        lead_id=_column_text(_plain(record["lead_id"]), "lead_id", _ID_LENGTH),
        scored_at=_utc_naive(record["scored_at"], "scored_at"),
        as_of=_utc_naive(record["as_of"], "as_of"),
        model_version=_column_text(record["model_version"], "model_version", _ID_LENGTH),
        probability=probability,
        mql=_optional_bool(record.get("mql"), "mql"),
        tier=_optional_text(record.get("tier"), "tier", _TIER_LENGTH),
        threshold=_optional_float(record.get("threshold"), "threshold"),
        rule_score=_optional_float(record.get("rule_score"), "rule_score"),
        rule_mql=_optional_bool(record.get("rule_mql"), "rule_mql"),
        features=_features_json(record.get("features")),
    )


def answer_rows(
    answers: Sequence[Mapping[str, Any]], scored_at: datetime, model_version: str
) -> list[PredictionRow | Mapping[str, object]]:
    """The rows of the scoring kernel's own answers (`ScoredBatch.records` with the monitored
    features), built without `prediction_row`'s checks: a 1,000-lead batch costs a few
    milliseconds instead of tens. Feature JSON as `prediction_row` writes it, minus spaces.

    An answer whose text cannot be stored (a lead_id holding a NUL, say) is passed on as a
    record instead, for the writer to refuse with the reason and count, alone."""
    stamp = _utc_naive(scored_at, "scored_at")
    moments: dict[object, datetime] = {}  # most answers of a request share one as_of
    ordered: dict[tuple[str, ...], list[str]] = {}
    version_storable = _storable(model_version, _ID_LENGTH)
    rows: list[PredictionRow | Mapping[str, object]] = []
    for answer in answers:
        lead_id, tier = str(answer["lead_id"]), str(answer["tier"])
        if not (
            version_storable and _storable(lead_id, _ID_LENGTH) and _storable(tier, _TIER_LENGTH)
        ):
            rows.append({**answer, "scored_at": scored_at, "model_version": model_version})
            continue
        as_of = answer["as_of"]
        if as_of not in moments:
            moments[as_of] = _utc_naive(as_of, "as_of")
        features = answer.get("features")
        if features is None:
            text = None
        else:
            names = tuple(features)
            if names not in ordered:
                ordered[names] = sorted(names)
            # The kernel's feature values are numbers, never personal text (`_features_json`
            # keeps such numbers too); NaN is written as null, as `_plain` does.
            text = pydantic_core.to_json(
                {name: features[name] for name in ordered[names]}, inf_nan_mode="null"
            ).decode()
        rows.append(
            PredictionRow(
                lead_id,
                stamp,
                moments[as_of],
                model_version,
                float(answer["probability"]),
                bool(answer["mql"]),
                tier,
                float(answer["threshold"]),
                float(answer["rule_score"]),
                bool(answer["rule_mql"]),
                text,
            )
        )
    return rows


def outcome_row(record: Mapping[str, object], recorded_at: datetime) -> dict[str, Any]:
    """One outcome as a row of `leadscore_outcomes`; `recorded_at` defaults to the given time."""
    if _missing(record.get("lead_id")):
        raise InvalidRecord("outcome without lead_id")
    outcome = _plain(record.get("outcome"))
    if outcome not in (0, 1):  # True and False pass as 1 and 0
        raise InvalidRecord(f"outcome must be 1 (won) or 0 (lost), got {outcome!r}")
    if _missing(record.get("closed_at")):
        raise InvalidRecord("outcome without closed_at")
    stamp = record.get("recorded_at")
    return {
        "lead_id": _column_text(_plain(record["lead_id"]), "lead_id", _ID_LENGTH),
        "outcome": 1 if outcome == 1 else 0,
        "closed_at": _utc_naive(record["closed_at"], "closed_at"),
        "recorded_at": recorded_at if _missing(stamp) else _utc_naive(stamp, "recorded_at"),
    }


# --- the store ---------------------------------------------------------------------------------


def _is_memory_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _sqlite_pragmas(busy_timeout_ms: int) -> tuple[str, ...]:
    """Every connection to a SQLite store. WAL: readers and the one writer do not block each
    other; NORMAL sync is safe in WAL (a power cut may lose the last batches, never corrupt the
    file)."""
    return (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        f"PRAGMA busy_timeout={busy_timeout_ms}",
    )


def _engine(url: str, busy_timeout_ms: int = _BUSY_TIMEOUT_MS) -> Engine:
    parsed = make_url(url)
    if _is_memory_sqlite(parsed):
        # One shared connection, else the writer thread would see its own, empty database.
        return sa.create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    engine = sa.create_engine(parsed)
    if parsed.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _set_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            for pragma in _sqlite_pragmas(busy_timeout_ms):
                cursor.execute(pragma)
            cursor.close()

    return engine


_SQLITE_ROW = f"({', '.join('?' * len(PredictionRow._fields))})"
_SQLITE_INSERT = f"INSERT INTO {PREDICTIONS_TABLE} ({', '.join(PredictionRow._fields)}) VALUES "
# Rows per statement: 11 parameters each, under SQLite's 32,766 parameters per statement.
_SQLITE_ROWS_PER_INSERT = 2_000


def _insert_predictions(connection: sa.Connection, rows: Sequence[PredictionRow]) -> None:
    """One insert of many rows. On SQLite straight through the driver, one statement of many
    rows: SQLAlchemy's per-row parameter processing costs more than SQLite's own insert, and
    the driver lets other threads run during each statement it executes, so the writer would
    wait for the request thread's turn once per row."""
    if connection.dialect.name != "sqlite":
        connection.execute(predictions_table.insert(), [row._asdict() for row in rows])
        return
    for statement, values in _sqlite_inserts(rows):
        connection.exec_driver_sql(statement, values)


def _sqlite_inserts(rows: Sequence[PredictionRow]) -> Iterator[tuple[str, tuple[object, ...]]]:
    """The rows as SQLite statements of many rows each, with their parameters."""
    texts: dict[datetime, str] = {}
    for row in rows:
        for moment in (row.scored_at, row.as_of):
            if moment not in texts:
                # SQLAlchemy's own text of a SQLite DATETIME ("%Y-%m-%d %H:%M:%S.%f" for these
                # naive times, a third of strftime's cost), so rows written by either path
                # compare and read back alike.
                texts[moment] = moment.isoformat(sep=" ", timespec="microseconds")
    for chunk in _chunks(rows, _SQLITE_ROWS_PER_INSERT):
        values = [
            value
            for row in chunk
            for value in (row[0], texts[row.scored_at], texts[row.as_of], *row[3:])
        ]
        yield _SQLITE_INSERT + ", ".join([_SQLITE_ROW] * len(chunk)), tuple(values)


class _FileConnections:
    """Plain `sqlite3` connections to a SQLite file, one per thread that records: `record`
    commits on the request path, where an SQLAlchemy transaction (pool check-out, events,
    reset on return) costs more than SQLite's own insert and commit."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._mine = threading.local()
        self._lock = threading.Lock()
        self._open: set[sqlite3.Connection] = set()

    def insert(self, rows: Sequence[PredictionRow]) -> None:
        """Insert rows in one transaction; raises what SQLite raises (the connection is then
        dropped: the next call opens a new one)."""
        connection = self._connection()
        try:
            with connection:  # commits, or rolls back on an error
                for statement, values in _sqlite_inserts(rows):
                    connection.execute(statement, values)
        except Exception:
            self._drop(connection)
            raise

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._mine, "connection", None)
        if connection is None:
            # Used by this thread only; closed by `close` from another.
            connection = sqlite3.connect(self._path, check_same_thread=False)
            try:
                for pragma in _sqlite_pragmas(self._busy_timeout_ms):
                    connection.execute(pragma)
            except Exception:
                connection.close()
                raise
            self._mine.connection = connection
            with self._lock:
                self._open.add(connection)
        return connection

    def _drop(self, connection: sqlite3.Connection) -> None:
        self._mine.connection = None
        with self._lock:
            self._open.discard(connection)
        with contextlib.suppress(sqlite3.Error):
            connection.close()

    def close(self) -> None:
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_Insert = Callable[[Sequence[PredictionRow]], None]


class PredictionsNotRecorded(RuntimeError):
    """Predictions that could be neither stored nor spilled: their answers must not be sent."""


class _Appended(NamedTuple):
    """Records of one `append` call and the ticket that says when they are durable."""

    records: Sequence[Mapping[str, object] | PredictionRow]
    ticket: Future[None]


def _spill_line(row: PredictionRow) -> bytes:
    return pydantic_core.to_json(list(row)) + b"\n"


def _unspilled(line: bytes) -> PredictionRow:
    values = json.loads(line)
    if not isinstance(values, list) or len(values) != len(PredictionRow._fields):
        raise ValueError("not a spilled prediction row")
    values[1] = datetime.fromisoformat(values[1])
    values[2] = datetime.fromisoformat(values[2])
    return PredictionRow(*values)


class PredictionLog:
    """Predictions made durable before they are answered; outcomes written directly.

    The guarantee: a row is durable once it is committed to the store or, while the store
    fails, appended to a spill file in `spill_dir` (flushed to the operating system, so it
    survives the process being killed; not fsynced, so not a power cut). Two ways in:

    - `record(rows)` makes them durable in the calling thread and raises
      `PredictionsNotRecorded` when neither the store nor the spill file takes them. The API
      calls it once per round of requests scored together, before answering any of them, when
      the store is a SQLite file (`local`): the round shares one commit (group commit), and an
      answered prediction is never lost when the process dies; when it raises, the API answers
      503 instead.
    - `append(records)` queues them for the background writer and returns a ticket (a
      `concurrent.futures.Future`) that completes when they are durable, or fails with
      `PredictionsNotRecorded` (also when they do not fit in the queue). The writer commits
      everything queued at once (up to `batch_size` records); `flush_seconds` makes it wait for
      a batch to fill (0, the default, never waits). The API waits for such a ticket when the
      store is across the network: a store that hangs then holds answers, not the event loop.

    A failing store: the rows go to the spill file, `degraded` turns true, and the store is
    tried again after a backoff (0.5 s doubling to 30 s; rows meanwhile go straight to the
    spill). Once the store takes rows again, the background writer replays the spill files in
    `spill_dir` (this process's and any left by a process that died) into it, a chunk at a time
    between new batches, and deletes them. A process that dies while replaying leaves its file
    to be replayed again: rows can then be stored twice, never lost. Each spill file is locked
    (flock) by the process writing or replaying it, so workers sharing `spill_dir` never replay
    the same file. Without a `spill_dir` there is no spill: rows the store refuses fail.

    Counts: `written` (stored on first try), `spilled`, `replayed`, `failed` (invalid records,
    rows neither stored nor spilled, unreadable spill lines), `dropped` (queue full or closed).
    `on_rows(outcome, count)` is called with each addition (for Prometheus counters). Call
    `close()` on shutdown. Without `start()`, nothing is written until `flush()` or `close()`,
    which then write in the calling thread.
    """

    def __init__(
        self,
        url: str,
        *,
        spill_dir: Path | None = None,
        batch_size: int = 2_000,
        flush_seconds: float = 0.0,
        max_queue: int = 100_000,
        on_rows: Callable[[str, int], None] | None = None,
    ) -> None:
        if batch_size < 1 or max_queue < 1 or flush_seconds < 0:
            raise ValueError("batch_size and max_queue must be >= 1, flush_seconds >= 0")
        self.url = url
        self.spill_dir = spill_dir
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.written = 0
        self.spilled = 0
        self.replayed = 0
        self.failed = 0
        self.dropped = 0
        self._on_rows = on_rows
        parsed = make_url(url)
        in_memory = _is_memory_sqlite(parsed)
        self._local = parsed.get_backend_name() == "sqlite"
        self._engine = _engine(url)
        # `record` waits less for a locked SQLite file: it has an answer to send.
        self._record_connections = (
            _FileConnections(parsed.database, _RECORD_BUSY_TIMEOUT_MS)
            if self._local and not in_memory and parsed.database and not parsed.query
            else None
        )
        # An in-memory SQLite database is one shared connection: use it one thread at a time.
        self._db_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if in_memory else contextlib.nullcontext()
        )
        self._pending: deque[_Appended] = deque()
        self._pending_rows = 0
        self._condition = threading.Condition()
        self._accepted = 0  # records ever queued
        self._processed = 0  # records taken off the queue and made durable or failed
        self._flush_requests = 0
        self._rethink = False  # the store's state changed under an idle writer
        self._stopping = False
        self._closed = False
        self._last_drop_warning = -math.inf
        self._thread: threading.Thread | None = None
        # The store's health and the spill file: shared by `record` callers and the writer.
        self._state = threading.RLock()
        self._store_failures = 0
        self._next_store_try = -math.inf
        self._store_error = ""
        self._spill: BinaryIO | None = None  # this process's spill file, while degraded
        self._replay: tuple[BinaryIO, Path] | None = None  # the spill file being replayed
        self._replay_due = spill_dir is not None and any(spill_dir.glob(_SPILL_GLOB))
        with self._db_lock:
            _metadata.create_all(self._engine)

    # -- writing predictions --

    @property
    def pending(self) -> int:
        """Records queued and not yet taken by the writer (for a queue-depth gauge)."""
        return self._pending_rows

    @property
    def local(self) -> bool:
        """A SQLite file: `record` suits an event loop (a round's commit takes a fraction of a
        millisecond, a lock is waited for 100 ms at most). A database across the network is
        better written through `append`, by the writer thread."""
        return self._local

    @property
    def degraded(self) -> str | None:
        """Why predictions are going to the spill file rather than the store; None when not."""
        return self._store_error if self._store_failures else None

    def start(self) -> None:
        """Start the background writer (once; later calls do nothing)."""
        with self._condition:
            if self._closed:
                raise RuntimeError("the prediction log is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="prediction-log-writer", daemon=True
            )
            self._thread.start()

    def append(self, records: Sequence[Mapping[str, object] | PredictionRow]) -> Future[None]:
        """Queue records (or rows already built, `answer_rows`) for writing; never blocks on the
        database. The ticket completes when they are durable (see the class). Records that do
        not all fit in the queue are dropped, all of them, and fail the ticket.

        Records are converted later, in the writer thread (keeping the request path cheap), so
        the caller must not change the dicts after handing them over.
        """
        ticket: Future[None] = Future()
        ticket.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it
        with self._condition:
            was_empty = not self._pending
            room = 0 if self._closed else self.max_queue - self._pending_rows
            lost = len(records) if len(records) > room else 0
            self.dropped += lost
            if not lost:
                self._pending.append(_Appended(records, ticket))
                self._pending_rows += len(records)
                self._accepted += len(records)
                # Wake the writer only when it has something new to do: the first records of a
                # batch or a full batch.
                if was_empty or self._pending_rows >= self.batch_size:
                    self._condition.notify_all()
        if lost:
            ticket.set_exception(
                PredictionsNotRecorded(
                    f"the prediction log is {'closed' if self._closed else 'full'}: "
                    f"{lost} predictions not recorded"
                )
            )
            self._count("dropped", lost)
            self._warn_dropped(lost)
        return ticket

    def _count(self, outcome: str, rows: int) -> None:
        if rows and self._on_rows is not None:
            self._on_rows(outcome, rows)

    def _warn_dropped(self, lost: int) -> None:
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_SECONDS:
            self._last_drop_warning = now
            logger.warning(
                "prediction log %s: dropped %d records (%d in total)",
                "closed" if self._closed else "queue full",
                lost,
                self.dropped,
            )

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every record queued before this call is durable (or failed).

        Without a running writer thread, writes them in this thread. Logs a warning if `timeout`
        seconds pass first.
        """
        with self._condition:
            target = self._accepted
            running = self._thread is not None and self._thread.is_alive()
            if running:
                self._flush_requests += 1
                self._condition.notify_all()
                try:
                    done = self._condition.wait_for(
                        lambda: self._processed >= target, timeout=timeout
                    )
                finally:
                    self._flush_requests -= 1
                if not done:
                    logger.warning(
                        "prediction log: %d records still unwritten after %.1f s",
                        target - self._processed,
                        timeout,
                    )
                return
        self._write_queued()

    def close(self) -> None:
        """Write what is queued and stop the writer. Safe to call more than once. Rows still
        in a spill file stay there, to be replayed by the next process."""
        with self._condition:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._write_queued()  # if never started, or records came in very late
        for handle in (self._spill, self._replay[0] if self._replay else None):
            if handle is not None:
                handle.close()  # releases the lock: the file waits for the next replay
        self._spill = self._replay = None
        if self._record_connections is not None:
            self._record_connections.close()
        self._engine.dispose()
        logger.info(
            "prediction log closed: %d dropped, %d failed, %d written, %d spilled, %d replayed",
            self.dropped,
            self.failed,
            self.written,
            self.spilled,
            self.replayed,
        )

    def _write_queued(self) -> None:
        while (batch := self._take_batch(wait=False)) is not None:
            self._write(batch)

    def _run(self) -> None:
        while True:
            batch = self._take_batch(wait=True)
            if batch is not None:
                self._write(batch)
            elif self._stopping:
                return
            with self._state:
                if self._store_failures and self._spill is not None and self._store_due():
                    # Idle and backed off long enough: the store is tried by replaying the spill.
                    self._close_spill()
            # Between batches: a chunk of a spill file, when the store is taking rows again.
            if self._replay_due and self._store_due():
                self._replay_chunk()

    def _idle_seconds(self) -> float | None:
        """How long the writer may sleep with nothing queued: until the store's next try (with
        no batch coming, replaying the spill is the try), none while replaying, or for ever."""
        if self._store_failures and (self._spill is not None or self._replay_due):
            return max(0.0, self._next_store_try - time.monotonic())
        if self._replay_due:
            return 0.0
        return None

    def _take_batch(self, wait: bool) -> list[_Appended] | None:
        """The next batch; None when there is nothing to write now."""
        with self._condition:
            if wait:
                self._condition.wait_for(
                    lambda: bool(self._pending) or self._stopping or self._rethink,
                    timeout=self._idle_seconds(),
                )
                self._rethink = False
                if self._pending_rows < self.batch_size and self.flush_seconds > 0:
                    self._condition.wait_for(
                        lambda: (
                            self._pending_rows >= self.batch_size
                            or self._stopping
                            or self._flush_requests > 0
                        ),
                        timeout=self.flush_seconds,
                    )
            if not self._pending:
                return None
            batch: list[_Appended] = []
            rows = 0
            while self._pending and (
                not batch or rows + len(self._pending[0].records) <= self.batch_size
            ):
                appended = self._pending.popleft()
                batch.append(appended)
                rows += len(appended.records)
            self._pending_rows -= rows
            return batch

    def _write(self, batch: list[_Appended]) -> None:
        """Make one batch durable (store, else spill) and complete its tickets."""
        rows = self._storable([record for appended in batch for record in appended.records])
        outcome = self._make_durable(rows, self._insert_with_engine) if rows else "written"
        with self._condition:
            self._processed += sum(len(appended.records) for appended in batch)
            self._condition.notify_all()
        failure = self._not_recorded() if outcome == "failed" else None
        for appended in batch:
            if failure is None:
                appended.ticket.set_result(None)
            else:
                appended.ticket.set_exception(failure)

    def _storable(
        self, records: Sequence[Mapping[str, object] | PredictionRow]
    ) -> list[PredictionRow]:
        """The records as rows; those that cannot be stored (missing field, naive time, text a
        database refuses) are logged and counted as failed."""
        rows: list[PredictionRow] = []
        errors: list[str] = []
        for record in records:
            if isinstance(record, PredictionRow):
                rows.append(record)
                continue
            try:
                rows.append(prediction_row(record))
            except (InvalidRecord, TypeError, ValueError) as error:
                errors.append(str(error))
        if errors:  # one line per batch, not per record: a buggy caller would flood the log
            logger.warning("prediction log: %d records not stored, e.g. %s", len(errors), errors[0])
            with self._condition:
                self.failed += len(errors)
            self._count("failed", len(errors))
        return rows

    def record(self, records: Sequence[Mapping[str, object] | PredictionRow]) -> None:
        """Make rows durable now, in the calling thread: one commit to the store, or the spill
        file while the store fails; `PredictionsNotRecorded` when neither takes them. Records
        that cannot be stored at all are counted as failed (the API lets none through).

        The API calls this once per round of scored requests, before answering them: concurrent
        requests share a commit, and no other thread has to be woken and waited for (on a busy
        event loop, each hand-over of the interpreter between threads costs milliseconds). A
        locked SQLite file is waited for 100 ms at most; replays and retries stay in the
        background writer."""
        rows = self._storable(records)
        connections = self._record_connections
        insert = self._insert_with_engine if connections is None else connections.insert
        if rows and self._make_durable(rows, insert) == "failed":
            raise self._not_recorded()

    def _not_recorded(self) -> PredictionsNotRecorded:
        return PredictionsNotRecorded(
            f"predictions cannot be recorded: the store fails ({self._store_error}) and so does "
            "the spill file"
        )

    def _make_durable(self, rows: Sequence[PredictionRow], insert: _Insert) -> str:
        """Store rows (when the store is not backing off), else spill them; counted. What
        became of them: "written", "spilled" or "failed"."""
        if self._store_due() and self._insert(rows, insert):
            outcome = "written"
        else:
            outcome = "spilled" if self._spill_rows(rows) else "failed"
        with self._condition:
            if outcome == "written":
                self.written += len(rows)
            elif outcome == "spilled":
                self.spilled += len(rows)
            else:
                self.failed += len(rows)
        self._count(outcome, len(rows))
        return outcome

    def _store_due(self) -> bool:
        """The store is healthy, or failing and backed off long enough to be tried again."""
        return not self._store_failures or time.monotonic() >= self._next_store_try

    def _insert_with_engine(self, rows: Sequence[PredictionRow]) -> None:
        with self._db_lock, self._engine.begin() as connection:
            _insert_predictions(connection, rows)

    def _insert(self, rows: Sequence[PredictionRow], insert: _Insert) -> bool:
        """Insert rows in one transaction (`insert`); False (and the backoff set) when the store
        fails."""
        try:
            insert(rows)
        except Exception as error:  # whatever the database says, the caller lives on
            self._store_failed(error)
            return False
        with self._state:
            if self._store_failures:
                logger.info("prediction log: the store takes rows again")
            self._store_failures = 0
            if self._spill is not None:  # the episode is over
                self._close_spill()
        if self._replay_due:
            self._wake_writer()  # to replay
        return True

    def _close_spill(self) -> None:
        """Close this process's spill file (its lock goes): the writer replays it next."""
        assert self._spill is not None
        self._spill.close()
        self._spill = None
        self._replay_due = True

    def _wake_writer(self) -> None:
        """Make the writer look again at what to do when idle (retry, replay)."""
        with self._condition:
            self._rethink = True
            self._condition.notify_all()

    def _store_failed(self, error: Exception) -> None:
        with self._state:
            self._store_failures += 1
            self._store_error = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            backoff = min(
                _FIRST_BACKOFF_SECONDS * 2 ** (self._store_failures - 1), _MAX_BACKOFF_SECONDS
            )
            self._next_store_try = time.monotonic() + backoff
            log = logger.warning if self._store_failures == 1 else logger.debug
            log(
                "prediction log: the store fails (%s); spilling to %s, next try in %.1f s",
                self._store_error,
                self.spill_dir,
                backoff,
            )
        self._wake_writer()  # to retry after the backoff

    def _spill_rows(self, rows: Sequence[PredictionRow]) -> bool:
        """Append rows to this process's spill file; False when there is none or it fails."""
        if self.spill_dir is None:
            return False
        try:
            with self._state:
                if self._spill is None:
                    self.spill_dir.mkdir(parents=True, exist_ok=True)
                    name = f"spill-{os.getpid()}-{time.time_ns()}.jsonl"
                    handle = open(self.spill_dir / name, "ab")  # noqa: SIM115 (kept open)
                    fcntl.flock(handle, fcntl.LOCK_EX)
                    self._spill = handle
                self._spill.write(b"".join(_spill_line(row) for row in rows))
                self._spill.flush()  # to the operating system: survives the process's death
        except OSError:
            logger.exception("prediction log: could not spill %d rows", len(rows))
            return False
        return True

    def _next_spill_file(self) -> tuple[BinaryIO, Path] | None:
        """A spill file nobody else is writing or replaying, locked; None when none is left."""
        assert self.spill_dir is not None
        for path in sorted(self.spill_dir.glob(_SPILL_GLOB)):
            try:
                handle = open(path, "rb")  # noqa: SIM115 (kept open while replayed)
            except FileNotFoundError:  # replayed and deleted by another process meanwhile
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # being written or replayed by a live process
                handle.close()
                continue
            if os.fstat(handle.fileno()).st_nlink == 0:  # deleted by its replayer meanwhile
                handle.close()
                continue
            return handle, path
        return None

    def _replay_chunk(self) -> None:
        """Replay up to `_REPLAY_CHUNK` rows of a spill file into the store; delete the file
        once it is all stored."""
        if self.spill_dir is None:
            self._replay_due = False
            return
        if self._replay is None:
            self._replay = self._next_spill_file()
            if self._replay is None:
                self._replay_due = False
                return
        handle, path = self._replay
        start = handle.tell()
        rows: list[PredictionRow] = []
        unreadable = 0
        for line in handle:
            try:
                rows.append(_unspilled(line))
            except (ValueError, TypeError):  # a line cut short when its writer died
                unreadable += 1
            if len(rows) >= _REPLAY_CHUNK:
                break
        if rows and not self._insert(rows, self._insert_with_engine):
            handle.seek(start)  # the same rows again on the next try
            return
        if unreadable:
            logger.warning("prediction log: %d unreadable lines in %s", unreadable, path.name)
        with self._condition:
            self.replayed += len(rows)
            self.failed += unreadable
        self._count("replayed", len(rows))
        self._count("failed", unreadable)
        if len(rows) < _REPLAY_CHUNK:  # the end of the file
            path.unlink(missing_ok=True)
            handle.close()
            self._replay = None
            logger.info("prediction log: replayed and deleted %s", path.name)

    # -- outcomes --

    def record_outcomes(self, outcomes: list[dict[str, object]]) -> int:
        """Insert or replace each lead's outcome; returns the number of rows written.

        All or nothing: one invalid record (outcome not 1/0, naive time, no closed_at) raises
        `InvalidRecord` before anything is written. Within one call, the last outcome given for a
        lead wins. `recorded_at` defaults to now.
        """
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = list(
            {row["lead_id"]: row for row in (outcome_row(o, now) for o in outcomes)}.values()
        )
        if not rows:
            return 0
        dialect = self._engine.dialect.name
        with self._db_lock, self._engine.begin() as connection:
            if dialect in ("sqlite", "postgresql"):
                insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
                for chunk in _chunks(rows, _CHUNK):
                    statement = insert(outcomes_table)
                    statement = statement.on_conflict_do_update(
                        index_elements=[outcomes_table.c.lead_id],
                        set_={
                            name: statement.excluded[name]
                            for name in ("outcome", "closed_at", "recorded_at")
                        },
                    )
                    connection.execute(statement, list(chunk))
            else:  # portable fallback: replace inside one transaction
                for chunk in _chunks(rows, _CHUNK):
                    ids = [row["lead_id"] for row in chunk]
                    connection.execute(
                        outcomes_table.delete().where(outcomes_table.c.lead_id.in_(ids))
                    )
                    connection.execute(outcomes_table.insert(), list(chunk))
        return len(rows)

    # -- reading --

    def read_predictions(self, since: datetime | None = None) -> pd.DataFrame:
        """Logged predictions (scored_at >= `since` if given), oldest first; PREDICTION_FIELDS.

        lead_id as text, scored_at and as_of as UTC timestamps, mql and rule_mql as nullable
        booleans, features as JSON text (`models.reports.monitoring.expand_features` makes columns).
        """
        query = sa.select(*(predictions_table.c[name] for name in PREDICTION_FIELDS)).order_by(
            predictions_table.c.scored_at, predictions_table.c.id
        )
        if since is not None:
            query = query.where(predictions_table.c.scored_at >= _utc_naive(since, "since"))
        with self._db_lock, self._engine.connect() as connection:
            rows = connection.execute(query).all()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in PREDICTION_FIELDS]
        data = dict(zip(PREDICTION_FIELDS, columns, strict=True))
        return pd.DataFrame(
            {
                "lead_id": pd.Series(data["lead_id"], dtype="str"),
                "scored_at": _utc_column(data["scored_at"]),
                "as_of": _utc_column(data["as_of"]),
                "model_version": pd.Series(data["model_version"], dtype="str"),
                "probability": pd.Series(data["probability"], dtype="float64"),
                "mql": pd.Series(data["mql"], dtype="boolean"),
                "tier": pd.Series(data["tier"], dtype="str"),
                "threshold": pd.Series(data["threshold"], dtype="float64"),
                "rule_score": pd.Series(data["rule_score"], dtype="float64"),
                "rule_mql": pd.Series(data["rule_mql"], dtype="boolean"),
                "features": pd.Series(data["features"], dtype="str"),
            },
            columns=list(PREDICTION_FIELDS),
        )

    def read_outcomes(self) -> pd.DataFrame:
        """One row per lead: lead_id (text), outcome (int8 1/0), closed_at, recorded_at (UTC)."""
        query = sa.select(*(outcomes_table.c[name] for name in OUTCOME_FIELDS)).order_by(
            outcomes_table.c.lead_id
        )
        with self._db_lock, self._engine.connect() as connection:
            rows = connection.execute(query).all()
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in OUTCOME_FIELDS]
        data = dict(zip(OUTCOME_FIELDS, columns, strict=True))
        return pd.DataFrame(
            {
                "lead_id": pd.Series(data["lead_id"], dtype="str"),
                "outcome": pd.Series(data["outcome"], dtype="int8"),
                "closed_at": _utc_column(data["closed_at"]),
                "recorded_at": _utc_column(data["recorded_at"]),
            },
            columns=list(OUTCOME_FIELDS),
        )


def _utc_column(values: Sequence[object]) -> pd.Series:
    """Naive UTC datetimes from the database as a timezone-aware UTC column (ns)."""
    return pd.Series(pd.Series(list(values), dtype="datetime64[ns]").dt.tz_localize("UTC"))


__all__ = [
    "OUTCOME_FIELDS",
    "PREDICTION_FIELDS",
    "InvalidRecord",
    "PredictionLog",
    "PredictionRow",
    "PredictionsNotRecorded",
    "answer_rows",
    "outcome_row",
    "prediction_row",
]
