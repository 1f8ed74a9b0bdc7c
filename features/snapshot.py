"""Snapshot exports: one row per lead, behaviour already aggregated into columns, no event log.

Many CRM and marketing-automation exports look like this (visits, time on site, last activity,
source, occupation ...). The dataset config names the id, the label, the columns to leave out,
which columns are fit and which behaviour, and a column that follows time; the loader turns the
file into a contract leads table whose feature columns are typed once (numbers or text) and a
`FeatureConfig` in snapshot mode, so the same builder, scorer and rules serve it.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.config import DatasetConfig, FeatureConfig
from features.contract import (
    DataContractError,
    blank_missing_tokens,
    map_labels,
    parse_timestamps,
    read_table,
    shown_value,
    unique_lead_ids,
)
from features.pointintime import AS_OF, as_utc_ns
from features.vocabulary import CONVERTED, EVENT_TYPE, LEAD_ID, TS


@dataclass(frozen=True)
class SnapshotTable:
    """A snapshot export in contract form.

    `leads` holds `lead_id`, `converted` (Int8, missing for open leads, absent without a label
    column), `as_of` (when the row describes the lead) and the feature columns; `order` is the
    time-order key of each row (ns for a date column, the number otherwise).
    """

    leads: pd.DataFrame
    order: np.ndarray
    order_column: str | None
    features: FeatureConfig
    as_of_source: str  # where `as_of` comes from, in words (for reports)
    # What the label means: an export's outcome column says whether the lead converted, ever
    # (by when the export was pulled), not within a horizon.
    label_meaning: str = "converted, ever (as recorded when the export was pulled)"

    @property
    def labelled(self) -> pd.DataFrame:
        """The rows with a known outcome (won or lost)."""
        return self.leads[self.leads[CONVERTED].notna()] if CONVERTED in self.leads else self.leads


logger = logging.getLogger(__name__)


def empty_events(lead_ids: pd.Series) -> pd.DataFrame:
    """An event log with no events, typed like `lead_ids`: what snapshot mode passes where the
    event log goes."""
    return pd.DataFrame(
        {
            LEAD_ID: pd.Series([], dtype=lead_ids.dtype),
            TS: pd.Series([], dtype="datetime64[ns, UTC]"),
            EVENT_TYPE: pd.Series([], dtype="str"),
        }
    )


def _missing_column(name: str, role: str, columns: pd.Index, path: Path) -> DataContractError:
    close = difflib.get_close_matches(name, [str(c) for c in columns], n=3)
    hint = f"did you mean {', '.join(map(repr, close))}?" if close else None
    return DataContractError(
        f"the dataset config names '{name}' as {role}, which is not in the file",
        file=path,
        hint=hint or f"columns present: {', '.join(map(str, columns[:12]))}",
    )


def _as_numbers(values: pd.Series) -> pd.Series | None:
    """The column as float64 when every present value is a number, else None."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    if bool((numbers.isna() & values.notna()).any()):
        return None
    return numbers


def _feature_columns(raw: pd.DataFrame, dataset: DatasetConfig, path: Path) -> list[str]:
    # The id, the outcome and its close date are never features (the close date is written
    # with the outcome).
    reserved = {
        dataset.lead_columns.lead_id or "",
        dataset.lead_columns.converted,
        dataset.lead_columns.closed_at,
    }
    if dataset.order_column is not None:
        reserved.add(dataset.order_column)
    named = [*dataset.fit_columns, *dataset.behaviour_columns]
    for name, role in [
        *((c, "a fit column") for c in dataset.fit_columns),
        *((c, "a behaviour column") for c in dataset.behaviour_columns),
        *((c, "a column to exclude") for c in dataset.exclude_columns),
    ]:
        if name not in raw.columns:
            raise _missing_column(name, role, raw.columns, path)
    clash = [c for c in named if c in reserved or c in dataset.exclude_columns]
    if clash:
        raise DataContractError(
            f"'{clash[0]}' is the id, the label, its close date, the order or an excluded column "
            "and cannot be a feature",
            file=path,
        )
    duplicated = [c for c in named if named.count(c) > 1]
    if duplicated:
        raise DataContractError(f"'{duplicated[0]}' is listed twice as a feature", file=path)
    if named:
        return named
    return [str(c) for c in raw.columns if c not in reserved and c not in dataset.exclude_columns]


