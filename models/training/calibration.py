"""Calibration of raw LightGBM scores, chosen and fitted with scikit-learn, applied with numpy.

scikit-learn fits the calibrator (`CalibratedClassifierCV(FrozenEstimator(model))`); its fitted
parameters are copied into `Calibrator`, which applies them in microseconds per row. A test
checks both give the same probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss

Method = Literal["isotonic", "sigmoid"]
PROBABILITY_FLOOR = 1e-4


class _RawScoreClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A binary classifier seen by scikit-learn through its raw log-odds `decision_function`.

    Calibrating the raw log-odds (not the sigmoid of it) is what Platt scaling assumes.
    """

    def fit(self, features: pd.DataFrame, labels: np.ndarray) -> _RawScoreClassifier:
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, features: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-self.decision_function(features)))
        return np.column_stack([1 - p, p])

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return (self.decision_function(features) > 0).astype(int)


class ScoreColumn(_RawScoreClassifier):
    """Raw scores computed elsewhere (e.g. out of fold): the first column of the input."""

    def decision_function(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(features.iloc[:, 0], dtype=np.float64)


@dataclass(frozen=True)
class Calibrator:
    """Maps raw scores to calibrated probabilities: isotonic steps or a sigmoid."""

    method: Method
    x: tuple[float, ...] = ()  # isotonic: raw-score thresholds
    y: tuple[float, ...] = ()  # isotonic: probabilities at the thresholds
    a: float = 0.0  # sigmoid: p = 1 / (1 + exp(a * raw + b))
    b: float = 0.0

    def apply(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            # Same as IsotonicRegression(out_of_bounds="clip"): flat beyond the ends.
            probability = np.interp(raw, self.x, self.y)
        else:
            probability = 1.0 / (1.0 + np.exp(self.a * raw + self.b))
        # No lead is certain: an isotonic step at exactly 0 or 1 would be an overconfident claim.
        clipped: np.ndarray = np.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        return clipped

    @classmethod
    def from_sklearn(cls, calibrated: CalibratedClassifierCV) -> Calibrator:
        fitted = calibrated.calibrated_classifiers_[0].calibrators[0]
        if isinstance(fitted, IsotonicRegression):
            return cls(
                method="isotonic",
                x=tuple(float(v) for v in fitted.X_thresholds_),
                y=tuple(float(v) for v in fitted.y_thresholds_),
            )
        return cls(method="sigmoid", a=float(fitted.a_), b=float(fitted.b_))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "x": list(self.x),
            "y": list(self.y),
            "a": self.a,
            "b": self.b,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        return cls(
            method=data["method"],
            x=tuple(data.get("x", ())),
            y=tuple(data.get("y", ())),
            a=float(data.get("a", 0.0)),
            b=float(data.get("b", 0.0)),
        )


def fit_calibrator(
    model: _RawScoreClassifier, features: pd.DataFrame, labels: np.ndarray, method: Method
) -> tuple[Calibrator, CalibratedClassifierCV]:
    """Fit one calibration method on a later slice the model never saw."""
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method=method)
    calibrated.fit(features, labels)
    return Calibrator.from_sklearn(calibrated), calibrated


def choose_calibrator(
    model: _RawScoreClassifier,
    features: pd.DataFrame,
    labels: np.ndarray,
    methods: list[Method],
    order: np.ndarray,
    newest_share: float = 1.0,
) -> tuple[Calibrator, dict[str, float]]:
    """Pick the method with the lower log loss on the newer 30% of the calibration slice, fitted
    on the older 70% (time order given by `order`), then refit it on the newest `newest_share`
    of the slice (all of it by default)."""
    cut = int(len(order) * 0.7)
    older, newer = order[:cut], order[cut:]
    losses: dict[str, float] = {}
    for method in methods:
        calibrator, _ = fit_calibrator(model, features.iloc[older], labels[older], method)
        probability = calibrator.apply(model.decision_function(features.iloc[newer]))
        losses[method] = float(log_loss(labels[newer], probability, labels=[0, 1]))
    best = min(losses, key=lambda m: losses[m])
    kept = order[int(len(order) * (1 - newest_share)) :]
    calibrator, _ = fit_calibrator(
        model,
        features.iloc[kept],
        labels[kept],
        best,  # type: ignore[arg-type]
    )
    return calibrator, losses
