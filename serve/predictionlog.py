"""The prediction log: every answer of /predict, written off the request path, and outcomes.

The API hands records to `PredictionLog.append`, which only puts them on an in-memory queue; a
background thread writes them in batches. If the queue is full the records are dropped and
counted, never waited for: a slow disk must not slow the API. Outcomes posted back (won/lost) are
written synchronously by `record_outcomes`. `leadscore monitor` reads both back as DataFrames
(see `models.reports.monitoring`).

Storage is any SQLAlchemy URL (SQLAlchemy Core, no ORM); the app's default is
`sqlite:///predictions.db` in the working directory. SQLite runs in WAL mode so the API's writer
and a reading `leadscore monitor` do not block each other. Two tables, created if missing:

- `leadscore_predictions`: id, lead_id, scored_at, as_of, model_version, probability, mql, tier,
  threshold, rule_score, rule_mql, features (JSON text);
- `leadscore_outcomes`: lead_id (primary key: a later outcome replaces the earlier one), outcome
  (1 won / 0 lost), closed_at, recorded_at.

No personal data: only the PREDICTION_FIELDS of a record are kept (any other key, such as an
email address, is ignored), and `features` keeps only the scalar feature values the caller chose,
minus any key that looks like contact data. Lead ids are stored as text. Times are UTC: stored as
naive UTC timestamps (portable across databases, microsecond precision) and returned as
timezone-aware UTC pandas columns; naive times are refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

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
_BUSY_TIMEOUT_MS = 5_000

# MySQL's DATETIME drops fractions of a second and its FLOAT is single precision.
_Time = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
_metadata = sa.MetaData()
predictions_table = sa.Table(
    PREDICTIONS_TABLE,
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(255), nullable=False, index=True),
    sa.Column("scored_at", _Time, nullable=False, index=True),
    sa.Column("as_of", _Time, nullable=False),
    sa.Column("model_version", sa.String(255), nullable=False),
    sa.Column("probability", sa.Double, nullable=False),
    sa.Column("mql", sa.Boolean, nullable=True),
    sa.Column("tier", sa.String(32), nullable=True),
    sa.Column("threshold", sa.Double, nullable=True),
    sa.Column("rule_score", sa.Double, nullable=True),
    sa.Column("rule_mql", sa.Boolean, nullable=True),
    sa.Column("features", sa.Text, nullable=True),
)
outcomes_table = sa.Table(
    OUTCOMES_TABLE,
    _metadata,
    sa.Column("lead_id", sa.String(255), primary_key=True),
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


def _optional_text(value: object) -> str | None:
    value = _plain(value)
    return None if value is None else str(value)


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
        value = json.loads(value)
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
        lead_id=str(_plain(record["lead_id"])),
        scored_at=_utc_naive(record["scored_at"], "scored_at"),
        as_of=_utc_naive(record["as_of"], "as_of"),
        model_version=str(record["model_version"]),
        probability=probability,
        mql=_optional_bool(record.get("mql"), "mql"),
        tier=_optional_text(record.get("tier")),
        threshold=_optional_float(record.get("threshold"), "threshold"),
        rule_score=_optional_float(record.get("rule_score"), "rule_score"),
        rule_mql=_optional_bool(record.get("rule_mql"), "rule_mql"),
        features=_features_json(record.get("features")),
    )


def answer_rows(
    answers: Sequence[Mapping[str, Any]], scored_at: datetime, model_version: str
) -> list[PredictionRow]:
    """The rows of the scoring kernel's own answers (`ScoredBatch.records` with the monitored
    features), built without `prediction_row`'s checks: a 1,000-lead batch costs a few
    milliseconds instead of tens. Feature JSON as `prediction_row` writes it, minus spaces."""
    stamp = _utc_naive(scored_at, "scored_at")
    moments: dict[object, datetime] = {}  # most answers of a request share one as_of
    ordered: dict[tuple[str, ...], list[str]] = {}
    rows = []
    for answer in answers:
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
                str(answer["lead_id"]),
                stamp,
                moments[as_of],
                model_version,
                float(answer["probability"]),
                bool(answer["mql"]),
                str(answer["tier"]),
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
        "lead_id": str(_plain(record["lead_id"])),
        "outcome": 1 if outcome == 1 else 0,
        "closed_at": _utc_naive(record["closed_at"], "closed_at"),
        "recorded_at": recorded_at if _missing(stamp) else _utc_naive(stamp, "recorded_at"),
    }


# --- the store ---------------------------------------------------------------------------------


def _is_memory_sqlite(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if _is_memory_sqlite(parsed):
        # One shared connection, else the writer thread would see its own, empty database.
        return sa.create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    engine = sa.create_engine(parsed)
    if parsed.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            # WAL: readers and the one writer do not block each other; NORMAL sync is safe in WAL
            # (a power cut may lose the last batches, never corrupt the file).
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            cursor.close()

    return engine


# SQLAlchemy's own text form of a SQLite DATETIME, so rows written by either path compare and
# read back alike.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
_SQLITE_INSERT = (
    f"INSERT INTO {PREDICTIONS_TABLE} ({', '.join(PredictionRow._fields)}) "
    f"VALUES ({', '.join('?' * len(PredictionRow._fields))})"
)


def _insert_predictions(connection: sa.Connection, rows: Sequence[PredictionRow]) -> None:
    """One insert of many rows. On SQLite straight through the driver: SQLAlchemy's per-row
    parameter processing costs more than SQLite's own insert."""
    if connection.dialect.name != "sqlite":
        connection.execute(predictions_table.insert(), [row._asdict() for row in rows])
        return
    texts: dict[datetime, str] = {}
    for row in rows:
        for moment in (row.scored_at, row.as_of):
            if moment not in texts:
                texts[moment] = moment.strftime(_SQLITE_TIME)
    connection.exec_driver_sql(
        _SQLITE_INSERT,
        [(row[0], texts[row.scored_at], texts[row.as_of], *row[3:]) for row in rows],
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class PredictionLog:
    """Prediction records written in batches by a background thread; outcomes written directly.

    `append` never blocks on the database: records go to a bounded queue (`max_queue` records)
    and, when it is full, are dropped and counted in `dropped`. The writer takes up to
    `batch_size` records at a time and waits at most `flush_seconds` for a batch to fill.
    Records that cannot be stored (missing field, naive time) and batches the database refused
    are logged and counted in `failed`; `written` counts rows stored. Call `close()` on shutdown
    (the thread is a daemon, so records still queued at exit without `close()` are lost).
    Without `start()`, nothing is written until `flush()` or `close()`, which then write in the
    calling thread.
    """

    def __init__(
        self,
        url: str,
        *,
        batch_size: int = 500,
        flush_seconds: float = 0.2,
        max_queue: int = 100_000,
    ) -> None:
        if batch_size < 1 or max_queue < 1 or flush_seconds < 0:
            raise ValueError("batch_size and max_queue must be >= 1, flush_seconds >= 0")
        self.url = url
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._engine = _engine(url)
        # An in-memory SQLite database is one shared connection: use it one thread at a time.
        self._db_lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if _is_memory_sqlite(make_url(url)) else contextlib.nullcontext()
        )
        self._pending: deque[Mapping[str, object] | PredictionRow] = deque()
        self._condition = threading.Condition()
        self._accepted = 0  # records ever queued
        self._processed = 0  # records taken off the queue and written or failed
        self._flush_requests = 0
        self._stopping = False
        self._closed = False
        self._last_drop_warning = -math.inf
        self._thread: threading.Thread | None = None
        with self._db_lock:
            _metadata.create_all(self._engine)

    # -- writing predictions --

    @property
    def pending(self) -> int:
        """Records queued and not yet taken by the writer (for a queue-depth gauge)."""
        return len(self._pending)

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

    def append(self, records: Sequence[Mapping[str, object] | PredictionRow]) -> None:
        """Queue records (or rows already built, `answer_rows`) for writing; never blocks on the
        database. Drops what does not fit.

        Records are converted later, in the writer thread (keeping the request path cheap), so
        the caller must not change the dicts after handing them over.
        """
        with self._condition:
            was_empty = not self._pending
            room = 0 if self._closed else self.max_queue - len(self._pending)
            accepted = records if len(records) <= room else records[: max(room, 0)]
            self._pending.extend(accepted)
            self._accepted += len(accepted)
            lost = len(records) - len(accepted)
            self.dropped += lost
            # Wake the writer only when it has something new to do: the first record of a batch
            # (it then waits up to flush_seconds for more) or a full batch.
            if accepted and (was_empty or len(self._pending) >= self.batch_size):
                self._condition.notify_all()
        if lost:
            self._warn_dropped(lost)

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
        """Wait until every record queued before this call is written (or failed).

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
        while self._write_next(wait=False):
            pass

    def close(self) -> None:
        """Write what is queued and stop the writer. Safe to call more than once."""
        with self._condition:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        while self._write_next(wait=False):  # if never started, or records came in very late
            pass
        self._engine.dispose()
        logger.info(
            "prediction log closed: %d written, %d dropped, %d failed",
            self.written,
            self.dropped,
            self.failed,
        )

    def _run(self) -> None:
        while self._write_next(wait=True):
            pass

    def _take_batch(self, wait: bool) -> list[Mapping[str, object] | PredictionRow] | None:
        """The next batch; None when there is nothing more (stopping, or not waiting)."""
        with self._condition:
            if wait:
                self._condition.wait_for(lambda: bool(self._pending) or self._stopping)
                if len(self._pending) < self.batch_size and not self._stopping:
                    # Let a batch fill for a moment: one insert of many rows beats many inserts.
                    self._condition.wait_for(
                        lambda: (
                            len(self._pending) >= self.batch_size
                            or self._stopping
                            or self._flush_requests > 0
                        ),
                        timeout=self.flush_seconds,
                    )
            if not self._pending:
                return None
            count = min(self.batch_size, len(self._pending))
            return [self._pending.popleft() for _ in range(count)]

    def _write_next(self, wait: bool) -> bool:
        """Write one batch; False when there was nothing to write."""
        batch = self._take_batch(wait)
        if batch is None:
            return False
        rows: list[PredictionRow] = []
        errors: list[str] = []
        for record in batch:
            if isinstance(record, PredictionRow):
                rows.append(record)
                continue
            try:
                rows.append(prediction_row(record))
            except (InvalidRecord, TypeError, ValueError) as error:
                errors.append(str(error))
        if errors:  # one line per batch, not per record: a buggy caller would flood the log
            logger.warning("prediction log: %d records not stored, e.g. %s", len(errors), errors[0])
        written = 0
        if rows:
            try:
                with self._db_lock, self._engine.begin() as connection:
                    _insert_predictions(connection, rows)
                written = len(rows)
            except Exception:  # whatever the database says, the writer thread must live on
                logger.exception("prediction log: could not write %d records", len(rows))
        with self._condition:
            self.written += written
            self.failed += len(batch) - written
            self._processed += len(batch)
            self._condition.notify_all()
        return True

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
    "answer_rows",
    "outcome_row",
    "prediction_row",
]
