"""The prediction log's guarantee: a ticket completes only once its rows are durable (stored, or
spilled while the store fails); spilled rows are replayed once the store is back, by this
process or the next; a store that fails and a spill that fails too fail the ticket."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serve.predictionlog import PredictionLog, PredictionRow, PredictionsNotRecorded

SCORED_AT = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def rows(start: int, count: int) -> list[PredictionRow]:
    naive = SCORED_AT.replace(tzinfo=None)
    return [
        PredictionRow(
            str(start + i),
            naive,
            naive - timedelta(days=1),
            "3",
            0.25,
            False,
            "C",
            0.5,
            12.0,
            False,
            '{"visits":2.0}',
        )
        for i in range(count)
    ]


@contextmanager
def locked(database: Path) -> Iterator[None]:
    """Another process holding the SQLite store: every write waits, then fails."""
    locker = sqlite3.connect(database, timeout=0)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.rollback()
        locker.close()


def stored_ids(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT lead_id FROM leadscore_predictions")]


def wait_until(condition: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_failing_store_spills_then_replays_every_row_once(tmp_path: Path) -> None:
    database, spill = tmp_path / "predictions.db", tmp_path / "spill"
    counted: Counter[str] = Counter()
    log = PredictionLog(
        f"sqlite:///{database}", spill_dir=spill, on_rows=lambda kind, n: counted.update({kind: n})
    )
    log.start()
    log.append(rows(0, 10)).result(timeout=10)
    assert log.degraded is None and counted["written"] == 10
    with locked(database):
        started = time.monotonic()
        for start in range(10, 40, 10):  # each durable (spilled) although the store is locked
            log.append(rows(start, 10)).result(timeout=10)
        assert time.monotonic() - started < 5.0  # one busy timeout, then straight to the spill
        assert log.degraded is not None and "locked" in log.degraded
        assert log.spilled == 30 and list(spill.glob("spill-*.jsonl"))
    # Back: the next try (after the backoff) stores again and replays the spill.
    wait_until(lambda: log.degraded is None and log.replayed == 30)
    log.append(rows(40, 5)).result(timeout=10)
    log.close()
    ids = stored_ids(database)
    assert sorted(ids, key=int) == [str(i) for i in range(45)]  # each once
    assert not list(spill.glob("spill-*.jsonl"))
    assert counted == Counter({"written": 15, "spilled": 30, "replayed": 30})
    assert (log.written, log.spilled, log.replayed, log.failed) == (15, 30, 30, 0)


def test_a_store_and_a_spill_that_both_fail_fail_the_ticket(tmp_path: Path) -> None:
    database = tmp_path / "predictions.db"
    not_a_folder = tmp_path / "spill"
    not_a_folder.write_text("a file where the spill folder should be")
    log = PredictionLog(f"sqlite:///{database}", spill_dir=not_a_folder)
    log.start()
    with locked(database):
        ticket = log.append(rows(0, 3))
        with pytest.raises(PredictionsNotRecorded, match="spill"):
            ticket.result(timeout=10)
    assert log.failed == 3 and log.degraded is not None
    log.close()


def test_a_full_queue_fails_the_ticket_at_once(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}", max_queue=5)  # not started
    assert log.append(rows(0, 5)).done() is False
    refused = log.append(rows(5, 1))
    with pytest.raises(PredictionsNotRecorded, match="full"):
        refused.result(timeout=0)
    log.close()
    assert log.written == 5 and log.dropped == 1


SPILL_AND_DIE = """
import os, signal, sqlite3, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.test_durable_log import rows
from serve.predictionlog import PredictionLog
database, spill = Path({database!r}), Path({spill!r})
log = PredictionLog(f"sqlite:///{{database}}", spill_dir=spill)
log.start()
locker = sqlite3.connect(database, timeout=0)
locker.execute("BEGIN EXCLUSIVE")
log.append(rows(0, 20)).result(timeout=10)
log.append(rows(20, 20)).result(timeout=10)
with open(spill / "spill-torn.jsonl", "wb") as torn:  # a writer killed mid-line
    torn.write(b'["99", "2025-03-01T09:0')
print(log.spilled, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_rows_spilled_by_a_killed_process_are_replayed_by_the_next(tmp_path: Path) -> None:
    database, spill = tmp_path / "predictions.db", tmp_path / "spill"
    script = SPILL_AND_DIE.format(
        root=str(Path(__file__).parents[1]), database=str(database), spill=str(spill)
    )
    died = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=120
    )
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-2000:]
    assert died.stdout.decode().strip() == "40"
    assert stored_ids(database) == []  # all 40 only in the spill files

    log = PredictionLog(f"sqlite:///{database}", spill_dir=spill)
    log.start()
    wait_until(lambda: log.replayed == 40)
    log.close()
    assert sorted(stored_ids(database), key=int) == [str(i) for i in range(40)]
    assert log.failed == 1  # the torn line, counted and skipped
    assert not list(spill.glob("spill-*.jsonl"))


def test_a_spill_file_in_use_by_a_live_process_is_left_to_it(tmp_path: Path) -> None:
    broken, good, spill = tmp_path / "broken.db", tmp_path / "good.db", tmp_path / "spill"
    writer = PredictionLog(f"sqlite:///{broken}", spill_dir=spill)
    writer.start()
    with locked(broken):
        writer.append(rows(0, 5)).result(timeout=10)  # spilled, and its file still open
        other = PredictionLog(f"sqlite:///{good}", spill_dir=spill)  # shares the spill folder
        other.start()
        other.append(rows(100, 1)).result(timeout=10)
        other.close()
        assert other.replayed == 0
        writer.close()  # its file is unlocked: the next process replays it
    last = PredictionLog(f"sqlite:///{good}", spill_dir=spill)
    last.start()
    wait_until(lambda: last.replayed == 5)
    last.close()
    assert sorted(stored_ids(good), key=int) == [*map(str, range(5)), "100"]
    assert stored_ids(broken) == []


def test_the_writer_never_waits_to_fill_a_batch_by_default(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")
    log.start()
    log.append(rows(0, 1)).result(timeout=10)  # opens the database
    started = time.perf_counter()
    for i in range(50):
        log.append(rows(i + 1, 1)).result(timeout=10)
    per_row = (time.perf_counter() - started) / 50
    log.close()
    assert per_row < 0.02, f"{per_row * 1e3:.1f} ms per one-row commit"
    assert log.written == 51


def test_record_commits_in_the_calling_thread_or_spills_after_a_short_wait(
    tmp_path: Path,
) -> None:
    database, spill = tmp_path / "predictions.db", tmp_path / "spill"
    log = PredictionLog(f"sqlite:///{database}", spill_dir=spill)
    log.start()
    log.record(rows(0, 5))
    assert stored_ids(database) == [str(i) for i in range(5)]  # committed before it returned
    with locked(database):
        started = time.monotonic()
        log.record(rows(5, 5))  # the request path waits 100 ms for a locked store, not 1 s
        assert time.monotonic() - started < 0.8
        assert log.spilled == 5 and log.degraded is not None
    wait_until(lambda: log.replayed == 5)
    log.close()
    assert sorted(stored_ids(database), key=int) == [str(i) for i in range(10)]


def test_record_raises_when_neither_store_nor_spill_takes_the_rows(tmp_path: Path) -> None:
    database = tmp_path / "predictions.db"
    log = PredictionLog(f"sqlite:///{database}")  # no spill folder
    with locked(database), pytest.raises(PredictionsNotRecorded, match="cannot be recorded"):
        log.record(rows(0, 2))
    assert log.failed == 2
    log.close()
