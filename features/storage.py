"""Writing outputs so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Hashable, Mapping
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

_SUFFIXES = (".parquet", ".csv")


def write_tables_atomic(
    tables: Mapping[Path, pd.DataFrame], attrs: Mapping[Hashable, object] | None = None
) -> list[Path]:
    """Write each frame (Parquet or CSV, by suffix) beside its path, then rename them all.

    The final names are taken only once every table is written, so a failure leaves no partial
    file and no stray temporary. `attrs` travel in Parquet's pandas metadata.
    """
    for path in tables:
        if path.suffix.lower() not in _SUFFIXES:
            raise ValueError(f"{path}: output must end in .parquet or .csv")
    pending: list[tuple[Path, Path]] = []
    try:
        for path, frame in tables.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(handle)
            temporary = Path(name)
            pending.append((temporary, path))
            if path.suffix.lower() == ".parquet":
                out = frame.copy(deep=False)
                out.attrs = dict(attrs or {})
                out.to_parquet(temporary, engine="pyarrow", index=False, compression="zstd")
            else:
                frame.to_csv(temporary, index=False)
            os.chmod(temporary, 0o644)  # mkstemp makes files private; these are ordinary outputs
    except BaseException:
        for temporary, _ in pending:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, path in pending:
        os.replace(temporary, path)
    logger.debug("wrote %s", ", ".join(str(path) for _, path in pending))
    return [path for _, path in pending]


def write_table_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """Write one Parquet or CSV file atomically."""
    return write_tables_atomic({path: frame})[0]
