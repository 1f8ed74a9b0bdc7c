"""Time-ordered splits of training snapshots: never at random, never learning from the future."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import DataContractError
from features.pointintime import NS_PER_DAY, as_utc_ns
from models.training.config import SplitConfig

SLICES = ("train", "validation", "calibration", "test")


@dataclass(frozen=True)
class TimeSplit:
    """Row positions of each slice, where each starts (in words), and the times that bound them
    (empty when rows are ordered by a number rather than a date)."""

    rows: dict[str, np.ndarray]
    first: dict[str, str]
    starts: dict[str, pd.Timestamp]
    n_embargoed: int

    def describe(self) -> dict[str, str]:
        return {
            name: f"{len(self.rows[name]):,} snapshots from {self.first[name]}" for name in SLICES
        }


def _day(ns: int) -> str:
    return f"{pd.Timestamp(ns, tz='UTC'):%Y-%m-%d}"


def _slices(
    keys: np.ndarray, resolved: np.ndarray | None, config: SplitConfig, span: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Rows of each slice for time-order `keys` (newest test last), and the embargoed rows.

    The test slice is the newest `test_share` of rows. Train, validation and calibration share
    out the rows before it in key order, in proportion to their shares. Rows whose label window
    ends after the start of the test slice (`resolved`, in key units; None: no embargo) are
    dropped, and so are train rows whose window ends after the start of validation: no learner
    learns from an outcome inside the slice that tunes or judges it. One key value never
    straddles two slices.
    """
    if len(keys) == 0:
        raise DataContractError("the training set is empty")
    sorted_keys = np.sort(keys, kind="stable")

    def cut(share_before: float) -> np.generic:
        position = min(len(sorted_keys) - 1, round(share_before * len(sorted_keys)))
        return sorted_keys[position]  # type: ignore[no-any-return]

    test_start = cut(1 - config.test_share)
    embargoed = np.zeros(len(keys), dtype=bool)
    if resolved is not None:
        embargoed = (keys < test_start) & (resolved > test_start)
    before = np.sort(keys[(keys < test_start) & ~embargoed], kind="stable")
    pre_share = 1 - config.test_share

    def cut_before(share_of_all: float) -> np.generic:
        if len(before) == 0:
            return test_start
        position = min(len(before) - 1, round(share_of_all / pre_share * len(before)))
        return before[position]  # type: ignore[no-any-return]

    calibration_start = cut_before(pre_share - config.calibration_share)
    validation_start = cut_before(pre_share - config.calibration_share - config.validation_share)
    if resolved is not None:
        # The rows learned from (train) must not see outcomes of the rows that tune them
        # (validation); the calibration rows are already held to the test's start above.
        embargoed |= (keys < validation_start) & (resolved > validation_start)
    kept = ~embargoed
    rows = {
        "train": np.flatnonzero((keys < validation_start) & kept),
        "validation": np.flatnonzero(
            (keys >= validation_start) & (keys < calibration_start) & kept
        ),
        "calibration": np.flatnonzero((keys >= calibration_start) & (keys < test_start) & kept),
        "test": np.flatnonzero(keys >= test_start),
    }
    empty = [name for name in SLICES if len(rows[name]) == 0]
    if empty:
        raise DataContractError(
            f"the {empty[0]} slice of the time split is empty",
            hint=f"{len(keys):,} rows {span}: use more data or other split shares",
        )
    return rows, embargoed


def split_by_time(
    as_of: pd.Series, horizon_days: int, config: SplitConfig, resolved: np.ndarray | None = None
) -> TimeSplit:
    """Cut snapshot times into train < validation < calibration < test.

    With the embargo on, snapshots whose label window (`resolved`: by default the end of each
    one's horizon) reaches past the start of the test slice are dropped, and so are train
    snapshots whose window reaches past the start of the validation slice: production, deployed
    then, could not have learned from them. (The end of the window, not the close date: dropping
    rows by when their outcome came would keep quick wins and drop slow losses, a biased
    sample.)
    """
    times = as_utc_ns(as_of)
    span = (
        f"from {_day(times.min())} to {_day(times.max())}, horizon {horizon_days} days"
        if len(times)
        else ""
    )
    if resolved is None:
        resolved = times + horizon_days * NS_PER_DAY
    rows, embargoed = _slices(times, resolved if config.embargo else None, config, span)
    starts = {name: pd.Timestamp(times[rows[name]].min(), tz="UTC") for name in SLICES}
    return TimeSplit(
        rows=rows,
        first={name: f"{starts[name]:%Y-%m-%d}" for name in SLICES},
        starts=starts,
        n_embargoed=int(embargoed.sum()),
    )


def split_by_order(order: np.ndarray, name: str, config: SplitConfig) -> TimeSplit:
    """The same cut for rows ordered by a number that follows time (e.g. a lead number).

    No embargo: without dates, how far a label window reaches is unknown.
    """
    keys = np.asarray(order)
    span = f"by {name} from {keys.min():,g} to {keys.max():,g}" if len(keys) else ""
    rows, _ = _slices(keys, None, config, span)
    return TimeSplit(
        rows=rows,
        first={slice_: f"{name} {keys[rows[slice_]].min():,g}" for slice_ in SLICES},
        starts={},
        n_embargoed=0,
    )
