"""The MQL policy: a probability threshold and A-D tiers, fixed on the calibration slice.

Calibrated probabilities tie a lot (isotonic calibration is a step function), so the policy
never splits a tie: a threshold or tier floor is always a probability the calibration slice
holds, every lead at it is on the same side, and the share aimed at is met as closely as whole
runs of tied leads allow. MQL and tiers come from the same cut points (see `MQLPolicy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.contract import DataContractError
from features.pointintime import NS_PER_DAY
from models.training.config import PolicyConfig

# The tier of leads below every floor.
LAST_TIER = "D"


@dataclass(frozen=True)
class MQLPolicy:
    """`mql` when the probability reaches `threshold`; tier = best tier whose floor it reaches.

    Consistency rule: `fit_policy` makes the threshold one of the tier floors (the floor nearest
    to it moves onto it), so a lead is MQL iff its tier is at or above `mql_tier`, the tier whose
    floor is the threshold. Both compare the same numbers with `>=`, so no MQL lead is ever in a
    worse tier than a lead that is not MQL.
    """

    threshold: float
    tier_floors: dict[str, float]  # best first, e.g. {"A": 0.41, "B": 0.22, "C": 0.09}
    method: str
    description: str
    details: dict[str, float] = field(default_factory=dict)

    @property
    def mql_tier(self) -> str:
        """The worst tier whose leads are MQL (LAST_TIER when every lead is)."""
        return str(self.tiers(np.array([self.threshold]))[0])

    def mql(self, probability: np.ndarray) -> np.ndarray:
        return np.asarray(probability) >= self.threshold

    def tiers(self, probability: np.ndarray) -> np.ndarray:
        probability = np.asarray(probability)
        tier = np.full(probability.shape, LAST_TIER, dtype=object)
        # Worst tier first, so a better tier overwrites.
        for name, floor in reversed(list(self.tier_floors.items())):
            tier[probability >= floor] = name
        return tier

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "tier_floors": self.tier_floors,
            "method": self.method,
            "description": self.description,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MQLPolicy:
        return cls(
            threshold=float(data["threshold"]),
            tier_floors={k: float(v) for k, v in data["tier_floors"].items()},
            method=str(data["method"]),
            description=str(data["description"]),
            details={k: float(v) for k, v in data.get("details", {}).items()},
        )


def _share_at_or_above(probability: np.ndarray, value: float) -> float:
    return float(np.mean(probability >= value))


def _threshold_for_share(probability: np.ndarray, share: float) -> float:
    """The probability whose list (every lead at or above it) comes closest to `share` of the
    leads without splitting a tie; the smaller list when two are as close, and at least the
    highest run of tied leads, so a list is never empty."""
    values, counts = np.unique(probability, return_counts=True)
    # Share of leads at or above each distinct value, highest value first.
    shares = np.cumsum(counts[::-1]) / len(probability)
    best = int(np.argmin(np.abs(shares - share)))  # argmin keeps the first: the smaller list
    return float(values[::-1][best])


def _with_threshold_as_floor(
    floors: dict[str, float], threshold: float, probability: np.ndarray
) -> dict[str, float]:
    """The floors with the one nearest to `threshold` (by share of leads above) moved onto it:
    better tiers' floors at least the threshold, worse tiers' at most, so MQL = a top set of
    tiers."""
    if not floors:
        return floors
    share = _share_at_or_above(probability, threshold)
    names = list(floors)
    nearest = min(
        range(len(names)),
        key=lambda i: abs(_share_at_or_above(probability, floors[names[i]]) - share),
    )
    moved = {}
    for i, name in enumerate(names):
        if i < nearest:
            moved[name] = max(floors[name], threshold)
        elif i == nearest:
            moved[name] = threshold
        else:
            moved[name] = min(floors[name], threshold)
    return moved


def fit_policy(
    probability: np.ndarray,
    rules_mql: np.ndarray,
    as_of_ns: np.ndarray,
    config: PolicyConfig,
) -> MQLPolicy:
    """Choose the threshold on calibration-slice probabilities (and the rules' MQLs there)."""
    if len(probability) == 0:
        raise DataContractError("cannot set an MQL threshold on an empty calibration slice")
    probability = np.asarray(probability, dtype=np.float64)
    floors = {
        name: _threshold_for_share(probability, share) for name, share in config.tier_shares.items()
    }
    details: dict[str, float] = {}
    target: float | None = None  # the MQL share aimed at, when the method sets one
    if config.method == "rules_volume":
        target = float(np.mean(rules_mql))
        if target == 0:
            raise DataContractError(
                "the rules make no MQL on the calibration slice, so their volume cannot be matched",
                hint="lower the rules' mql_threshold or choose another policy method",
            )
        description = f"same MQL volume as the rules ({target:.1%} of leads)"
        details["share"] = target
    elif config.method == "top_share":
        target = config.top_share
        description = f"top {config.top_share:.1%} of leads"
    elif config.method == "capacity_per_week":
        assert config.capacity_per_week is not None
        weeks = max(1.0, (as_of_ns.max() - as_of_ns.min()) / (7 * NS_PER_DAY))
        per_week = len(probability) / weeks
        target = min(1.0, config.capacity_per_week / per_week)
        description = f"{config.capacity_per_week} MQLs a week (~{target:.1%} of leads scored)"
        details.update(share=target, leads_per_week=per_week)
    elif config.method == "precision":
        assert config.target_precision is not None
        # Expected precision of "everyone above t" from calibrated probabilities: smoother than
        # the few observed outcomes at the very top, and honest when the model is calibrated.
        # Only at the end of a run of tied probabilities: a list takes a tie whole.
        ordered = np.sort(probability)[::-1]
        expected = np.cumsum(ordered) / np.arange(1, len(ordered) + 1)
        ends = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1]
        reaching = ends[expected[ends] >= config.target_precision]
        if len(reaching) == 0:
            raise DataContractError(
                f"no threshold reaches an MQL-to-won rate of {config.target_precision:.0%}",
                hint=f"the best leads convert at about {ordered[0]:.0%}",
            )
        threshold = float(ordered[reaching[-1]])
        description = f"MQL-to-won rate of at least {config.target_precision:.0%}"
    else:
        assert config.deal_value is not None and config.cost_per_contact is not None
        threshold = config.cost_per_contact / config.deal_value
        description = (
            f"expected value: {config.deal_value:g} x probability above a "
            f"{config.cost_per_contact:g} contact cost"
        )
    if target is not None:
        threshold = _threshold_for_share(probability, target)
    mql_share = _share_at_or_above(probability, threshold)
    tied_share = float(np.mean(probability == threshold))
    if target is not None and abs(mql_share - target) >= 0.0005:
        # Said, not hidden: ties kept the list from the share aimed at.
        description += (
            f"; {mql_share:.1%} on the calibration slice, the nearest a list comes without "
            "splitting tied probabilities"
        )
    details.update(mql_share=mql_share, tied_share=tied_share)
    return MQLPolicy(
        threshold=threshold,
        tier_floors=_with_threshold_as_floor(floors, threshold, probability),
        method=config.method,
        description=description,
        details=details,
    )
