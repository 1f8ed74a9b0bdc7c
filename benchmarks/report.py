"""Shared by the benchmarks: machine description, peak memory, BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_gb() -> float:
    """This process's peak resident memory in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GiB RAM, {platform.platform()}"


def versions() -> str:
    import duckdb
    import numpy
    import pyarrow

    return (
        f"Python {platform.python_version()}, pandas {pd.__version__}, numpy {numpy.__version__}, "
        f"pyarrow {pyarrow.__version__}, DuckDB {duckdb.__version__}"
    )


def write_section(section: str, markdown: str) -> None:
    """Replace `section` (a "## " heading and its text) in BENCHMARKS.md, or append it."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if section in text:
        before, _, after = text.partition(section)
        rest = after.split("\n## ", 1)
        text = before + markdown + ("\n## " + rest[1] if len(rest) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + markdown
    path.write_text(text)
