"""Candidate learners, fitted on the same time slices, and the choice between them.

Each candidate is fitted on the train slice, its settings chosen on the validation slice
(LightGBM's rounds by early stopping, the logistic model's L2 strength by log loss). Then each is
calibrated the same way and the one whose calibrated probabilities have the lower log loss on the
newest part of the calibration slice (the newest rows before the test) wins. With the
walk-forward strategy, each candidate's calibration scores come from refits on older rows only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from models.scoring.learners import (
    BlendLearner,
    FeatureBins,
    Learner,
    LinearLearner,
    TreeLearner,
)
from models.training.calibration import (
    Calibrator,
    ScoreColumn,
    choose_calibrator,
    fit_calibrator,
)
from models.training.config import LightGBMConfig, LogisticConfig, TrainConfig

logger = logging.getLogger(__name__)

# Positive actions: with monotone constraints on, more of them never lowers the score.
_NEGATIVE_EVENTS = ("unsubscribe", "email_bounce")


@dataclass(frozen=True)
class TrainingData:
    """What every candidate learns from: the feature frame (pandas categoricals, as LightGBM
    takes them), the same as floats (categories as codes, NaN when missing), labels, weights."""

    frame: pd.DataFrame
    values: np.ndarray
    labels: np.ndarray
    weights: np.ndarray | None
    names: list[str]
    levels: dict[str, list[str]]  # categorical feature -> its levels

    @classmethod
    def of(
        cls, frame: pd.DataFrame, labels: np.ndarray, weights: np.ndarray | None
    ) -> TrainingData:
        values = np.empty(frame.shape, dtype=np.float64, order="F")
        levels: dict[str, list[str]] = {}
        for j, (name, column) in enumerate(frame.items()):
            if isinstance(column.dtype, pd.CategoricalDtype):
                codes = column.cat.codes.to_numpy()
                values[:, j] = np.where(codes < 0, np.nan, codes)
                levels[str(name)] = [str(v) for v in column.cat.categories]
            else:
                values[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return cls(frame, values, labels, weights, [str(n) for n in frame.columns], levels)

    def weights_of(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.weights is None else self.weights[rows]


@dataclass
class Candidate:
    """One learner kind: `fit(rows)` trains it on those rows with the settings chosen on the
    validation slice; `first` is the one trained on the train slice."""

    name: str
    fit: Callable[[np.ndarray], Learner]
    first: Learner
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- LightGBM


def lightgbm_params(config: LightGBMConfig, names: list[str], monotone: bool) -> dict[str, object]:
    params: dict[str, object] = {
        "objective": "binary",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "max_depth": config.max_depth,
        "min_child_samples": config.min_child_samples,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": config.bagging_freq,
        "lambda_l2": config.lambda_l2,
        "num_threads": config.num_threads,
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }
    if monotone:
        params["monotone_constraints"] = [
            1
            if ("_count_" in name and not name.startswith(_NEGATIVE_EVENTS))
            or name in ("engagement_decayed", "active_days")
            else 0
            for name in names
        ]
    return params


def fit_booster(
    params: dict[str, object], data: TrainingData, rows: np.ndarray, rounds: int
) -> TreeLearner:
    """A booster of `rounds` trees on `rows`."""
    dataset = lgb.Dataset(
        data.frame.iloc[rows], data.labels[rows], weight=data.weights_of(rows), free_raw_data=True
    )
    return TreeLearner(lgb.train(params, dataset, rounds))


def lightgbm_candidate(
    data: TrainingData, train: np.ndarray, valid: np.ndarray, config: LightGBMConfig
) -> Candidate:
    params = lightgbm_params(config, data.names, config.monotone_engagement)
    train_set = lgb.Dataset(
        data.frame.iloc[train], data.labels[train], weight=data.weights_of(train),
        free_raw_data=True,
    )  # fmt: skip
    valid_set = lgb.Dataset(
        data.frame.iloc[valid], data.labels[valid], weight=data.weights_of(valid),
        reference=train_set,
    )  # fmt: skip
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
        # Else the booster comes back cut to its best iteration, and the minimum is lost.
        keep_training_booster=True,
    )
    best = booster.best_iteration
    notes = []
    rounds = best
    if best < config.min_rounds:
        # Stopping after a handful of rounds leaves nearly one score for everyone; a
        # drifting validation slice often does that. Train the minimum and let the choice by
        # calibrated log loss on the newer rows decide whether it helps.
        rounds = min(config.min_rounds, booster.current_iteration())
        notes.append(f"early stopping chose {best} rounds; kept the minimum of {rounds}")
    first = TreeLearner(lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds)))
    loss = _log_loss(data.labels[valid], first.raw_scores(data.values[valid], config.num_threads))
    return Candidate(
        name="lightgbm",
        fit=lambda rows: fit_booster(params, data, rows, rounds),
        first=first,
        settings={"rounds": rounds, "early_stopping_best": best, "validation_log_loss": loss},
        notes=notes,
    )


# ---------------------------------------------------------------- logistic regression


def fit_bins(
    values: np.ndarray, names: list[str], levels: dict[str, list[str]], q: int
) -> list[FeatureBins]:
    """Bins of every feature from training rows: numeric ones at their quantiles (at most `q`
    bins), categories by level."""
    out = []
    for j, name in enumerate(names):
        if name in levels:
            out.append(FeatureBins(levels=len(levels[name])))
            continue
        column = values[:, j]
        finite = column[np.isfinite(column)]
        edges: np.ndarray = (
            np.unique(np.quantile(finite, np.linspace(0, 1, q + 1)[1:-1]))
            if len(finite)
            else np.zeros(0)
        )
        out.append(FeatureBins(edges=tuple(float(e) for e in edges)))
    return out


def fit_logistic(
    data: TrainingData, rows: np.ndarray, bins: list[FeatureBins], strength: float, max_iter: int
) -> LinearLearner:
    """An L2 logistic regression (scikit-learn) on the one-hot bins of `rows`."""
    empty = LinearLearner(
        bins=bins,
        weights=np.zeros(sum(b.count for b in bins)),
        intercept=0.0,
        centres=np.zeros(len(bins)),
        strength=strength,
    )
    design = empty.design(data.values[rows])
    n, width = design.shape
    onehot = sparse.csr_matrix(
        (np.ones(design.size), design.ravel(), np.arange(0, n * width + 1, width)),
        shape=(n, empty.weights.size),
    )
    model = LogisticRegression(C=strength, max_iter=max_iter)
    model.fit(onehot, data.labels[rows], sample_weight=data.weights_of(rows))
    weights = model.coef_[0].astype(np.float64)
    centres = weights[design].mean(axis=0)
    return LinearLearner(
        bins=bins,
        weights=weights,
        intercept=float(model.intercept_[0]),
        centres=centres,
        strength=strength,
    )


def logistic_candidate(
    data: TrainingData, train: np.ndarray, valid: np.ndarray, config: LogisticConfig
) -> Candidate:
    bins = fit_bins(data.values[train], data.names, data.levels, config.bins)
    losses: dict[float, float] = {}
    fitted: dict[float, LinearLearner] = {}
    for strength in config.strengths:
        fitted[strength] = fit_logistic(data, train, bins, strength, config.max_iter)
        losses[strength] = _log_loss(
            data.labels[valid], fitted[strength].raw_scores(data.values[valid])
        )
    best = min(losses, key=lambda s: losses[s])
    return Candidate(
        name="logistic",
        fit=lambda rows: fit_logistic(data, rows, bins, best, config.max_iter),
        first=fitted[best],
        settings={
            "C": best,
            "bins": int(fitted[best].weights.size),
            "validation_log_loss": losses[best],
        },
    )


def _log_loss(labels: np.ndarray, raw: np.ndarray) -> float:
    probability = np.clip(1 / (1 + np.exp(-raw)), 1e-6, 1 - 1e-6)
    return float(log_loss(labels, probability, labels=[0, 1]))


def candidates(
    data: TrainingData, train: np.ndarray, valid: np.ndarray, config: TrainConfig
) -> list[Candidate]:
    """Every candidate the config asks for, fitted on the train slice."""
    made = []
    for name in config.base_candidates:
        if name == "lightgbm":
            made.append(lightgbm_candidate(data, train, valid, config.lightgbm))
        else:
            made.append(logistic_candidate(data, train, valid, config.logistic))
        logger.info("candidate %s: %s", name, made[-1].settings)
    return made


def walk_forward(
    candidate: Candidate,
    data: TrainingData,
    rows: np.ndarray,
    keys: np.ndarray,
    resolved: np.ndarray | None,
    config: TrainConfig,
) -> tuple[Learner, np.ndarray, np.ndarray]:
    """A learner on all `rows` (time-ordered by `keys`), and raw scores for the newest of
    them, each time block scored by a learner trained only on the rows before it whose label
    was known by the block's start (`resolved`, in key units; None: all of them):
    (learner, scored rows, raw)."""
    first = int(len(rows) * (1 - config.walk_forward_share))
    blocks = np.array_split(np.arange(first, len(rows)), config.walk_forward_folds)
    raw = []
    for block in blocks:
        if not len(block):
            continue
        older = rows[: block[0]]
        if resolved is not None:
            older = older[resolved[older] <= keys[rows[block[0]]]]
        raw.append(candidate.fit(older).raw_scores(data.values[rows[block]]))
    return candidate.fit(rows), rows[first:], np.concatenate(raw)


@dataclass(frozen=True)
class CandidateResult:
    """A candidate after calibration: the learner that would be served, its scores of the
    calibration rows (never learned from), its calibrator, and `choice_loss`: the log loss of
    those scores on all calibration rows after a sigmoid fit there (two parameters, so hardly
    flattered, and every one of the newest rows before the test counts)."""

    name: str
    settings: dict[str, Any]
    notes: list[str]
    learner: Learner
    calibration_rows: np.ndarray
    raw: np.ndarray
    calibrator: Calibrator
    losses: dict[str, float]  # per calibration method, on the newest calibration rows
    choice_loss: float

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "settings": self.settings,
            "choice_log_loss": self.choice_loss,
            "calibration": self.calibrator.method,
            "notes": list(self.notes),
        }


def calibrated(
    name: str,
    settings: dict[str, Any],
    notes: list[str],
    learner: Learner,
    rows: np.ndarray,
    raw: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    config: TrainConfig,
) -> CandidateResult:
    """Calibrate a candidate's scores of the calibration `rows` (time `order` among them)."""
    frame = pd.DataFrame({"raw_score": raw})
    scores = ScoreColumn().fit(frame, labels)
    calibrator, losses = choose_calibrator(
        scores, frame, labels, list(config.calibration_methods), order,
        config.calibration_newest_share,
    )  # fmt: skip
    platt, _ = fit_calibrator(scores, frame, labels, "sigmoid")
    choice = float(log_loss(labels, platt.apply(raw), labels=[0, 1]))
    return CandidateResult(name, settings, notes, learner, rows, raw, calibrator, losses, choice)


def blend(
    tree: CandidateResult, linear: CandidateResult, labels: np.ndarray, order: np.ndarray,
    config: TrainConfig,
) -> CandidateResult:  # fmt: skip
    """The mean of LightGBM's and the logistic model's raw scores, from their own fits."""
    assert isinstance(tree.learner, TreeLearner) and isinstance(linear.learner, LinearLearner)
    return calibrated(
        "blend",
        {"lightgbm": tree.settings, "logistic": linear.settings},
        [*tree.notes, *linear.notes],
        BlendLearner(tree.learner, linear.learner),
        tree.calibration_rows,
        (tree.raw + linear.raw) / 2,
        labels,
        order,
        config,
    )


def choice_reason(fits: list[CandidateResult], chosen: CandidateResult) -> str:
    """Why `chosen` won, in one line."""
    others = [fit for fit in fits if fit is not chosen]
    if not others:
        return "the only candidate"
    against = ", ".join(f"{fit.name} {fit.choice_loss:.4f}" for fit in others)
    return f"log loss {chosen.choice_loss:.4f} on the newest rows before the test vs {against}"
