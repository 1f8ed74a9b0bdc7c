"""The MQL policy: a probability threshold and A-D tiers, fixed on the calibration slice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from features.contract import DataContractError
from features.pointintime import NS_PER_DAY
from models.training.config import PolicyConfig


@dataclass(frozen=True)
class MQLPolicy:
    """`mql` when the probability reaches `threshold`; tier = best tier whose floor it reaches."""

    threshold: float
    tier_floors: dict[str, float]  # best first, e.g. {"A": 0.41, "B": 0.22, "C": 0.09}
    method: str
    description: str
    details: dict[str, float] = field(default_factory=dict)

    def mql(self, probability: np.ndarray) -> np.ndarray:
        return np.asarray(probability) >= self.threshold

    def tiers(self, probability: np.ndarray) -> np.ndarray:
        probability = np.asarray(probability)
        tier = np.full(probability.shape, "D", dtype=object)
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


def _threshold_for_share(probability: np.ndarray, share: float) -> float:
    """The probability above which `share` of the leads lie."""
    ordered = np.sort(probability)[::-1]
    k = max(1, min(len(ordered), round(share * len(ordered))))
    return float(ordered[k - 1])


def fit_policy(
    probability: np.ndarray,
    rules_mql: np.ndarray,
    as_of_ns: np.ndarray,
    config: PolicyConfig,
) -> MQLPolicy:
    """Choose the threshold on calibration-slice probabilities (and the rules' MQLs there)."""
    if len(probability) == 0:
        raise DataContractError("cannot set an MQL threshold on an empty calibration slice")
    floors = {
        name: _threshold_for_share(probability, share) for name, share in config.tier_shares.items()
    }
    details: dict[str, float] = {}
    if config.method == "rules_volume":
        share = float(np.mean(rules_mql))
        if share == 0:
            raise DataContractError(
                "the rules make no MQL on the calibration slice, so their volume cannot be matched",
                hint="lower the rules' mql_threshold or choose another policy method",
            )
        threshold = _threshold_for_share(probability, share)
        description = f"same MQL volume as the rules ({share:.1%} of leads)"
        details["share"] = share
    elif config.method == "top_share":
        threshold = _threshold_for_share(probability, config.top_share)
        description = f"top {config.top_share:.1%} of leads"
    elif config.method == "capacity_per_week":
        assert config.capacity_per_week is not None
        weeks = max(1.0, (as_of_ns.max() - as_of_ns.min()) / (7 * NS_PER_DAY))
        per_week = len(probability) / weeks
        share = min(1.0, config.capacity_per_week / per_week)
        threshold = _threshold_for_share(probability, share)
        description = f"{config.capacity_per_week} MQLs a week (~{share:.1%} of leads scored)"
        details.update(share=share, leads_per_week=per_week)
    elif config.method == "precision":
        assert config.target_precision is not None
        # Expected precision of "everyone above t" from calibrated probabilities: smoother than
        # the few observed outcomes at the very top, and honest when the model is calibrated.
        ordered = np.sort(probability)[::-1]
        expected = np.cumsum(ordered) / np.arange(1, len(ordered) + 1)
        reaching = np.flatnonzero(expected >= config.target_precision)
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
    return MQLPolicy(
        threshold=threshold,
        tier_floors=floors,
        method=config.method,
        description=description,
        details=details,
    )
