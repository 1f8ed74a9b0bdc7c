"""Reliability under load: `leadscore serve` soaked with a promotion, and killed mid-load.

    python -m benchmarks.bench_soak [--seconds 60] [--concurrency 32]

Set-up (not timed): a simulated funnel is trained and registered as champion in a fresh
temporary MLflow store, and the same model is registered again as a second version. Then:

1. Group commit. wrk at concurrency 16 for 10 s (one lead per request): the server's own
   histogram of how long answers waited for their predictions to be recorded
   (`leadscore_prediction_log_wait_seconds`), beside the requests' p50 from wrk.
2. Soak. wrk at `--concurrency` for `--seconds`, the second version promoted (`promote`, as
   `leadscore promote` does) half-way; the server reloads every second. Failed requests (any
   non-2xx, connection error or timeout), the server's memory (RSS, sampled each second; growth
   from the end of the first sixth to the end), and the prediction log's rows against the
   answers given.
3. SIGKILL. 16 client threads send single leads with unique ids; after 4 s the server is killed
   with SIGKILL. Every lead answered 200 is looked up in the prediction store. Twice: with the
   store healthy, and with the store locked by another process (the answers are then in the
   spill file, replayed by the next server started on the same folder).

Results replace the reliability section of BENCHMARKS.md; the servers are stopped at the end,
also on errors. Needs `wrk`, like `bench_serving`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from mlflow import MlflowClient

from benchmarks.bench_serving import (
    BenchFailed,
    Server,
    Workload,
    _free_port,
    _log_rows,
    _lua,
    _rss_mb,
    _start,
    _stop,
    _wait_ready,
    _workload,
    _wrk,
    prepare_process,
)
from benchmarks.report import machine, versions, write_section
from models.registry import CHAMPION, use_tracking
from models.registry.store import promote
from serve.predictionlog import PREDICTIONS_TABLE

SECTION = "## Reliability"
MODEL_NAME = "leadscore"
KILL_CLIENTS = 16
KILL_AFTER_S = 4.0


@dataclass(frozen=True)
class KillOutcome:
    answered: int  # leads answered 200 before the kill
    missing: int  # of those, not in the prediction store (after a restart, when spilled)
    errors_before_kill: int  # requests that failed while the server was still alive


def _log_env(folder: Path) -> dict[str, str]:
    return {
        "LEADSCORE_SERVE_PREDICTION_LOG_URL": f"sqlite:///{folder / 'predictions.db'}",
        "LEADSCORE_SERVE_PREDICTION_SPILL_DIR": str(folder / "spill"),
    }


@contextlib.contextmanager
def _server(store: Path, folder: Path, name: str, reload_s: float) -> Iterator[Server]:
    """`leadscore serve` on a free port, its prediction log in `folder`; stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSCORE_")}
    env |= {
        **_log_env(folder),
        "LEADSCORE_SERVE_RELOAD_INTERVAL_SECONDS": str(reload_s),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        str(Path(sys.executable).parent / "leadscore"), "serve", "--port", str(port),
        "--workdir", str(store),
    ]  # fmt: skip
    server = _start(name, command, port, env, folder, ("/ready", "/predict"))
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(server)


