"""The publish gate: what a trained model must show on the newest holdout to become `champion`.

1. It is not collapsed: its scores differ between leads and rank them better than chance. A
   collapsed model is refused outright (not registered).
2. It beats the marketer's rules on the same leads, on both ROC AUC and log loss, the rules
   judged by their calibrated probability (`rules_probability`: the points mapped to a
   probability on the calibration slice), so both are scored on equal terms.
3. It is not worse than the current champion on the same leads (within a tolerance).

The first model under a name passes the same gate: "first" earns nothing by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
# A model whose holdout AUC is below this ranks leads about as well as a coin.
MIN_AUC = 0.55
# Fewer distinct probabilities than this on the holdout: one score (or two) for everyone.
MIN_DISTINCT_SCORES = 3


@dataclass(frozen=True)
class HoldoutMetrics:
    roc_auc: float
    log_loss: float

    @classmethod
    def of(cls, labels: np.ndarray, probability: np.ndarray) -> HoldoutMetrics:
        return cls(
            roc_auc=float(roc_auc_score(labels, probability)),
            log_loss=float(log_loss(labels, probability, labels=[0, 1])),
        )

    def versus(self, other: HoldoutMetrics, name: str) -> str:
        return (
            f"AUC {self.roc_auc:.4f} vs {other.roc_auc:.4f}, "
            f"log loss {self.log_loss:.4f} vs {other.log_loss:.4f} for {name}"
        )


@dataclass(frozen=True)
class Decision:
    """`alias` is champion, challenger, or None when the model is refused (not registered)."""

    alias: Literal["champion", "challenger"] | None
    reason: str

    @property
    def refused(self) -> bool:
        return self.alias is None


def collapsed(labels: np.ndarray, probability: np.ndarray) -> str | None:
    """Why a model's holdout scores are no model at all, or None."""
    distinct = len(np.unique(np.round(probability, 6)))
    if distinct < MIN_DISTINCT_SCORES:
        return (
            f"collapsed: {distinct} distinct score(s) over {len(probability):,} holdout leads "
            f"(e.g. {probability[0]:.3f} for every lead)"
        )
    auc = float(roc_auc_score(labels, probability))
    if auc < MIN_AUC:
        return f"collapsed: holdout ROC AUC {auc:.3f}, no better than chance (needs {MIN_AUC})"
    return None


def decide(
    labels: np.ndarray,
    probability: np.ndarray,
    rules_probability: np.ndarray,
    champion: tuple[str, HoldoutMetrics] | None,
    tolerance: float,
) -> Decision:
    """The gate, on the newest holdout's labels and the three sets of probabilities."""
    why_collapsed = collapsed(labels, probability)
    if why_collapsed is not None:
        return Decision(None, why_collapsed)
    model = HoldoutMetrics.of(labels, probability)
    rules = HoldoutMetrics.of(labels, rules_probability)
    if not (model.roc_auc > rules.roc_auc and model.log_loss < rules.log_loss):
        return Decision(
            CHALLENGER,
            f"does not beat the rules on the newest holdout: {model.versus(rules, 'the rules')}",
        )
    against_rules = f"beats the rules ({model.versus(rules, 'the rules')})"
    if champion is None:
        return Decision(CHAMPION, f"first model under this name; {against_rules}")
    version, old = champion
    not_worse = (
        model.roc_auc >= old.roc_auc - tolerance and model.log_loss <= old.log_loss + tolerance
    )
    comparison = model.versus(old, f"champion v{version}")
    if not_worse:
        return Decision(CHAMPION, f"{against_rules}; not worse than the champion: {comparison}")
    return Decision(CHALLENGER, f"worse than the current champion: {comparison}")
