"""Serving speed: `leadscore serve` beside `mlflow models serve`, same champion, one run.

    python -m benchmarks.bench_serving [--seconds 10] [--warmup 2] [--batch-seconds 15]

Set-up (not timed): a simulated funnel is trained and registered as champion in a fresh
temporary MLflow store; both servers are started on loopback from that store. Then, for each
server: wrk at concurrency 1 (-t1 -c1) and 16 (-t2 -c16), each a short warm-up and a fixed
measured duration, one lead with ~30 events per request; and 1,000-lead batches sent one after
another with httpx. Both servers must first answer the same probabilities for the same leads.
Needs `wrk` (Debian/Ubuntu: `apt-get install -y wrk`). Results replace the serving section of
BENCHMARKS.md; both servers are stopped at the end, also on errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil

from benchmarks.report import machine, peak_rss_gb, versions, write_section
from features.batch import batch_from_records
from features.vocabulary import CREATED_AT, LEAD_ID, TS
from models.rules.points import PointsRules
from models.scoring.bundle import EVENTS_COLUMN, request_example
from models.scoring.scorer import LeadScorer, lead_columns_needed
from pipelines.config import LeadscoreConfig
from pipelines.training import TrainingRun, run_training
from simulator.funnel import SimulatedFunnel, SimulatorConfig, simulate_funnel

SECTION = "## Serving"
MODEL_URI = "models:/leadscore@champion"
EVENTS_PER_LEAD = 30
SINGLE_LEADS = 50  # wrk cycles over these, one lead per request
SANITY_LEADS = 10
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
QUIET_CORES = 0.1  # CPU of other processes above which the section says the machine was busy
WRK_INSTALL = (
    "wrk is not installed (the load generator of this benchmark): on Debian/Ubuntu run "
    "`sudo apt-get update && sudo apt-get install -y wrk`, on macOS `brew install wrk`"
)
ANSWER_FIELDS = {
    "lead_id",
    "probability",
    "mql",
    "tier",
    "threshold",
    "rule_score",
    "rule_mql",
    "reasons",
    "model_version",
}

# wrk script: cycles over pre-built POST requests; prints one JSON line with the figures.
LUA = """
local bodies = {
%(bodies)s
}
local prepared = {}
local i = 0

init = function(args)
  for k, body in ipairs(bodies) do
    prepared[k] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
  end
end

request = function()
  i = i %% #prepared + 1
  return prepared[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"mean_us": %%.1f, "max_us": %%d, "connect": %%d, "read": %%d, "write": %%d, '
    .. '"status": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""
# wrk's own GET of the URL, reported as LUA reports.
LUA_GET = "done = function" + LUA.split("done = function", 1)[1].replace("%%", "%")


class BenchFailed(Exception):
    """Something a reader must see as it is: command, status, body or log tail."""


@dataclass
class Server:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes]
    base: str
    ready_path: str
    predict_path: str
    log: Path
    wrk_script: Path | None = None
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    answered: int = 0  # leads answered with 200, warm-ups included (for the log check)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "(no log)"
        probe = f'"GET {self.ready_path} HTTP'  # readiness polls would hide the cause
        kept = [
            line for line in self.log.read_text(errors="replace").splitlines() if probe not in line
        ]
        return "\n".join(kept[-lines:])


@dataclass(frozen=True)
class Workload:
    """The same leads in both request forms; JSON bytes built once, outside any timing."""

    single_ours: list[bytes]
    single_mlflow: list[bytes]
    sanity_ours: list[bytes]
    sanity_mlflow: bytes
    sanity_ids: list[str]
    batch_ours: bytes
    batch_mlflow: bytes
    batch_ids: list[str]
    batch_mean_events: float
    model_version: str
    learner: str  # which candidate won at training (lightgbm, logistic or blend)
    n_train_leads: int
    scoring_s: float  # `LeadScorer.score` on the batch in-process: the code both servers run


# ---------------------------------------------------------------- set-up (not timed)


def _train(store: Path, n_leads: int) -> tuple[SimulatedFunnel, TrainingRun]:
    funnel = simulate_funnel(SimulatorConfig(n_leads=n_leads, seed=0))
    base = LeadscoreConfig(workdir=store)
    config = base.model_copy(
        update={
            "snapshots": base.snapshots.model_copy(update={"observed_until": funnel.observed_until})
        }
    )
    run = run_training(funnel.leads, funnel.events, config, PointsRules.default())
    return funnel, run


