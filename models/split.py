"""Time-ordered splits of training snapshots: never at random, never learning from the future."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import DataContractError
from features.pointintime import NS_PER_DAY, as_utc_ns
from models.config import SplitConfig

SLICES = ("train", "validation", "calibration", "test")


@dataclass(frozen=True)
class TimeSplit:
    """Row positions of each slice and the times that bound them."""

    rows: dict[str, np.ndarray]
    starts: dict[str, pd.Timestamp]
    n_embargoed: int

    def describe(self) -> dict[str, str]:
        return {
            name: f"{len(self.rows[name]):,} snapshots from {self.starts[name]:%Y-%m-%d}"
            for name in SLICES
        }


def _day(ns: int) -> str:
    return f"{pd.Timestamp(ns, tz='UTC'):%Y-%m-%d}"


def split_by_time(as_of: pd.Series, horizon_days: int, config: SplitConfig) -> TimeSplit:
    """Cut snapshot times into train < validation < calibration < test.

    The test slice is the newest `test_share` of snapshots. With the embargo on, snapshots before
    it whose horizon reaches into it are dropped: when the model is deployed at the first test
    time, their labels are not known yet. Train, validation and calibration then share out the
    rest in time order, in proportion to their shares.
    """
    times = as_utc_ns(as_of)
    if len(times) == 0:
        raise DataContractError("the training set is empty")
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]

    def cut(share_before: float) -> int:
        # The first time at or after the quantile, so one moment never straddles two slices.
        position = min(len(sorted_times) - 1, round(share_before * len(sorted_times)))
        return int(sorted_times[position])

    test_start = cut(1 - config.test_share)
    embargoed = np.zeros(len(times), dtype=bool)
    if config.embargo:
        embargoed = (times < test_start) & (times + horizon_days * NS_PER_DAY > test_start)
    # The slices before the test period share out what the embargo leaves, newest last.
    before = sorted_times[(sorted_times < test_start) & ~embargoed[order]]
    pre_share = 1 - config.test_share

    def cut_before(share_of_all: float) -> int:
        if len(before) == 0:
            return test_start
        position = min(len(before) - 1, round(share_of_all / pre_share * len(before)))
        return int(before[position])

    calibration_start = cut_before(pre_share - config.calibration_share)
    validation_start = cut_before(pre_share - config.calibration_share - config.validation_share)
    bounds = {
        "train": (np.iinfo(np.int64).min, validation_start),
        "validation": (validation_start, calibration_start),
        "calibration": (calibration_start, test_start),
        "test": (test_start, np.iinfo(np.int64).max),
    }
    rows = {
        name: np.flatnonzero((times >= low) & (times < high) & ~embargoed)
        for name, (low, high) in bounds.items()
    }
    empty = [name for name in SLICES if len(rows[name]) == 0]
    if empty:
        raise DataContractError(
            f"the {empty[0]} slice of the time split is empty",
            hint=(
                f"{len(times):,} snapshots from {_day(sorted_times[0])} to "
                f"{_day(sorted_times[-1])}, horizon "
                f"{horizon_days} days: use data over a longer period, a shorter horizon, "
                "or other split shares"
            ),
        )
    starts = {name: pd.Timestamp(times[rows[name]].min(), tz="UTC") for name in SLICES}
    return TimeSplit(rows=rows, starts=starts, n_embargoed=int(embargoed.sum()))