def stored_lead_ids(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return {row[0] for row in connection.execute("SELECT lead_id FROM leadscore_predictions")}


def kill_under_load(
    base: str, kill: Callable[[], None], lead: dict[str, Any], clients: int, after_s: float
) -> tuple[set[str], int]:
    """Single leads (unique ids) from `clients` threads; `kill()` (a SIGKILL) after `after_s`
    seconds. The ids answered 200 (a whole 200 answer received, before or as the server died),
    and the requests that failed before the kill."""
    answered: set[str] = set()
    errors = 0
    killed = threading.Event()
    lock = threading.Lock()

    def client(number: int) -> None:
        nonlocal errors
        with httpx.Client(timeout=10) as http:
            sent = 0
            while not killed.is_set():
                lead_id = f"kill-{number}-{sent}"
                sent += 1
                try:
                    reply = http.post(f"{base}/predict", json={**lead, "lead_id": lead_id})
                except httpx.TransportError:
                    if killed.is_set():
                        return
                    with lock:
                        errors += 1
                    continue
                with lock:
                    if reply.status_code == 200:
                        answered.add(lead_id)
                    elif not killed.is_set():
                        errors += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(after_s)
    kill()
    killed.set()
    for thread in threads:
        thread.join()
    return answered, errors


def _kill_run(store: Path, folder: Path, lead: dict[str, Any], store_locked: bool) -> KillOutcome:
    database = folder / "predictions.db"
    locker = None
    with _server(store, folder, "killed", reload_s=0) as server:
        if store_locked:
            locker = sqlite3.connect(database, timeout=0)
            locker.execute("BEGIN EXCLUSIVE")  # another process holding the store
        group = server.process.pid  # the server leads its own process group

        def kill() -> None:
            os.killpg(group, signal.SIGKILL)

        answered, errors = kill_under_load(server.base, kill, lead, KILL_CLIENTS, KILL_AFTER_S)
    if locker is not None:
        locker.rollback()
        locker.close()
        # The next server on the same folder replays what the killed one spilled.
        with _server(store, folder, "restarted", reload_s=0) as server:
            deadline = time.monotonic() + 60
            while list((folder / "spill").glob("spill-*.jsonl")):
                if time.monotonic() > deadline:
                    raise BenchFailed("the spill was not replayed within 60 s")
                time.sleep(0.2)
    missing = answered - stored_lead_ids(database)
    return KillOutcome(len(answered), len(missing), errors)


def _histogram(metrics: str, name: str) -> tuple[list[tuple[float, float]], float, float]:
    """Cumulative buckets (upper bound, count), sum and count of a histogram in /metrics text."""
    buckets = [
        (float("inf") if bound == "+Inf" else float(bound), float(count))
        for bound, count in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics, re.M)
    ]
    total = float(re.search(rf"^{name}_sum (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    count = float(re.search(rf"^{name}_count (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    return buckets, total, count


def _quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float:
    """As Prometheus' histogram_quantile: linear within the bucket holding the q-th answer."""
    rank, lower, below = q * count, 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, cumulative
    return lower


def _group_commit(wrk: str, server: Server) -> dict[str, float]:
    name = "leadscore_prediction_log_wait_seconds"
    before = _histogram(httpx.get(f"{server.base}/metrics").text, name)
    result = _wrk(wrk, server, 2, 16, 10)
    after = _histogram(httpx.get(f"{server.base}/metrics").text, name)
    buckets = [(b, c - c0) for (b, c), (_, c0) in zip(after[0], before[0], strict=True)]
    count = after[2] - before[2]
    return {
        **result,
        "wait_p50_ms": _quantile(buckets, count, 0.5) * 1e3,
        "wait_p99_ms": _quantile(buckets, count, 0.99) * 1e3,
        "wait_mean_ms": (after[1] - before[1]) / count * 1e3,
    }


def _soak(
    wrk: str, server: Server, store: Path, second_version: str, args: argparse.Namespace
) -> dict[str, Any]:
    outcome: dict[str, Any] = {}

    def load() -> None:
        try:
            outcome["wrk"] = _wrk(wrk, server, 2, args.concurrency, args.seconds)
        except BenchFailed as exc:
            outcome["failed"] = exc

    runner = threading.Thread(target=load)
    started = time.monotonic()
    runner.start()
    samples: list[tuple[float, float]] = []
    promoted_at = None
    while runner.is_alive():
        elapsed = time.monotonic() - started
        samples.append((elapsed, _rss_mb(server)))
        if len(samples) % 10 == 0:
            print(f"  {elapsed:3.0f} s: server RSS {samples[-1][1]:,.0f} MB", flush=True)
        if promoted_at is None and elapsed >= args.seconds / 2:
            promote(MODEL_NAME, second_version, store)
            promoted_at = elapsed
        time.sleep(1.0)
    runner.join()
    if "failed" in outcome:
        raise outcome["failed"]
    served = httpx.get(f"{server.base}/ready").json()["model_version"]
    if served != second_version:
        raise BenchFailed(f"after the promotion the server still serves v{served}")
    warm = [rss for elapsed, rss in samples if elapsed <= args.seconds / 6][-1]
    before = [rss for elapsed, rss in samples if elapsed < (promoted_at or 0)][-1]
    final = samples[-1][1]
    return {
        **outcome["wrk"],
        "rss_warm_mb": warm,
        "rss_before_promotion_mb": before,
        "rss_end_mb": final,
        "rss_max_mb": max(rss for _, rss in samples),
        "growth": (final - warm) / warm,
        "promoted_at_s": promoted_at,
    }


def _register_again(store: Path) -> str:
    """The champion's model registered as a new version (for a promotion under load)."""
    use_tracking(store)
    client = MlflowClient()
    champion = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    again = client.create_model_version(MODEL_NAME, str(champion.source), run_id=champion.run_id)
    deadline = time.monotonic() + 60
    while client.get_model_version(MODEL_NAME, again.version).status != "READY":
        if time.monotonic() > deadline:
            raise BenchFailed("the second version never became READY")
        time.sleep(0.2)
    return str(again.version)


def _report(
    work: Workload,
    commit: dict[str, float],
    soak: dict[str, Any],
    logged: int,
    answered: int,
    kills: dict[str, KillOutcome],
    args: argparse.Namespace,
) -> str:
    # wrk does not count the answers still on their way when it stops: the log has those too.
    rows_ok = "at least" if logged >= answered else f"**fewer** ({logged - answered:+,}) than"
    lines = [
        SECTION,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; {versions()}.",
        f"`leadscore serve` (1 worker, prediction log in SQLite, reload every second) with the "
        f"champion v{work.model_version} ({work.learner}, {work.n_train_leads:,} simulated "
        f"leads); one lead with 30 events per request, wrk on the same 2 cores.",
        "",
        "Group commit (wrk, concurrency 16, 10 s): each answer waits until its predictions are "
        "committed; concurrent requests share a commit.",
        "",
        "| req/s | request p50 ms | request p99 ms | wait for the log: p50 ms | p99 ms | mean ms |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {commit['rps']:,.0f} | {commit['p50_ms']:.2f} | {commit['p99_ms']:.2f} "
        f"| {commit['wait_p50_ms']:.2f} | {commit['wait_p99_ms']:.2f} "
        f"| {commit['wait_mean_ms']:.2f} |",
        "",
        "The wait is the commit of a round of requests scored together (each request of the "
        "round waits that long), timed by the server (`leadscore_prediction_log_wait_seconds`, "
        "the p50 interpolated within its 0.1 ms buckets); the rest of the request's p50 is "
        "what it was before answers waited for the log. "
        f"The added p50 is {commit['wait_p50_ms']:.2f} ms: "
        f"{'**met**' if commit['wait_p50_ms'] < 1 else '**not met**'} (target under 1 ms).",
        "",
        f"Soak: {args.seconds} s at concurrency {args.concurrency}, v{work.model_version}'s "
        f"model registered again and promoted at {soak['promoted_at_s']:.0f} s.",
        "",
        "| requests | req/s | failed | p50 ms | p99 ms | RSS MB at 1/6 | just before the "
        "promotion | at the end | max | growth |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {soak['requests']:,.0f} | {soak['rps']:,.0f} | 0 | {soak['p50_ms']:.2f} "
        f"| {soak['p99_ms']:.2f} | {soak['rss_warm_mb']:,.0f} "
        f"| {soak['rss_before_promotion_mb']:,.0f} | {soak['rss_end_mb']:,.0f} "
        f"| {soak['rss_max_mb']:,.0f} | {soak['growth']:+.1%} |",
        "",
        f"0 failed requests (wrk counted no non-2xx answer, connection error or timeout; the "
        f"run stops otherwise); memory growth {soak['growth']:+.1%}: "
        f"{'**met**' if soak['growth'] < 0.10 else '**not met**'} (target under 10%; the "
        "growth comes with the promotion, which loads the new version beside the old one). "
        f"Prediction log rows after the run: {logged:,}, {rows_ok} the {answered:,} answers "
        "wrk counted.",
        "",
        f"SIGKILL under load ({KILL_CLIENTS} client threads, single leads with unique ids, the "
        f"server killed after {KILL_AFTER_S:g} s; every lead answered 200 looked up in the "
        "store):",
        "",
        "| store | answered 200 | missing from the store | failed before the kill |",
        "|---|---:|---:|---:|",
    ]
    for label, kill in kills.items():
        lines.append(
            f"| {label} | {kill.answered:,} | {kill.missing:,} | {kill.errors_before_kill:,} |"
        )
    lines += [
        "",
        "Each answered lead is looked up by its id, so any answer lost with the process shows "
        "as missing.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60, help="soak seconds")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--leads", type=int, default=8_000, help="simulated training leads")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    wrk = prepare_process()
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-bench-soak-") as tmp:
            folder = Path(tmp)
            store = folder / "store"
            store.mkdir()
            print(f"simulating {args.leads:,} leads, training the champion ...", flush=True)
            work = _workload(store, args.leads, batch_size=10)
            second = _register_again(store)
            lead = json.loads(work.single_ours[0])
            with _server(store, folder / "soak", "soak", reload_s=1.0) as server:
                server.wrk_script = folder / "soak.lua"
                server.wrk_script.write_text(_lua(work.single_ours))
                print("group commit at concurrency 16 ...", flush=True)
                commit = _group_commit(wrk, server)
                print(f"soak: {args.seconds} s at concurrency {args.concurrency} ...", flush=True)
                soak = _soak(wrk, server, store, second, args)
            logged = _log_rows(folder / "soak" / "predictions.db").get(PREDICTIONS_TABLE, 0)
            kills = {}
            for label, locked in (("healthy", False), ("locked (answers spilled)", True)):
                print(f"SIGKILL under load, store {label} ...", flush=True)
                kills[label] = _kill_run(store, folder / f"kill-{locked}", lead, locked)
    except BenchFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    markdown = _report(work, commit, soak, logged, server.answered, kills, args)
    print()
    print(markdown)
    if not args.no_write:
        write_section(SECTION, markdown)
        print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
