"""Drift across the time slices of a training run, shown rather than hidden.

For each slice: its size, the span of time (or order) it covers and its conversion rate; the
snapshots the embargo dropped; and warnings when the conversion rate of a later slice is far from
the train slice's, or when a feature's distribution on the test slice has moved from the train
slice's (PSI, as `leadscore monitor` reads it: above 0.25 is a major shift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from models.reports.monitoring import (
    PSI_MAJOR,
    population_stability_index,
    reference_distribution,
)
from models.training.split import SLICES, TimeSplit

# A later slice converting at more than this many times the train slice's rate (or less than
# its inverse) is a drift the model was not trained for.
RATE_RATIO_WARNING = 1.5
# Features named in the warning at most.
_SHOWN_FEATURES = 5


@dataclass(frozen=True)
class SliceSummary:
    name: str
    rows: int
    first: str
    last: str
    conversion_rate: float


@dataclass(frozen=True)
class DriftReport:
    slices: list[SliceSummary]
    n_embargoed: int
    feature_psi: dict[str, float]  # test slice against train slice, per feature
    warnings: list[str]

    def lines(self) -> list[str]:
        """One line per slice, then the embargo, for a terminal or a log."""
        out = [
            f"{s.name:<11} {s.rows:>9,} rows  {s.first} .. {s.last}  "
            f"converted {s.conversion_rate:.1%}"
            for s in self.slices
        ]
        out.append(
            f"{'embargo':<11} {self.n_embargoed:>9,} rows kept from tuning and calibration "
            "(their label window reaches into a later slice)"
        )
        return out

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        return {
            **{f"slice_rate_{s.name}": s.conversion_rate for s in self.slices},
            **{f"slice_rows_{s.name}": float(s.rows) for s in self.slices},
            "embargoed_rows": float(self.n_embargoed),
        }


def drift_report(
    split: TimeSplit,
    order: np.ndarray,
    describe_order: Callable[[float], str],
    labels: np.ndarray,
    values: np.ndarray,
    names: list[str],
) -> DriftReport:
    """The slices of `split` (time keys `order`, written with `describe_order`) and how far the
    later ones moved from the train slice."""
    slices = []
    for name in SLICES:
        rows = split.rows[name]
        keys = order[rows]
        slices.append(
            SliceSummary(
                name=name,
                rows=len(rows),
                first=describe_order(float(keys.min())),
                last=describe_order(float(keys.max())),
                conversion_rate=float(labels[rows].mean()),
            )
        )
    warnings = []
    base = slices[0]
    for later in slices[1:]:
        ratio = later.conversion_rate / max(base.conversion_rate, 1e-12)
        if ratio > RATE_RATIO_WARNING or ratio < 1 / RATE_RATIO_WARNING:
            warnings.append(
                f"the conversion rate drifts: {later.conversion_rate:.1%} in the {later.name} "
                f"slice vs {base.conversion_rate:.1%} in the train slice ({ratio:.1f}x); "
                "consider train.recency_half_life_share or train.calibration_newest_share"
            )
    train, test = split.rows["train"], split.rows["test"]
    psi = {}
    for j, name in enumerate(names):
        column = values[train, j]
        if np.isnan(column).all():
            continue
        psi[name] = population_stability_index(reference_distribution(column), values[test, j])
    moved = sorted((n for n in psi if psi[n] > PSI_MAJOR), key=lambda n: -psi[n])
    if moved:
        listed = ", ".join(f"{n} (PSI {psi[n]:.2f})" for n in moved[:_SHOWN_FEATURES])
        more = f" and {len(moved) - _SHOWN_FEATURES} more" if len(moved) > _SHOWN_FEATURES else ""
        warnings.append(f"features shifted between the train and test slices: {listed}{more}")
    return DriftReport(slices, split.n_embargoed, psi, warnings)
