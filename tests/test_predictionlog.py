"""The prediction log on real databases, each test on a SQLite file and on a PostgreSQL server
(`tests/postgres.py`; skipped with the reason when there is none): threads, batching, dropping,
outcomes, concurrent reads, and text that cannot be stored as given (NUL, too long)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from models.reports.monitoring import outcome_report
from serve.predictionlog import (
    PREDICTION_FIELDS,
    InvalidRecord,
    PredictionLog,
    answer_rows,
    prediction_row,
)

T0 = datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def record(i: int, **changes: object) -> dict[str, object]:
    """A prediction record like the API's, with a personal field the log must ignore."""
    values: dict[str, object] = {
        "lead_id": 10_000 + i,
        "scored_at": T0 + timedelta(seconds=i),
        "as_of": T0 + timedelta(seconds=i) - timedelta(hours=1),
        "model_version": "7",
        "probability": (i % 100) / 100,
        "mql": i % 3 == 0,
        "tier": "ABCD"[i % 4],
        "threshold": 0.3,
        "rule_score": float(i % 70),
        "rule_mql": i % 5 == 0,
        "features": {"pricing_page_view_count_7d": i % 4, "industry": "retail"},
        "email": "someone@example.com",
    }
    values.update(changes)
    return values


def store_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty store of `kind`: a SQLite file, in-memory SQLite or a PostgreSQL database."""
    if kind == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return {
        "sqlite": f"sqlite:///{tmp_path / 'predictions.db'}",
        "sqlite_memory": "sqlite://",
        "sqlite_pysqlite": f"sqlite+pysqlite:///{tmp_path / 'other.db'}",
    }[kind]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url(request.param, request, tmp_path)


@pytest.fixture
def log(url: str) -> Iterator[PredictionLog]:
    prediction_log = PredictionLog(url, batch_size=64, flush_seconds=0.02)
    yield prediction_log
    prediction_log.close()


def test_appends_from_many_threads_are_all_written(log: PredictionLog) -> None:
    log.start()
    threads, per_thread = 4, 250

    def api_worker(worker: int) -> None:
        for start in range(0, per_thread, 10):
            log.append([record(worker * per_thread + i) for i in range(start, start + 10)])

    workers = [threading.Thread(target=api_worker, args=(w,)) for w in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    log.flush()

    assert (log.written, log.dropped, log.failed) == (threads * per_thread, 0, 0)
    logged = log.read_predictions()
    assert list(logged.columns) == list(PREDICTION_FIELDS)
    assert len(logged) == threads * per_thread
    expected = pd.DataFrame([record(i) for i in range(threads * per_thread)])
    assert logged["lead_id"].tolist() == [str(v) for v in expected["lead_id"]]  # by scored_at
    assert logged["probability"].tolist() == expected["probability"].tolist()
    assert logged["tier"].tolist() == expected["tier"].tolist()
    assert logged["mql"].tolist() == expected["mql"].tolist()
    assert logged["rule_mql"].tolist() == expected["rule_mql"].tolist()
    assert logged["rule_score"].tolist() == expected["rule_score"].tolist()
    assert logged["scored_at"].tolist() == [pd.Timestamp(t) for t in expected["scored_at"]]


def test_values_round_trip_in_utc_without_personal_data(log: PredictionLog) -> None:
    berlin = timezone(timedelta(hours=1))
    log.append(
        [
            record(
                1,
                lead_id=np.int64(42),
                scored_at=pd.Timestamp("2025-03-01 10:30:15.123456", tz="Europe/Berlin"),
                as_of=datetime(2025, 3, 1, 10, 0, tzinfo=berlin),
                probability=np.float64(0.25),
                mql=np.bool_(True),
                rule_mql=None,
                threshold=None,
                features={
                    "visits": np.int64(3),
                    "decay": float("nan"),
                    "job_title": "CEO",
                    "email_open_count_30d": 2,
                    "contact_email": "jane@example.com",
                },
            )
        ]
    )
    log.flush()
    logged = log.read_predictions()
    assert logged["mql"].tolist() == [True] and logged["rule_mql"].tolist() == [pd.NA]
    row = logged.iloc[0]
    assert row["lead_id"] == "42"
    assert row["scored_at"] == pd.Timestamp("2025-03-01 09:30:15.123456", tz="UTC")
    assert str(row["scored_at"].tz) == "UTC"
    assert row["as_of"] == pd.Timestamp("2025-03-01 09:00", tz="UTC")
    assert row["probability"] == 0.25 and np.isnan(row["threshold"])
    # No job title, no address; a count of email opens is behaviour, not personal data.
    assert json.loads(row["features"]) == {"visits": 3, "decay": None, "email_open_count_30d": 2}
    engine = sa.create_engine(log.url)
    with engine.connect() as connection:
        stored = " ".join(
            map(str, connection.exec_driver_sql("SELECT * FROM leadscore_predictions"))
        )
    engine.dispose()
    assert "example.com" not in stored and "CEO" not in stored


@pytest.mark.parametrize("kind", ["sqlite", "sqlite_memory", "postgresql"])
def test_the_api_rows_read_back_as_the_checked_records_do(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`answer_rows` (the API's kernel answers) and `prediction_row` (any caller's records) are
    two ways in: both must store the same values."""
    answers = []
    for i in range(6):
        answer = record(i, features={"visits": float(i), "decay": float("nan"), "email_opens": 1.0})
        answer["as_of"] = pd.Timestamp(answer["as_of"])  # as `ScoredBatch.records` gives it
        answers.append(answer)
    scored_at = T0 + timedelta(minutes=5)
    log = PredictionLog(store_url(kind, request, tmp_path))
    log.append([{**a, "scored_at": scored_at, "lead_id": str(a["lead_id"])} for a in answers])
    log.append(answer_rows(answers, scored_at, "7"))
    log.flush()
    logged = log.read_predictions()  # by scored_at (all equal), then in order of writing
    log.close()
    assert (log.written, log.failed) == (12, 0)
    by_records, by_rows = (
        logged.iloc[:6].reset_index(drop=True),
        logged.iloc[6:].reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(
        by_rows.drop(columns="features"), by_records.drop(columns="features")
    )
    assert [json.loads(f) for f in by_rows["features"]] == [
        json.loads(f) for f in by_records["features"]
    ]
    assert json.loads(by_rows["features"][2]) == {"decay": None, "visits": 2.0, "email_opens": 1.0}


def test_append_never_blocks_a_full_queue_drops_and_counts(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    paused = PredictionLog(url, max_queue=1)  # not started: nothing takes records off the queue
    with caplog.at_level(logging.WARNING, logger="serve.predictionlog"):
        started = time.perf_counter()
        paused.append([record(0), record(1), record(2)])
        for i in range(1_000):
            paused.append([record(i)])
        elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    assert paused.dropped == 2 + 1_000 and paused.pending == 1
    assert sum("dropped" in message for message in caplog.messages) == 1  # rate-limited
    paused.flush()  # with no writer thread, flush writes here
    assert paused.written == 1
    assert paused.read_predictions()["lead_id"].tolist() == ["10000"]
    paused.close()


def test_invalid_records_are_counted_and_the_rest_of_the_batch_is_written(
    log: PredictionLog,
) -> None:
    log.start()
    naive = record(2, scored_at=datetime(2025, 3, 1, 9, 0))
    bad: list[dict[str, object]] = [
        {"lead_id": 5},
        naive,
        record(3, probability="high"),
        record(5, probability=1.5),
    ]
    log.append([record(1), *bad, record(4)])
    log.flush()
    assert (log.written, log.failed) == (2, 4)
    assert log.read_predictions()["lead_id"].tolist() == ["10001", "10004"]


def test_close_flushes_and_is_idempotent(url: str) -> None:
    prediction_log = PredictionLog(url, batch_size=1_000, flush_seconds=60.0)
    prediction_log.start()
    prediction_log.append([record(i) for i in range(10)])  # a batch that would wait a minute
    started = time.perf_counter()
    prediction_log.close()
    prediction_log.close()
    assert time.perf_counter() - started < 2.0
    assert prediction_log.written == 10
    prediction_log.append([record(99)])  # after close: dropped, not an error
    assert prediction_log.dropped == 1

    reader = PredictionLog(url)
    assert len(reader.read_predictions()) == 10
    reader.close()


def test_a_partial_batch_is_written_after_flush_seconds_without_flush(url: str) -> None:
    prediction_log = PredictionLog(url, batch_size=1_000, flush_seconds=0.02)
    prediction_log.start()
    time.sleep(0.05)  # the writer is now idle, waiting for records
    prediction_log.append([record(1)])
    deadline = time.monotonic() + 2.0
    while prediction_log.written < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert prediction_log.written == 1
    prediction_log.close()


def test_flush_waits_for_a_partial_batch_without_waiting_for_the_timer(url: str) -> None:
    prediction_log = PredictionLog(url, batch_size=1_000, flush_seconds=60.0)
    prediction_log.start()
    prediction_log.append([record(1)])
    started = time.perf_counter()
    prediction_log.flush(timeout=5.0)
    assert time.perf_counter() - started < 2.0
    assert prediction_log.written == 1
    prediction_log.close()


def test_reading_while_the_writer_runs(url: str, log: PredictionLog) -> None:
    if url.startswith("sqlite"):  # PostgreSQL readers never block its writer
        with log._engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    log.start()
    reader = PredictionLog(url)  # what `leadscore monitor` does, in its own process
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read_repeatedly() -> None:
        try:
            while not done.is_set():
                seen.append(len(reader.read_predictions()))
        except BaseException as error:
            errors.append(error)

    reading = threading.Thread(target=read_repeatedly)
    reading.start()
    for start in range(0, 2_000, 50):
        log.append([record(i) for i in range(start, start + 50)])
        time.sleep(0.002)
    log.flush()
    done.set()
    reading.join()
    reader.close()
    assert not errors
    assert len(seen) > 1 and seen == sorted(seen)
    assert len(log.read_predictions()) == 2_000


def test_read_predictions_since(log: PredictionLog) -> None:
    log.append([record(i) for i in range(10)])
    log.flush()
    since = T0 + timedelta(seconds=7)
    assert log.read_predictions(since)["lead_id"].tolist() == ["10007", "10008", "10009"]
    with pytest.raises(ValueError, match="timezone"):
        log.read_predictions(datetime(2025, 3, 1))


def test_outcomes_are_upserted(log: PredictionLog) -> None:
    closed = datetime(2025, 4, 1, tzinfo=UTC)
    assert log.record_outcomes([]) == 0
    written = log.record_outcomes(
        [
            {"lead_id": 1, "outcome": 0, "closed_at": closed},
            {"lead_id": 2, "outcome": 1, "closed_at": closed},
            {"lead_id": 1, "outcome": 1, "closed_at": closed},  # the last one given wins
        ]
    )
    assert written == 2
    later = closed + timedelta(days=3)
    assert log.record_outcomes([{"lead_id": "2", "outcome": 0, "closed_at": later}]) == 1

    outcomes = log.read_outcomes()
    assert list(outcomes.columns) == ["lead_id", "outcome", "closed_at", "recorded_at"]
    assert outcomes["lead_id"].tolist() == ["1", "2"]
    assert outcomes["outcome"].tolist() == [1, 0]
    assert outcomes["closed_at"].tolist() == [pd.Timestamp(closed), pd.Timestamp(later)]
    assert str(outcomes["recorded_at"].dt.tz) == "UTC"


def test_invalid_outcomes_write_nothing(log: PredictionLog) -> None:
    closed = datetime(2025, 4, 1, tzinfo=UTC)
    bad_outcomes: list[dict[str, object]] = [
        {"lead_id": 3, "outcome": "won", "closed_at": closed},
        {"lead_id": 3, "outcome": 1, "closed_at": datetime(2025, 4, 1)},  # naive
        {"lead_id": 3, "outcome": 1},
    ]
    for bad in bad_outcomes:
        with pytest.raises(InvalidRecord):
            log.record_outcomes([{"lead_id": 4, "outcome": 1, "closed_at": closed}, bad])
    assert len(log.read_outcomes()) == 0


@pytest.mark.parametrize("kind", ["sqlite_memory", "sqlite_pysqlite", "postgresql"])
def test_other_url_forms(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    prediction_log = PredictionLog(store_url(kind, request, tmp_path), flush_seconds=0.01)
    prediction_log.start()
    prediction_log.append([record(i) for i in range(20)])
    prediction_log.flush()
    assert len(prediction_log.read_predictions()) == 20
    closed = datetime(2025, 4, 1, tzinfo=UTC)
    assert prediction_log.record_outcomes([{"lead_id": 1, "outcome": 1, "closed_at": closed}]) == 1
    assert len(prediction_log.read_outcomes()) == 1
    prediction_log.close()


def test_empty_log_reads_typed_frames(log: PredictionLog) -> None:
    predictions, outcomes = log.read_predictions(), log.read_outcomes()
    assert len(predictions) == 0 and len(outcomes) == 0
    assert str(predictions["scored_at"].dtype) == "datetime64[ns, UTC]"
    assert str(outcomes["closed_at"].dtype) == "datetime64[ns, UTC]"


def test_log_feeds_the_outcome_report(log: PredictionLog) -> None:
    log.append([record(i) for i in range(8)])
    log.flush()
    log.record_outcomes(
        [
            {"lead_id": 10_000, "outcome": 1, "closed_at": T0 + timedelta(days=1)},
            {"lead_id": 10_001, "outcome": 0, "closed_at": T0 + timedelta(days=1)},
        ]
    )
    report = outcome_report(
        log.read_predictions(),
        log.read_outcomes(),
        horizon_days=30,
        now=pd.Timestamp(T0 + timedelta(days=2)),
    )
    summary = report["summary"].iloc[0]
    assert (summary["resolved"], summary["converted"], summary["pending"]) == (2, 1, 6)


# --- text that cannot be stored as given: refused alike on every database --------------------

UNSTORABLE = {
    "lead_id holds NUL": ("lead_id", "lead\x00one"),
    "lead_id too long": ("lead_id", "x" * 256),
    "lead_id far too long": ("lead_id", "x" * 100_000),
    "model_version holds NUL": ("model_version", "v\x007"),
    "model_version too long": ("model_version", "7" * 256),
    "tier holds NUL": ("tier", "A\x00"),
    "tier too long": ("tier", "A" * 33),
    "features JSON text with a raw NUL": ("features", '{"visits": "3\x00"}'),
}


@pytest.mark.parametrize(("field", "value"), UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_a_record_with_unstorable_text_is_refused_alone(
    field: str, value: str, log: PredictionLog, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(InvalidRecord, match=field):
        prediction_row(record(2, **{field: value}))
    with caplog.at_level(logging.WARNING, logger="serve.predictionlog"):
        log.append([record(1), record(2, **{field: value}), record(3)])
        log.flush()
    assert (log.written, log.failed) == (2, 1)
    assert log.read_predictions()["lead_id"].tolist() == ["10001", "10003"]
    assert any("1 records not stored" in m and field in m for m in caplog.messages)


def test_text_at_the_limits_and_any_feature_text_are_stored_as_given(log: PredictionLog) -> None:
    features = {
        "nul\x00key": "a value\x00with a NUL",
        "k" * 10_000: "v" * 1_000_000,
        "visits": 3,
        "country": "Côte d'Ivoire 🙂",
    }
    escaped = json.dumps({"visits": "3\x00"})  # a NUL escaped in JSON text is fine
    lead_id = "é" * 255  # characters, not bytes: 510 bytes in UTF-8
    log.append(
        [
            record(1, lead_id=lead_id, model_version="m" * 255, tier="T" * 32, features=features),
            record(2, features=escaped),
        ]
    )
    log.flush()
    assert (log.written, log.failed) == (2, 0)
    first, second = log.read_predictions().to_dict("records")
    assert (first["lead_id"], first["model_version"], first["tier"]) == (
        lead_id,
        "m" * 255,
        "T" * 32,
    )
    assert json.loads(first["features"]) == features
    assert json.loads(second["features"]) == {"visits": "3\x00"}


def test_api_answers_with_unstorable_text_fail_alone(log: PredictionLog) -> None:
    answers = [
        {**record(i, lead_id=f"lead-{i}"), "as_of": pd.Timestamp(T0 - timedelta(hours=1))}
        for i in range(5)
    ]
    answers[1]["lead_id"] = "lead\x00one"
    answers[2]["lead_id"] = "x" * 256
    answers[3]["features"] = {"nul\x00key": 1.0, "k" * 5_000: 2.0}
    rows = answer_rows(answers, T0, "7")
    log.append(rows)
    log.flush()
    assert (log.written, log.failed) == (3, 2)
    logged = log.read_predictions()
    assert logged["lead_id"].tolist() == ["lead-0", "lead-3", "lead-4"]
    assert json.loads(logged["features"][1]) == {"nul\x00key": 1.0, "k" * 5_000: 2.0}

    # A model version no store can keep: every answer is refused, none stored differently.
    log.append(answer_rows(answers[:1], T0, "v\x007"))
    log.flush()
    assert (log.written, log.failed) == (3, 3)


@pytest.mark.parametrize("lead_id", ["lead\x00one", "x" * 256], ids=["NUL", "too long"])
def test_outcomes_with_unstorable_lead_ids_write_nothing(lead_id: str, log: PredictionLog) -> None:
    closed = datetime(2025, 4, 1, tzinfo=UTC)
    with pytest.raises(InvalidRecord, match="lead_id"):
        log.record_outcomes(
            [
                {"lead_id": 4, "outcome": 1, "closed_at": closed},
                {"lead_id": lead_id, "outcome": 0, "closed_at": closed},
            ]
        )
    assert len(log.read_outcomes()) == 0
    longest = "é" * 255
    assert log.record_outcomes([{"lead_id": longest, "outcome": 1, "closed_at": closed}]) == 1
    assert log.read_outcomes()["lead_id"].tolist() == [longest]
