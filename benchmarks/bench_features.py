"""Feature-building speed and peak memory, beside the same aggregation in DuckDB SQL.

    python -m benchmarks.bench_features [--sizes 100000,1000000] [--repeats 3]

Simulated data is generated once per size under benchmarks/out/ (not in git). Each measurement
runs in its own process, so peak memory (ru_maxrss) belongs to that engine alone; it includes
the loaded input. Results replace the feature section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from benchmarks.report import ROOT, machine, peak_rss_gb, versions, write_section

OUT = ROOT / "benchmarks" / "out"
SECTION = "## Feature building"


def _data_dir(n_leads: int) -> Path:
    from simulator.funnel import SimulatorConfig, simulate_funnel, write_funnel

    folder = OUT / f"funnel-{n_leads}"
    if not (folder / "events.parquet").exists():
        print(f"simulating {n_leads:,} leads into {folder} ...", flush=True)
        write_funnel(simulate_funnel(SimulatorConfig(n_leads=n_leads, seed=0)), folder)
    return folder


def _worker(engine: str, folder: Path, repeats: int) -> dict[str, float]:
    """Load the inputs, then time `repeats` runs of one engine; print JSON for the parent."""
    from features.build import build_features
    from features.config import FeatureConfig

    leads = pd.read_parquet(folder / "leads.parquet")
    events_path = folder / "events.parquet"
    # The DuckDB reference covers the lead's own behaviour; account features are left out.
    config = FeatureConfig(account_column=None)
    as_of = pd.Timestamp(pd.read_parquet(events_path, columns=["ts"])["ts"].max())
    times: list[float] = []
    if engine == "leadscore":
        events = pd.read_parquet(events_path, columns=["lead_id", "ts", "event_type"])
        loaded = peak_rss_gb()
        for _ in range(repeats):
            start = time.perf_counter()
            frame = build_features(leads, events, as_of, config)
            times.append(time.perf_counter() - start)
        n_events, rows = len(events), len(frame)
    else:
        import duckdb

        from benchmarks.duckdb_reference import behaviour_sql

        known = leads.loc[leads["created_at"] <= as_of, "lead_id"].to_numpy()
        spine = pd.DataFrame({"lead_id": known, "as_of": as_of})
        con = duckdb.connect()
        con.execute(
            "CREATE TABLE events AS SELECT lead_id, ts, event_type::VARCHAR AS event_type "
            f"FROM read_parquet('{events_path}')"
        )
        con.register("spine_frame", spine)
        con.execute("CREATE TABLE spine AS SELECT * FROM spine_frame")
        loaded = peak_rss_gb()
        query = behaviour_sql(config)
        for _ in range(repeats):
            start = time.perf_counter()
            frame = con.sql(query).to_arrow_table().to_pandas()
            times.append(time.perf_counter() - start)
        n_events = int(con.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]
        rows = len(frame)
    return {
        "seconds": statistics.median(times),
        "runs": float(len(times)),
        "events": float(n_events),
        "rows": float(rows),
        "loaded_rss_gb": loaded,
        "peak_rss_gb": peak_rss_gb(),
    }


def _measure(engine: str, folder: Path, repeats: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_features", "--worker", engine, str(folder),
         "--repeats", str(repeats)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("ENGINE", "FOLDER"))
    args = parser.parse_args()
    if args.worker:
        engine, folder = args.worker
        print(json.dumps(_worker(engine, Path(folder), args.repeats)))
        return

    rows = []
    for n_leads in (int(s) for s in args.sizes.split(",")):
        folder = _data_dir(n_leads)
        ours = _measure("leadscore", folder, args.repeats)
        reference = _measure("duckdb", folder, args.repeats)
        assert ours["rows"] == reference["rows"], "engines disagree on the leads scored"
        rows.append((n_leads, ours, reference))
        print(
            f"{n_leads:,} leads / {ours['events']:,.0f} events: leadscore {ours['seconds']:.2f} s "
            f"({ours['events'] / ours['seconds'] / 1e6:.2f} M events/s, peak "
            f"{ours['peak_rss_gb']:.2f} GB); DuckDB {reference['seconds']:.2f} s "
            f"(peak {reference['peak_rss_gb']:.2f} GB)",
            flush=True,
        )

    lines = [
        SECTION,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"{versions()}. Median of {args.repeats} runs each; every engine in its own process.",
        "",
        "`build_features` (all features, one snapshot per lead at the last event time) against the",
        "same behaviour aggregation in DuckDB SQL (`benchmarks/duckdb_reference.py`, checked equal",
        "by `tests/test_benchmark_reference.py`), run on DuckDB's own tables in the same run.",
        "Peak memory is the process's peak resident set, input data included.",
        "",
        "| leads | events | leadscore s | M events/s | peak GB | DuckDB s | DuckDB peak GB "
        "| DuckDB / leadscore time |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n_leads, ours, ref in rows:
        lines.append(
            f"| {n_leads:,} | {ours['events']:,.0f} | {ours['seconds']:.2f} "
            f"| {ours['events'] / ours['seconds'] / 1e6:.2f} | {ours['peak_rss_gb']:.2f} "
            f"| {ref['seconds']:.2f} | {ref['peak_rss_gb']:.2f} "
            f"| {ref['seconds'] / ours['seconds']:.2f} |"
        )
    lines += [
        "",
        "Targets: at least 2M events/s on 2 cores, within 3x of the DuckDB reference, peak memory",
        "under 6 GB at 1M leads / 20M events.",
        "",
    ]
    write_section(SECTION, "\n".join(lines))
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