def _order(
    raw: pd.DataFrame, dataset: DatasetConfig, path: Path
) -> tuple[np.ndarray, pd.Series | None]:
    """Time-order key per row, and the row times when the order column is a date."""
    column = dataset.order_column
    if column is None:
        logger.warning("no order_column in the dataset config: file row order is taken as time")
        return np.arange(len(raw), dtype=np.int64), None
    if column not in raw.columns:
        raise _missing_column(column, "the order column", raw.columns, path)
    values = raw[column]
    numbers = _as_numbers(values.where(values.astype("str").str.strip() != ""))
    if numbers is not None:
        if bool(numbers.isna().any()):
            raise DataContractError(
                "order values are missing",
                file=path,
                column=column,
                rows=np.flatnonzero(numbers.isna().to_numpy()),
            )
        return numbers.to_numpy(dtype=np.float64), None
    present = values.notna() & (values.astype("str").str.strip() != "")
    not_numbers = present & pd.to_numeric(values, errors="coerce").isna()
    if int(not_numbers.sum()) * 2 < int(present.sum()):
        # Mostly numbers: the few that are not are the mistake, not the numbers as dates.
        raise DataContractError(
            f"order value {shown_value(values[not_numbers].iloc[0])} is not a number, as the "
            "others are",
            file=path,
            column=column,
            rows=np.flatnonzero(not_numbers.to_numpy()),
        )
    times = parse_timestamps(
        values, path=path, column=column, timezone=dataset.timezone, required=True
    )
    return as_utc_ns(times), times


def load_snapshot_table(
    path: Path,
    dataset: DatasetConfig,
    base: FeatureConfig,
    *,
    trained: FeatureConfig | None = None,
    require_label: bool = True,
) -> SnapshotTable:
    """Read and check a snapshot export; errors name the file, the column and example rows.

    Column types are read from the data for training; to score with a trained model pass its
    `trained` feature config, whose columns and types then rule.
    """
    raw = read_table(path, dataset.separator)
    if raw.empty:
        raise DataContractError("no leads: the file has no rows", file=path)
    tokens = set(dataset.missing_tokens)
    id_column, label_column = dataset.lead_columns.lead_id, dataset.lead_columns.converted
    if id_column is not None and id_column not in raw.columns:
        raise _missing_column(id_column, "the lead id", raw.columns, path)
    if require_label and label_column not in raw.columns:
        raise _missing_column(label_column, "the label", raw.columns, path)
    for column in dataset.categorical_columns:
        if column not in raw.columns:
            raise _missing_column(column, "a categorical column", raw.columns, path)

    ids = (
        pd.Series(np.arange(1, len(raw) + 1), name="row")  # no id column: row numbers
        if id_column is None
        else unique_lead_ids(raw[id_column], path, id_column)
    )
    leads = pd.DataFrame({LEAD_ID: ids})
    if label_column in raw.columns:
        leads[CONVERTED] = map_labels(raw[label_column], dataset, path, label_column)
    order, times = _order(raw, dataset, path)
    # The row describes the lead as of its date, or as of the export when the config says when
    # that was. Never the file's modification time: copying a file changes it.
    if times is not None:
        moments, as_of_source = times, f"the dates in '{dataset.order_column}'"
    elif dataset.exported_at is not None:
        moments = pd.Series(pd.Timestamp(dataset.exported_at), index=leads.index)
        as_of_source = f"dataset.exported_at ({dataset.exported_at:%Y-%m-%d})"
    else:
        moments = pd.Series(pd.Timestamp(datetime.now(UTC)), index=leads.index)
        as_of_source = "the time the file was read (no dates; set dataset.exported_at)"
    leads[AS_OF] = pd.to_datetime(moments, utc=True).dt.as_unit("ns")

    if trained is not None:
        wanted = [*trained.categorical_columns, *trained.numeric_columns]
        absent = [c for c in wanted if c not in raw.columns]
        if absent:
            raise _missing_column(absent[0], "a model feature", raw.columns, path)
        for column in wanted:  # the kernel checks the numbers
            leads[column] = blank_missing_tokens(raw[column], tokens, path)
        return SnapshotTable(leads, order, dataset.order_column, trained, as_of_source)

    categorical: list[str] = []
    numeric: list[str] = []
    for column in _feature_columns(raw, dataset, path):
        values = blank_missing_tokens(raw[column], tokens, path)
        # Number-coded categories (region codes, yes/no as 1/0) stay categories when the config
        # says so.
        numbers = None if column in dataset.categorical_columns else _as_numbers(values)
        if numbers is None:
            categorical.append(column)
            leads[column] = values
        else:
            numeric.append(column)
            leads[column] = numbers
    features = base.model_copy(
        update={
            "source": "snapshot",
            "categorical_columns": categorical,
            "numeric_columns": numeric,
            "behaviour_columns": list(dataset.behaviour_columns),
            "title_column": None,
            "email_column": None,
            "account_column": None,
            "event_types": [],
            "category_levels": None,
        }
    )
    logger.info(
        "%s: %d leads, %d categorical and %d numeric feature columns",
        path.name,
        len(leads),
        len(categorical),
        len(numeric),
    )
    return SnapshotTable(leads, order, dataset.order_column, features, as_of_source)