def _events_before_day_30(leads: pd.DataFrame, events: pd.DataFrame) -> pd.Series:
    """Events per lead before created_at + 30 days (the `as_of` of `request_example`)."""
    joined = events[[LEAD_ID, TS]].merge(leads[[LEAD_ID, CREATED_AT]], on=LEAD_ID)
    early = joined[joined[TS] < joined[CREATED_AT] + pd.Timedelta(days=30)]
    counts = early.groupby(LEAD_ID).size()
    return counts.reindex(leads[LEAD_ID], fill_value=0)


def _rows(leads: pd.DataFrame, events: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """`request_example` rows for exactly these leads, as JSON-ready dataframe_split."""
    mine = events[events[LEAD_ID].isin(leads[LEAD_ID])]
    rows = request_example(leads, mine, columns, n=len(leads), max_events=EVENTS_PER_LEAD)
    split: dict[str, Any] = json.loads(rows.to_json(orient="split", index=False))
    return split


def _ours(split: dict[str, Any]) -> list[dict[str, Any]]:
    """The same rows as `POST /predict` leads: events as a list instead of JSON text."""
    leads = []
    for values in split["data"]:
        lead = dict(zip(split["columns"], values, strict=True))
        lead[EVENTS_COLUMN] = json.loads(lead[EVENTS_COLUMN])
        leads.append(lead)
    return leads


def _mlflow_body(split: dict[str, Any], data: list[list[Any]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": split["columns"], "data": data}}).encode()


def _workload(store: Path, n_leads: int, batch_size: int) -> Workload:
    funnel, run = _train(store, n_leads)
    scorer = run.result.scorer
    columns = lead_columns_needed(scorer)
    counts = _events_before_day_30(funnel.leads, funnel.events)
    # Singles: leads with at least 30 events before their as_of (they send their latest 30).
    full = funnel.leads[counts.to_numpy() >= EVENTS_PER_LEAD].head(SINGLE_LEADS)
    if len(full) < SINGLE_LEADS:
        raise BenchFailed(f"only {len(full)} simulated leads have {EVENTS_PER_LEAD} events")
    single = _rows(full, funnel.events, columns)
    # Batch: the leads with the most events (capped at 30 each), in lead order.
    order = np.argsort(-counts.to_numpy(), kind="stable")[:batch_size]
    busiest = funnel.leads.iloc[np.sort(order)]
    batch = _rows(busiest, funnel.events, columns)
    batch_ours = _ours(batch)
    single_ours = _ours(single)
    return Workload(
        single_ours=[json.dumps(lead).encode() for lead in single_ours],
        single_mlflow=[_mlflow_body(single, [row]) for row in single["data"]],
        sanity_ours=[json.dumps(lead).encode() for lead in single_ours[:SANITY_LEADS]],
        sanity_mlflow=_mlflow_body(single, single["data"][:SANITY_LEADS]),
        sanity_ids=[str(lead[LEAD_ID]) for lead in single_ours[:SANITY_LEADS]],
        batch_ours=json.dumps({"leads": batch_ours}).encode(),
        batch_mlflow=_mlflow_body(batch, batch["data"]),
        batch_ids=[str(lead[LEAD_ID]) for lead in batch_ours],
        batch_mean_events=float(np.mean([len(lead["events"]) for lead in batch_ours])),
        model_version=str(run.registration.version),
        learner=run.result.chosen.name,
        n_train_leads=n_leads,
        scoring_s=_scoring_seconds(scorer, batch),
    )


def _scoring_seconds(scorer: LeadScorer, batch: dict[str, Any], repeats: int = 7) -> float:
    """Median in-process time of the scoring kernel (`LeadScorer.score_batch`) on the batch,
    its input arrays built beforehand: a fresh copy each time, since a batch keeps its
    point-in-time join once made and a server makes it for every request."""
    rows = pd.DataFrame(batch["data"], columns=batch["columns"])
    records = [{str(k): v for k, v in row.items()} for row in rows.to_dict("records")]
    arrays = batch_from_records(records, pd.Timestamp.now(tz="UTC").value)
    times = []
    for _ in range(repeats):
        fresh = replace(arrays)
        started = time.perf_counter()
        scorer.score_batch(fresh)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(
    name: str,
    command: list[str],
    port: int,
    env: dict[str, str],
    cwd: Path,
    paths: tuple[str, str],
) -> Server:
    """Start a server in its own session; `paths` are its readiness and prediction paths."""
    log = cwd / f"{name}.log"
    with log.open("wb") as out:
        # Own session: the server and any children it starts are stopped as one group.
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Server(name, command, process, f"http://127.0.0.1:{port}", *paths, log)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise BenchFailed(
                f"{server.name} exited with code {code} before it was ready\n"
                f"command: {' '.join(server.command)}\nlog:\n{server.log_tail()}"
            )
        try:
            answer = httpx.get(server.base + server.ready_path, timeout=2)
            if answer.status_code == 200:
                return
            last = f"GET {server.ready_path} -> {answer.status_code} {answer.text[:500]}"
        except httpx.TransportError as exc:
            last = f"GET {server.ready_path} -> {type(exc).__name__}"
        time.sleep(0.25)
    raise BenchFailed(
        f"{server.name} not ready after {READY_TIMEOUT_S:.0f} s ({last})\n"
        f"command: {' '.join(server.command)}\nlog:\n{server.log_tail()}"
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(server: Server) -> None:
    """SIGTERM to the server's process group; SIGKILL whatever is left after a timeout."""
    pgid = server.process.pid  # leader of its own session, so its group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=STOP_TIMEOUT_S)
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        print(f"{server.name}: still running {STOP_TIMEOUT_S:.0f} s after SIGTERM, killing")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if server.process.poll() is None:
        server.process.wait(timeout=STOP_TIMEOUT_S)


def _tree(server: Server) -> list[Any]:
    try:
        root = psutil.Process(server.process.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu_seconds(server: Server) -> float:
    total = 0.0
    for process in _tree(server):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _rss_mb(server: Server) -> float:
    total = 0.0
    for process in _tree(server):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def _busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all processes, all cores) since boot."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _post(client: httpx.Client, server: Server, body: bytes) -> list[dict[str, Any]]:
    answer = client.post(
        server.base + server.predict_path,
        content=body,
        headers={"content-type": "application/json"},
    )
    if answer.status_code != 200:
        raise BenchFailed(
            f"{server.name}: POST {server.predict_path} ({len(body):,} bytes) -> "
            f"{answer.status_code}\nbody: {answer.text[:2000]}\nlog:\n{server.log_tail()}"
        )
    predictions: list[dict[str, Any]] = answer.json()["predictions"]
    server.answered += len(predictions)
    return predictions


# ---------------------------------------------------------------- checks and measurements


def _compare(
    what: str, ids: list[str], ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
) -> float:
    """Both servers' probabilities for the same leads; raises when they differ."""
    if [str(p["lead_id"]) for p in ours] != ids or [str(p["lead_id"]) for p in theirs] != ids:
        raise BenchFailed(f"{what}: the servers answered other leads or another order than sent")
    a = np.array([p["probability"] for p in ours], dtype=float)
    b = np.array([p["probability"] for p in theirs], dtype=float)
    if not np.allclose(a, b, rtol=1e-9, atol=1e-12):
        worst = int(np.argmax(np.abs(a - b)))
        raise BenchFailed(
            f"{what}: the servers disagree, e.g. lead {ids[worst]}: leadscore {a[worst]!r}, "
            f"mlflow {b[worst]!r} ({int((~np.isclose(a, b, rtol=1e-9, atol=1e-12)).sum())} "
            f"of {len(ids)} leads differ)"
        )
    missing = ANSWER_FIELDS - set(ours[0])
    if missing or not {"for", "against"} <= set(ours[0]["reasons"]):
        raise BenchFailed(f"{what}: leadscore's answer lacks {sorted(missing) or 'reasons'}")
    return float(np.max(np.abs(a - b)))


def _sanity(ours: Server, theirs: Server, work: Workload) -> tuple[float, int]:
    with httpx.Client(timeout=300) as client:
        mine = [_post(client, ours, body)[0] for body in work.sanity_ours]
        other = _post(client, theirs, work.sanity_mlflow)
        worst = _compare("single leads", work.sanity_ids, mine, other)
        batch_mine = _post(client, ours, work.batch_ours)
        batch_other = _post(client, theirs, work.batch_mlflow)
        worst = max(worst, _compare("1,000-lead batch", work.batch_ids, batch_mine, batch_other))
    served = {str(p["model_version"]) for p in mine + batch_mine}
    if served != {work.model_version}:
        raise BenchFailed(f"leadscore served version(s) {served}, registered {work.model_version}")
    return worst, len(mine) + len(batch_mine)


def _lua(bodies: list[bytes]) -> str:
    quoted = []
    for body in bodies:
        text = body.decode()
        if "]==]" in text:
            raise BenchFailed("a request body contains the Lua string delimiter ]==]")
        quoted.append(f"  [==[{text}]==],")
    return LUA % {"bodies": "\n".join(quoted)}


def _wrk(
    wrk: str,
    server: Server,
    threads: int,
    connections: int,
    seconds: int,
    get_path: str | None = None,
) -> dict[str, float]:
    """wrk against the server's predict route with its script, or a plain GET of `get_path`."""
    assert server.wrk_script is not None
    target = ["-s", str(server.wrk_script), server.base + server.predict_path]
    if get_path is not None:
        target = ["-s", str(server.wrk_script.with_name("get.lua")), server.base + get_path]
        server.wrk_script.with_name("get.lua").write_text(LUA_GET)
    command = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", *target,
    ]  # fmt: skip
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _cpu_seconds(server)
    busy_before = _busy_seconds()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    wall = time.perf_counter() - started
    server_cpu = _cpu_seconds(server) - server_before
    busy = _busy_seconds() - busy_before
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRKJSON ")]
    if done.returncode != 0 or not lines:
        raise BenchFailed(
            f"wrk failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}"
        )
    raw: dict[str, float] = json.loads(lines[-1].removeprefix("WRKJSON "))
    if get_path is None:
        server.answered += int(raw["requests"]) - int(raw["status"])
    errors = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
    if errors:
        raise BenchFailed(
            f"{server.name} at concurrency {connections}: errors {errors} in "
            f"{raw['requests']:.0f} requests (status = non-2xx answers)\n"
            f"command: {' '.join(command)}\nlog:\n{server.log_tail()}"
        )
    client_cpu = (client_after.ru_utime - client_before.ru_utime) + (
        client_after.ru_stime - client_before.ru_stime
    )
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "mean_ms": raw["mean_us"] / 1e3,
        "server_cores": server_cpu / wall,
        "client_cores": client_cpu / wall,
        "other_cores": max(0.0, busy - server_cpu - client_cpu) / wall,
    }


def _batches(
    server: Server, body: bytes, n_rows: int, seconds: float, at_least: int
) -> dict[str, float]:
    times: list[float] = []
    with httpx.Client(timeout=600) as client:
        _post(client, server, body)  # warm-up
        cpu_before = _cpu_seconds(server)
        busy_before = _busy_seconds()
        client_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or len(times) < at_least:
            t0 = time.perf_counter()
            answer = client.post(
                server.base + server.predict_path,
                content=body,
                headers={"content-type": "application/json"},
            )
            times.append(time.perf_counter() - t0)
            if answer.status_code != 200:
                raise BenchFailed(
                    f"{server.name}: batch POST -> {answer.status_code}: {answer.text[:2000]}"
                )
            server.answered += n_rows
        wall = time.perf_counter() - started
        client_after = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu = _cpu_seconds(server) - cpu_before
        busy = _busy_seconds() - busy_before
    client_cpu = (client_after.ru_utime - client_before.ru_utime) + (
        client_after.ru_stime - client_before.ru_stime
    )
    return {
        "batches": float(len(times)),
        "rows_per_s": n_rows * len(times) / sum(times),
        "median_s": statistics.median(times),
        "server_cores": server_cpu / wall,
        "client_cores": client_cpu / wall,
        "other_cores": max(0.0, busy - server_cpu - client_cpu) / wall,
    }


def _measure(wrk: str, server: Server, work: Workload, args: argparse.Namespace) -> None:
    for threads, connections in ((1, 1), (2, 16)):
        _wrk(wrk, server, threads, connections, args.warmup)
        result = _wrk(wrk, server, threads, connections, args.seconds)
        server.results[f"c{connections}"] = result
        print(
            f"  {server.name} c={connections}: {result['rps']:,.0f} req/s, "
            f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms "
            f"(cores: server {result['server_cores']:.2f}, wrk {result['client_cores']:.2f}, "
            f"others {result['other_cores']:.2f})",
            flush=True,
        )
    if server.name == "leadscore":
        # The floor under every request: a constant answer through the same server,
        # middleware and metrics, measured the same way.
        for threads, connections in ((1, 1), (2, 16)):
            _wrk(wrk, server, threads, connections, args.warmup, get_path="/health")
            result = _wrk(wrk, server, threads, connections, args.seconds, get_path="/health")
            server.results[f"health_c{connections}"] = result
            print(
                f"  {server.name} GET /health c={connections}: {result['rps']:,.0f} req/s, "
                f"p50 {result['p50_ms']:.2f} ms",
                flush=True,
            )
    body = work.batch_ours if server.name == "leadscore" else work.batch_mlflow
    batch = _batches(server, body, len(work.batch_ids), args.batch_seconds, args.min_batches)
    server.results["batch"] = batch
    server.results["rss"] = {"mb": _rss_mb(server)}
    print(
        f"  {server.name} batch of {len(work.batch_ids):,}: {batch['rows_per_s']:,.0f} rows/s, "
        f"median {batch['median_s']:.3f} s per batch ({batch['batches']:.0f} batches); "
        f"server RSS {server.results['rss']['mb']:,.0f} MB (cores: server "
        f"{batch['server_cores']:.2f}, others {batch['other_cores']:.2f})",
        flush=True,
    )


def _log_rows(database: Path) -> dict[str, int]:
    """Rows per table of the prediction log, read after the servers stopped."""
    if not database.exists():
        return {}
    with contextlib.closing(sqlite3.connect(database)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: int(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}


# ---------------------------------------------------------------- report


def _versions(wrk: str) -> str:
    wrk_line = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.splitlines()
    wrk_version = wrk_line[0].split()[1] if wrk_line else "unknown"
    extra = ", ".join(
        f"{label} {version(package)}"
        for label, package in (
            ("uvicorn", "uvicorn"),
            ("FastAPI", "fastapi"),
            ("MLflow", "mlflow"),
            ("LightGBM", "lightgbm"),
            ("httpx", "httpx"),
        )
    )
    return f"{versions()}, {extra}, wrk {wrk_version}"


def _verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def _report(
    ours: Server,
    theirs: Server,
    work: Workload,
    args: argparse.Namespace,
    wrk: str,
    sanity: tuple[float, int],
    logged: dict[str, int],
) -> str:
    o, m = ours.results, theirs.results
    c16_ratio = o["c16"]["rps"] / m["c16"]["rps"]
    c1_ratio = o["c1"]["rps"] / m["c1"]["rps"]
    batch_ratio = o["batch"]["rows_per_s"] / m["batch"]["rows_per_s"]
    p50 = o["c1"]["p50_ms"]
    n_batch = len(work.batch_ids)
    kernel_share = o["batch"]["rows_per_s"] / (n_batch / work.scoring_s)
    lines = [
        SECTION,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"{_versions(wrk)}.",
        "",
        f"The same registered champion (v{work.model_version}, trained on "
        f"{work.n_train_leads:,} simulated leads; the {work.learner} candidate won) served two "
        "ways in one run, on loopback:",
        "`leadscore serve` (defaults: 1 uvicorn worker; `OMP_NUM_THREADS=1`, reload off, "
        "prediction log on in SQLite) and `mlflow models serve -m models:/leadscore@champion "
        "--env-manager local` (its defaults: 1 worker). Both compute features, calibration, "
        "MQL and tier, rule-based points and reasons, with the same scoring kernel "
        "(`LeadScorer.score_batch`, which the pyfunc bundle calls too): a faster kernel speeds "
        "up both, and the ratios measure the serving around it.",
        f"Single requests carry one lead with {EVENTS_PER_LEAD} events (wrk cycles over "
        f"{SINGLE_LEADS} such leads); each row is {args.seconds:g} s of wrk after a "
        f"{args.warmup:g} s warm-up. The batch is {n_batch:,} leads "
        f"({work.batch_mean_events:.1f} events each on average) sent one request after another "
        f"with httpx for at least {args.batch_seconds:g} s and {args.min_batches} requests, "
        "after one warm-up request.",
        f"Sanity check first: both servers answered the same probabilities for "
        f"{sanity[1]:,} leads (largest difference {sanity[0]:.1e}).",
        "",
        "| server | concurrency | req/s | p50 ms | p99 ms | server CPU cores | wrk CPU cores "
        "| other processes' CPU cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server in (ours, theirs):
        for key, concurrency in (("c1", 1), ("c16", 16)):
            r = server.results[key]
            lines.append(
                f"| {server.name} | {concurrency} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
                f"| {r['p99_ms']:.2f} | {r['server_cores']:.2f} | {r['client_cores']:.2f} "
                f"| {r['other_cores']:.2f} |"
            )
    lines += [
        "",
        f"| server | batch of {n_batch:,}: rows/s | median s per batch | batches "
        "| server CPU cores | httpx CPU cores | other processes' CPU cores "
        "| server RSS MB after the run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server in (ours, theirs):
        b = server.results["batch"]
        lines.append(
            f"| {server.name} | {b['rows_per_s']:,.0f} | {b['median_s']:.3f} "
            f"| {b['batches']:.0f} | {b['server_cores']:.2f} | {b['client_cores']:.2f} "
            f"| {b['other_cores']:.2f} | {server.results['rss']['mb']:,.0f} |"
        )
    logged_text = ", ".join(f"`{t}` {n:,}" for t, n in logged.items()) or "no table found"
    most_logged = max(logged.values(), default=0)
    if most_logged >= ours.answered:
        log_check = f"at least the {ours.answered:,} leads it answered with 200 (warm-ups included)"
    else:
        log_check = (
            f"**fewer** than the {ours.answered:,} leads it answered with 200: the log dropped "
            "or had not written predictions when the server stopped"
        )
    phases = [r for srv in (ours, theirs) for k, r in srv.results.items() if k != "rss"]
    client_max = max(r["client_cores"] for r in phases)
    server_max = max(r["server_cores"] for r in phases)
    other_max = max(r["other_cores"] for r in phases)
    if other_max > QUIET_CORES:
        quiet = (
            f"**Other processes on the machine used up to {other_max:.2f} cores during the "
            "measurements**: the figures above are lower and noisier than on a quiet machine."
        )
    else:
        quiet = f"Other processes used at most {other_max:.2f} cores during the measurements."
    lines += [
        "",
        f"Ratios, leadscore / mlflow: requests/s {c1_ratio:.1f}x at concurrency 1 and "
        f"{c16_ratio:.1f}x at 16; p50 at concurrency 1 "
        f"{p50:.2f} ms vs {m['c1']['p50_ms']:.2f} ms; batch rows/s {batch_ratio:.1f}x.",
        f"Prediction log of `leadscore serve` after the run: {logged_text}; {log_check}.",
        "",
        f"Reference for single requests: `GET /health` on the same `leadscore serve` (a "
        f"constant answer through the same server, middleware and metrics, no scoring), "
        f"measured the same way in this run: {o['health_c1']['rps']:,.0f} req/s with p50 "
        f"{o['health_c1']['p50_ms']:.2f} ms at concurrency 1, "
        f"{o['health_c16']['rps']:,.0f} req/s at 16. `/predict` reaches "
        f"{o['c16']['rps'] / o['health_c16']['rps']:.0%} of that at 16 (single leads that "
        "arrive together are scored in one kernel call).",
        "",
        "Targets (from the issue):",
        f"- p50 at concurrency 1 under 1 ms: {p50:.2f} ms, {_verdict(p50 < 1)};",
        f"- at least 1,500 requests/s at concurrency 16, everything on: "
        f"{o['c16']['rps']:,.0f}, {_verdict(o['c16']['rps'] >= 1_500)};",
        f"- a {n_batch:,}-lead batch at least 1.3x mlflow's rows/s: {batch_ratio:.2f}x, "
        f"{_verdict(batch_ratio >= 1.3)};",
        f"- and at least 60% of the rows/s of the same kernel called in-process: "
        f"{kernel_share:.0%}, {_verdict(kernel_share >= 0.6)}.",
        "",
        f"Reference for the batch: the scoring kernel (`LeadScorer.score_batch`: features, "
        f"rule points, the {work.learner} model, calibration, policy, reasons) on the same "
        f"{n_batch:,} leads "
        f"in-process, its input arrays built beforehand (median of 7, before the servers "
        f"started): {work.scoring_s:.3f} s, {n_batch / work.scoring_s:,.0f} rows/s. Both "
        f"servers run it (the pyfunc bundle calls it too: one kernel); the rest of "
        f"`leadscore serve`'s {o['batch']['median_s']:.3f} s per batch receives, validates, "
        "adapts, logs and answers the batch.",
        "",
        f"The load generator shares the 2 cores with the server: it used at most "
        f"{client_max:.2f} cores in any row above, the server (CPU time of its whole process "
        f"tree over the row's wall time) at most {server_max:.2f}. {quiet}",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


@contextlib.contextmanager
def _servers(store: Path, folder: Path) -> Iterator[tuple[Server, Server]]:
    bin_dir = Path(sys.executable).parent
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LEADSCORE_")}
    mlflow_env = {
        **base_env,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    ours_env = {
        **base_env,
        "LEADSCORE_SERVE_RELOAD_INTERVAL_SECONDS": "0",
        "LEADSCORE_SERVE_PREDICTION_LOG_URL": f"sqlite:///{store / 'predictions.db'}",
        "OMP_NUM_THREADS": "1",
    }
    mlflow_port, ours_port = _free_port(), _free_port()
    mlflow_command = [
        str(bin_dir / "mlflow"), "models", "serve", "-m", MODEL_URI, "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(mlflow_port),
    ]  # fmt: skip
    ours_command = [
        str(bin_dir / "leadscore"), "serve", "--port", str(ours_port), "--workdir", str(store),
    ]  # fmt: skip
    started: list[Server] = []
    try:
        paths = ("/ping", "/invocations")
        started.append(_start("mlflow", mlflow_command, mlflow_port, mlflow_env, folder, paths))
        paths = ("/ready", "/predict")
        started.append(_start("leadscore", ours_command, ours_port, ours_env, folder, paths))
        yield started[1], started[0]
    finally:
        for server in started:
            _stop(server)


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def prepare_process() -> str:
    """For a benchmark that starts servers: wrk's path (or exit, saying how to install it),
    SIGTERM unwinding like Ctrl-C (so the servers are stopped), and no tracking server from
    the caller's environment (our own store only)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit(WRK_INSTALL)
    signal.signal(signal.SIGTERM, _terminated)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(name, None)
    return wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="wrk seconds per row")
    parser.add_argument("--warmup", type=int, default=2, help="wrk warm-up seconds")
    parser.add_argument("--batch-seconds", type=float, default=15.0)
    parser.add_argument("--min-batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--leads", type=int, default=20_000, help="simulated training leads")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    wrk = prepare_process()

    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-bench-serving-") as tmp:
            folder = Path(tmp)
            store = folder / "store"
            store.mkdir()
            started = time.perf_counter()
            print(f"simulating {args.leads:,} leads, training the champion ...", flush=True)
            work = _workload(store, args.leads, args.batch_size)
            print(f"  v{work.model_version} registered in {time.perf_counter() - started:.0f} s")
            with _servers(store, folder) as (ours, theirs):
                for server in (theirs, ours):
                    _wait_ready(server)
                    print(f"  {server.name} ready: {' '.join(server.command)}", flush=True)
                ours.wrk_script = folder / "leadscore.lua"
                ours.wrk_script.write_text(_lua(work.single_ours))
                theirs.wrk_script = folder / "mlflow.lua"
                theirs.wrk_script.write_text(_lua(work.single_mlflow))
                sanity = _sanity(ours, theirs, work)
                print(
                    f"sanity: same probabilities from both servers for {sanity[1]:,} leads "
                    f"(largest difference {sanity[0]:.1e})",
                    flush=True,
                )
                for server in (theirs, ours):
                    _measure(wrk, server, work, args)
            logged = _log_rows(store / "predictions.db")
    except BenchFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        sys.exit(1)

    markdown = _report(ours, theirs, work, args, wrk, sanity, logged)
    print()
    print(markdown)
    print(f"(benchmark process peak RSS {peak_rss_gb():.2f} GB, set-up included)")
    if not args.no_write:
        write_section(SECTION, markdown)
        print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
