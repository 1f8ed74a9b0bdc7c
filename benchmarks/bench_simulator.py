"""Funnel simulator speed and peak memory at 1M leads, beside writing the same tables alone.

    python -m benchmarks.bench_simulator [--leads 1000000]

The reference is the floor under any simulator: writing its three finished tables to Parquet
(the same atomic writer), measured in the same process right after.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.report import machine, peak_rss_gb, versions, write_section
from simulator.funnel import SimulatorConfig, simulate_funnel, write_funnel

SECTION = "## Funnel simulator"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        funnel = simulate_funnel(SimulatorConfig(n_leads=args.leads, seed=0))
        simulated = time.perf_counter() - start
        write_funnel(funnel, Path(folder) / "first")
        total = time.perf_counter() - start
        start = time.perf_counter()
        write_funnel(funnel, Path(folder) / "again")
        write_only = time.perf_counter() - start
    n_events = len(funnel.events)
    print(
        f"{args.leads:,} leads, {n_events:,} events: simulate {simulated:.1f} s, "
        f"simulate + write {total:.1f} s, write alone {write_only:.1f} s, "
        f"peak {peak_rss_gb():.2f} GB"
    )
    write_section(
        SECTION,
        "\n".join(
            [
                SECTION,
                "",
                f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}. {versions()}.",
                "`simulate_funnel` + `write_funnel` (what `leadscore generate` does), against the",
                "reference floor of writing the same three finished tables to Parquet again.",
                "",
                "| leads | events | simulate s | simulate + write s | write alone s | peak GB |",
                "|---:|---:|---:|---:|---:|---:|",
                f"| {args.leads:,} | {n_events:,} | {simulated:.1f} | {total:.1f} "
                f"| {write_only:.1f} | {peak_rss_gb():.2f} |",
                "",
                "Target: 1M leads (~20M events) in under 2 minutes.",
                "",
            ]
        ),
    )


if __name__ == "__main__":
    main()
