"""The data contract: load leads and events from CSV or Parquet and check them.

Every problem raises `DataContractError` with one message naming the file, the column and example
rows, so an entry point can print it and exit non-zero before anything is written.
"""

from __future__ import annotations

import copy
import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.config import DatasetConfig
from features.vocabulary import CLOSED_AT, CONVERTED, CREATED_AT, EVENT_TYPE, LEAD_ID, TS

logger = logging.getLogger(__name__)

_MAX_EXAMPLES = 3
# An offset counts only after a time of day: the "-01" ending a date-only "2024-03-01" is the
# day, not a zone, and a date alone is as naive as a wall-clock time.
_OFFSET_SUFFIX = re.compile(
    r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE
)


class DataContractError(ValueError):
    """Input that breaks the data contract; the message is meant for the user as it is."""

    def __init__(
        self,
        problem: str,
        *,
        file: Path | str | None = None,
        column: str | None = None,
        rows: pd.Index | np.ndarray | list[int] | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.column = column
        self.rows = [] if rows is None else [int(r) for r in list(rows)[:_MAX_EXAMPLES]]
        self.n_rows = 0 if rows is None else len(rows)
        self.hint = hint
        super().__init__(self._render())

    def in_file(self, file: Path | str) -> DataContractError:
        """This error, said of the rows of `file` (raised where the file was not known)."""
        named = copy.copy(self)
        named.file = str(file)
        named.args = (named._render(),)
        return named

    def _render(self) -> str:
        where = ": ".join(
            part
            for part in (self.file, None if self.column is None else f"column '{self.column}'")
            if part
        )
        text = f"{where}: {self.problem}" if where else self.problem
        if self.rows:
            # Data row numbers are 1-based and count the header as line 1, as a spreadsheet does.
            shown = ", ".join(str(r + 2) for r in self.rows)
            more = (
                f" (and {self.n_rows - len(self.rows)} more)"
                if self.n_rows > len(self.rows)
                else ""
            )
            text += f" (row {shown}{more})"
        if self.hint:
            text += f"; {self.hint}"
        return text


@dataclass(frozen=True)
class EventsReport:
    """What loading the events dropped or noticed, for the user to see."""

    n_events: int
    n_unknown_leads: int
    n_unknown_lead_events: int
    unknown_event_types: dict[str, int]

    def summary(self) -> str:
        parts = [f"{self.n_events:,} events"]
        if self.n_unknown_lead_events:
            parts.append(
                f"{self.n_unknown_lead_events:,} events of {self.n_unknown_leads:,} unknown "
                "lead ids dropped"
            )
        if self.unknown_event_types:
            listed = ", ".join(
                f"{k} ({v:,})" for k, v in list(self.unknown_event_types.items())[:5]
            )
            parts.append(f"event types not in the feature config, ignored: {listed}")
        return "; ".join(parts)


_SEPARATORS = (",", ";", "\t", "|")


def _sniff_separator(path: Path) -> str:
    """The separator of a CSV file, from its first lines (a comma when unsure)."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        sample = handle.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(_SEPARATORS)).delimiter
    except csv.Error:
        return ","


def _check_text(path: Path, chunk_size: int = 1 << 20) -> None:
    """Refuse a CSV that is not UTF-8 text, naming the first bad line: NUL bytes (a binary
    file, or one whose end a crash filled with zeros) or bytes that are not UTF-8. Read in
    blocks of whole lines (no UTF-8 character holds a newline byte)."""
    line, rest = 1, b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(chunk_size)
            block = rest + chunk
            cut = block.rfind(b"\n") + 1 if chunk else len(block)
            block, rest = block[:cut], block[cut:]
            nul = block.find(b"\0")
            try:
                block.decode("utf-8")
                bad = -1
            except UnicodeDecodeError as exc:
                bad = exc.start
            if nul >= 0 and (bad < 0 or nul <= bad):
                where = line + block.count(b"\n", 0, nul)
                raise DataContractError(
                    f"is not text: NUL bytes on line {where} (a binary or damaged file)",
                    file=path,
                    hint="export it again as CSV UTF-8",
                )
            if bad >= 0:
                where = line + block.count(b"\n", 0, bad)
                raise DataContractError(
                    f"is not UTF-8 text: byte 0x{block[bad]:02x} on line {where}",
                    file=path,
                    hint="save it as CSV UTF-8",
                )
            if not chunk:
                return
            line += block.count(b"\n")


def read_table(path: Path, separator: str | None = None) -> pd.DataFrame:
    """Read a CSV (all cells as text, parsed later by the contract) or a Parquet file. A CSV's
    separator is `separator`, or sniffed from its first lines (comma, semicolon, tab, pipe)."""
    if not path.exists():
        raise DataContractError("file not found", file=path)
    suffix = path.suffix.lower()
    if path.is_dir() and (
        suffix not in (".parquet", ".pq") or not any(p.is_file() for p in path.rglob("*"))
    ):
        # A folder of Parquet files (a partitioned dataset) is read as one table.
        raise DataContractError("is a folder, not a data file", file=path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataContractError("is empty (0 bytes)", file=path)
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            _check_text(path)
            sep = separator or _sniff_separator(path)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
            if frame.shape[1] == 1:
                header = str(frame.columns[0])
                others = [s for s in _SEPARATORS if s != sep and s in header]
                if others:
                    raise DataContractError(
                        f"reads as one column with separator {sep!r}: {header[:60]!r}",
                        file=path,
                        hint=f"set dataset.separator (it looks like {others[0]!r})",
                    )
            return frame
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except DataContractError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataContractError(f"cannot be read ({first_line})", file=path) from exc
    raise DataContractError(
        f"unsupported file type '{suffix}'", file=path, hint="use .csv or .parquet"
    )


def _to_contract_columns(
    frame: pd.DataFrame, mapping: dict[str, str], required: list[str], path: Path
) -> pd.DataFrame:
    """Rename export columns to contract names; `mapping` is contract name -> export name."""
    for target in required:
        if mapping[target] not in frame.columns:
            available = ", ".join(map(str, frame.columns[:12]))
            raise DataContractError(
                f"required column '{mapping[target]}' is missing",
                file=path,
                hint=f"columns present: {available}",
            )
    renames = {
        source: target
        for target, source in mapping.items()
        if source != target and source in frame.columns
    }
    clashes = [target for target in renames.values() if target in frame.columns]
    if clashes:
        raise DataContractError(
            f"column '{clashes[0]}' exists and another column is mapped onto it",
            file=path,
        )
    return frame.rename(columns=renames)


def normalise_ids(ids: pd.Series, path: Path, column: str) -> pd.Series:
    """Ids as int64 where every id is an integer, otherwise as strings; never missing."""
    missing = ids.isna()
    if ids.dtype == object or pd.api.types.is_string_dtype(ids):
        text = ids.astype("str").str.strip()
        missing |= text.eq("")
        ids = text
    if missing.any():
        raise DataContractError(
            "ids are missing", file=path, column=column, rows=np.flatnonzero(missing.to_numpy())
        )
    if pd.api.types.is_integer_dtype(ids):
        return ids.astype("int64")
    if pd.api.types.is_float_dtype(ids) and bool((ids % 1 == 0).all()):
        return ids.astype("int64")
    text = ids.astype("str")
    if bool(text.str.fullmatch(r"-?\d{1,18}").all()):
        return text.astype("int64")
    return text


def shown_value(value: object) -> str:
    """A file's value as an error quotes it: `19951`, not numpy's `np.int64(19951)`."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def unique_lead_ids(ids: pd.Series, path: Path, column: str) -> pd.Series:
    """`normalise_ids`, refusing an id that stands on more than one row."""
    ids = normalise_ids(ids, path, column)
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        raise DataContractError(
            f"lead id {shown_value(ids[duplicated].iloc[0])} is not unique",
            file=path,
            column=column,
            rows=np.flatnonzero(duplicated.to_numpy()),
        )
    return ids


def parse_timestamps(
    values: pd.Series,
    *,
    path: Path,
    column: str,
    timezone: str | None,
    required: bool,
) -> pd.Series:
    """Timestamps as datetime64[ns, UTC]. Naive ones are refused unless a timezone is configured."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return pd.Series(values.dt.tz_convert("UTC").dt.as_unit("ns"))
    if pd.api.types.is_datetime64_dtype(values):
        return _localise(values, path=path, column=column, timezone=timezone, naive=values.notna())

    text = values.astype("str").str.strip().where(values.notna(), "")
    blank = text.eq("")
    if required and blank.any():
        raise DataContractError(
            "timestamps are missing", file=path, column=column, rows=np.flatnonzero(blank)
        )
    has_offset = text.str.contains(_OFFSET_SUFFIX)
    parsed = pd.to_datetime(text.where(~blank), format="ISO8601", errors="coerce", utc=True)
    retry = parsed.isna() & ~blank
    if retry.any():
        parsed[retry] = pd.to_datetime(text[retry], format="mixed", errors="coerce", utc=True)
    bad = parsed.isna() & ~blank
    if bad.any():
        example = text[bad].iloc[0]
        raise DataContractError(
            f"cannot parse '{example}' as a timestamp",
            file=path,
            column=column,
            rows=np.flatnonzero(bad),
        )
    naive = ~has_offset & ~blank
    if naive.any():
        # `utc=True` read naive text as UTC; re-read it in the configured zone instead.
        wall_clock = parsed.dt.tz_localize(None)
        return _localise(
            wall_clock.where(naive, parsed.dt.tz_localize(None)),
            path=path,
            column=column,
            timezone=timezone,
            naive=naive,
            aware_utc=parsed.where(~naive),
        )
    return parsed.dt.as_unit("ns")


def _localise(
    wall_clock: pd.Series,
    *,
    path: Path,
    column: str,
    timezone: str | None,
    naive: pd.Series,
    aware_utc: pd.Series | None = None,
) -> pd.Series:
    if timezone is None:
        raise DataContractError(
            "timestamps have no timezone",
            file=path,
            column=column,
            rows=np.flatnonzero(naive.to_numpy()),
            hint="add an offset (e.g. 2024-03-01T09:00:00Z) or set `timezone` in the config",
        )
    try:
        local = wall_clock.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    except (ValueError, TypeError) as exc:
        raise DataContractError(
            f"cannot localise to {timezone}: {exc}", file=path, column=column
        ) from exc
    unresolved = local.isna() & wall_clock.notna()
    if unresolved.any():
        raise DataContractError(
            f"wall-clock times that do not exist or are ambiguous in {timezone}",
            file=path,
            column=column,
            rows=np.flatnonzero(unresolved.to_numpy()),
        )
    result = local.dt.tz_convert("UTC")
    if aware_utc is not None:
        result = result.where(naive, aware_utc)
    return pd.Series(result.dt.as_unit("ns"))


def map_labels(values: pd.Series, config: DatasetConfig, path: Path, column: str) -> pd.Series:
    text = values.astype("str").str.strip().str.lower().where(values.notna(), "")
    won = {v.lower() for v in config.labels.won}
    lost = {v.lower() for v in config.labels.lost}
    still_open = {v.lower() for v in config.labels.open}
    result = pd.Series(pd.NA, index=values.index, dtype="Int8")
    result[text.isin(won)] = 1
    result[text.isin(lost)] = 0
    unknown = ~text.isin(won | lost | still_open)
    if unknown.any():
        counts = values[unknown].astype("str").str.strip().value_counts()
        listed = ", ".join(f"'{value}' ({count:,})" for value, count in counts.head(20).items())
        more = f" and {len(counts) - 20} more" if len(counts) > 20 else ""
        raise DataContractError(
            f"{len(counts)} label value(s) are neither won, lost nor open: {listed}{more}",
            file=path,
            column=column,
            rows=np.flatnonzero(unknown.to_numpy()),
            hint="list them under `labels` (won, lost or open) in the dataset config",
        )
    return result


def blank_missing_tokens(values: pd.Series, tokens: set[str], path: Path) -> pd.Series:
    """Text values trimmed, and `missing_tokens` made missing; what was blanked (other than
    empty cells) is logged, so a real value such as "unknown" is never dropped unseen."""
    if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
        return values
    stripped = values.astype("str").str.strip().where(values.notna())
    blanked = stripped.isin(tokens)
    shown = stripped[blanked & stripped.ne("")].value_counts()
    if len(shown):
        listed = ", ".join(f"'{token}' ({count:,})" for token, count in shown.items())
        logger.info("%s: column '%s': missing_tokens blanked %s", path.name, values.name, listed)
    return stripped.where(~blanked)


def _blank_missing_tokens(
    frame: pd.DataFrame, tokens: list[str], skip: set[str], path: Path
) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if column not in skip:
            out[column] = blank_missing_tokens(out[column], set(tokens), path)
    return out


def load_leads(path: Path, config: DatasetConfig) -> pd.DataFrame:
    """Leads in contract form: unique `lead_id`, UTC `created_at`, `converted` as Int8 (1/0/NA)."""
    columns = config.lead_columns
    if columns.lead_id is None:
        raise DataContractError(
            "leads with events need an id column: set dataset.lead_columns.lead_id", file=path
        )
    raw = read_table(path, config.separator)
    if raw.empty:
        raise DataContractError("no leads: the file has no rows", file=path)
    unknown_excluded = [c for c in config.exclude_columns if c not in raw.columns]
    if unknown_excluded:
        raise DataContractError(
            f"the dataset config excludes column '{unknown_excluded[0]}', which is not in the file",
            file=path,
        )
    raw = raw.drop(columns=config.exclude_columns)
    frame = _to_contract_columns(raw, columns.model_dump(), [LEAD_ID, CREATED_AT], path)

    frame[LEAD_ID] = unique_lead_ids(frame[LEAD_ID], path, columns.lead_id)
    frame[CREATED_AT] = parse_timestamps(
        frame[CREATED_AT],
        path=path,
        column=columns.created_at,
        timezone=config.timezone,
        required=True,
    )
    if CONVERTED in frame.columns:
        frame[CONVERTED] = map_labels(frame[CONVERTED], config, path, columns.converted)
    if CLOSED_AT in frame.columns:
        frame[CLOSED_AT] = parse_timestamps(
            frame[CLOSED_AT],
            path=path,
            column=columns.closed_at,
            timezone=config.timezone,
            required=False,
        )
        before = frame[CLOSED_AT] < frame[CREATED_AT]
        if before.any():
            raise DataContractError(
                f"closed before it was created (see '{columns.created_at}')",
                file=path,
                column=columns.closed_at,
                rows=np.flatnonzero(before.to_numpy()),
            )
    frame = _blank_missing_tokens(
        frame, config.missing_tokens, skip={LEAD_ID, CREATED_AT, CLOSED_AT}, path=path
    )
    return frame.reset_index(drop=True)


def load_events(
    path: Path,
    config: DatasetConfig,
    leads: pd.DataFrame,
    event_types: list[str],
) -> tuple[pd.DataFrame, EventsReport]:
    """Events in contract form, restricted to known leads; unknown leads and types are reported."""
    columns = config.event_columns
    frame = _to_contract_columns(
        read_table(path, config.separator), columns.model_dump(), [LEAD_ID, TS, EVENT_TYPE], path
    )

    frame[LEAD_ID] = normalise_ids(frame[LEAD_ID], path, columns.lead_id)
    if frame[LEAD_ID].dtype != leads[LEAD_ID].dtype:
        # One side numeric, the other text: compare as text so that matching ids still match.
        frame[LEAD_ID] = frame[LEAD_ID].astype("str")
        leads_ids = leads[LEAD_ID].astype("str")
    else:
        leads_ids = leads[LEAD_ID]
    frame[TS] = parse_timestamps(
        frame[TS], path=path, column=columns.ts, timezone=config.timezone, required=True
    )
    kinds = frame[EVENT_TYPE].astype("str").str.strip()
    missing_type = frame[EVENT_TYPE].isna() | kinds.eq("")
    if missing_type.any():
        raise DataContractError(
            "event types are missing",
            file=path,
            column=columns.event_type,
            rows=np.flatnonzero(missing_type.to_numpy()),
        )
    if config.event_type_map:
        kinds = kinds.replace(config.event_type_map)
    known_type = kinds.isin(event_types)
    unknown_types = kinds[~known_type].value_counts()

    known_lead = frame[LEAD_ID].isin(leads_ids)
    report = EventsReport(
        n_events=int((known_lead & known_type).sum()),
        n_unknown_leads=int(frame.loc[~known_lead, LEAD_ID].nunique()),
        n_unknown_lead_events=int((~known_lead).sum()),
        unknown_event_types={str(k): int(v) for k, v in unknown_types.items()},
    )
    if len(frame) and not known_type.any():
        found = ", ".join(f"'{k}'" for k in unknown_types.index[:8])
        raise DataContractError(
            f"none of the file's event types is one the features read: {found}",
            file=path,
            column=columns.event_type,
            hint="map them onto the vocabulary with dataset.event_type_map, or list them in "
            "features.event_types (see README, 'Bring your own data')",
        )
    if report.n_unknown_lead_events or report.unknown_event_types:
        logger.warning("%s: %s", path, report.summary())
    keep = known_lead & known_type
    out = frame.loc[keep].copy()
    out[LEAD_ID] = out[LEAD_ID].astype(leads[LEAD_ID].dtype)
    out[EVENT_TYPE] = pd.Categorical(kinds[keep], categories=event_types)
    return out.reset_index(drop=True), report
