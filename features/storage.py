"""Writing outputs so that a failure never leaves a half-written file behind."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

_SUFFIXES = (".parquet", ".csv")


@contextmanager
def atomic_paths(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Temporary files beside `paths` to write; renamed onto them all only if the block succeeds.

    On any failure the temporaries are removed and the targets keep what they had.
    """
    pending: list[tuple[Path, Path]] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(handle)
            os.chmod(name, 0o644)  # mkstemp makes files private; these are ordinary outputs
            pending.append((Path(name), path))
        yield [temporary for temporary, _ in pending]
        for temporary, path in pending:
            os.replace(temporary, path)  # e.g. onto a folder: fails, and nothing is left
    except BaseException:
        for temporary, _ in pending:
            temporary.unlink(missing_ok=True)  # those already renamed are gone
        raise


def write_tables_atomic(
    tables: Mapping[Path, pd.DataFrame], attrs: Mapping[Hashable, object] | None = None
) -> list[Path]:
    """Write each frame (Parquet or CSV, by suffix) all-or-nothing; `attrs` travel in Parquet's
    pandas metadata."""
    for path in tables:
        if path.suffix.lower() not in _SUFFIXES:
            raise ValueError(f"{path}: output must end in .parquet or .csv")
    with atomic_paths(list(tables)) as temporaries:
        for temporary, (path, frame) in zip(temporaries, tables.items(), strict=True):
            if path.suffix.lower() == ".parquet":
                out = frame.copy(deep=False)
                out.attrs = dict(attrs or {})
                out.to_parquet(temporary, engine="pyarrow", index=False, compression="zstd")
            else:
                frame.to_csv(temporary, index=False)
    logger.debug("wrote %s", ", ".join(str(path) for path in tables))
    return list(tables)


def write_table_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """Write one Parquet or CSV file atomically."""
    return write_tables_atomic({path: frame})[0]


def write_text_atomic(text: str, path: Path) -> Path:
    """Write one text file (e.g. YAML) atomically."""
    with atomic_paths([path]) as (temporary,):
        temporary.write_text(text, encoding="utf-8")
    return path
