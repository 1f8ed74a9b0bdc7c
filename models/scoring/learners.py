"""The learned part of a scorer: feature rows -> raw log-odds, and each feature's share of it.

Three kinds, behind one interface, so that whichever wins at training goes through the same
kernel, calibration, policy and reasons:

- `TreeLearner`: a LightGBM booster. Its contributions come from `treecontrib`'s tables
  (exactly LightGBM's `pred_contrib`); its `raw_scores` are LightGBM's own prediction, which
  training uses and which a loaded model's tables are checked against.
- `LinearLearner`: an L2 logistic regression (scikit-learn) on binned features: every numeric
  feature cut at training quantiles, every category one level, missing its own bin. The raw score
  is the intercept plus one weight per feature, so a lead's reasons are its terms, centred on
  their training average (for an additive model that is its SHAP value).
- `BlendLearner`: the mean of both raw scores; its contributions are the mean of theirs, so they
  still add up to its score.

`contributions` returns (rows, features + 1), the bias last, rows summing to `raw_scores`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import lightgbm as lgb
import numpy as np

from models.scoring.treecontrib import ContributionTables, build_tables

LearnerKind = Literal["lightgbm", "logistic", "blend"]
# Rows binned at once by the logistic model.
_DESIGN_ROWS = 16_384
# Rows `importance` reads at most: enough to rank features.
_IMPORTANCE_ROWS = 2_000
_BOOSTER_FILE = "booster.txt"
_LINEAR_FILE = "linear.json"


class LearnerMismatch(ValueError):
    """A saved learner does not fit the feature layout it is loaded with."""


class Learner(Protocol):
    kind: LearnerKind

    def raw_scores(self, values: np.ndarray, threads: int = 1) -> np.ndarray: ...

    def contributions(self, values: np.ndarray) -> np.ndarray: ...

    def importance(self, values: np.ndarray) -> np.ndarray: ...

    def check_levels(self, levels: list[list[str] | None]) -> None: ...

    def save(self, folder: Path) -> None: ...


@dataclass
class TreeLearner:
    """A LightGBM booster."""

    booster: lgb.Booster
    kind: LearnerKind = "lightgbm"

    @cached_property
    def tables(self) -> ContributionTables:
        """LightGBM's pred_contrib, exactly, from tables built once per model (well under a
        second): many times faster than TreeSHAP per row (`treecontrib`)."""
        return build_tables(self.booster)

    def raw_scores(self, values: np.ndarray, threads: int = 1) -> np.ndarray:
        raw: np.ndarray = np.asarray(
            self.booster.predict(values, raw_score=True, num_threads=threads), dtype=np.float64
        )
        return raw

    def contributions(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(self.tables.predict(values))

    def importance(self, values: np.ndarray) -> np.ndarray:
        return mean_absolute_contribution(self, values)

    def check_levels(self, levels: list[list[str] | None]) -> None:
        if (self.booster.pandas_categorical or []) != levels:
            raise LearnerMismatch("the model's category levels differ from its booster's")

    def save(self, folder: Path) -> None:
        self.booster.save_model(str(folder / _BOOSTER_FILE))


@dataclass(frozen=True)
class FeatureBins:
    """How one feature is binned: numeric by `edges` (value bins, then a missing bin), or a
    category by its `levels` codes (one bin each, then missing or unseen)."""

    edges: tuple[float, ...] = ()
    levels: int | None = None

    @property
    def count(self) -> int:
        return (self.levels + 1) if self.levels is not None else len(self.edges) + 2


@dataclass(frozen=True)
class _BinLayout:
    """The bins of all features as flat arrays, for binning every feature of a batch at once."""

    numeric: np.ndarray  # feature positions
    edges: np.ndarray  # every numeric feature's edges, feature after feature
    edge_feature: np.ndarray  # per edge: its feature's index within `numeric`
    edge_starts: np.ndarray  # where each feature with edges starts in `edges`
    with_edges: np.ndarray  # indices within `numeric` of the features with edges
    missing_bin: np.ndarray  # per numeric feature: its missing bin
    categorical: np.ndarray  # feature positions
    levels: np.ndarray  # per categorical feature: its number of levels (= its missing bin)

    @classmethod
    def of(cls, bins: list[FeatureBins]) -> _BinLayout:
        numeric = [j for j, b in enumerate(bins) if b.levels is None]
        categorical = [j for j, b in enumerate(bins) if b.levels is not None]
        sizes = [len(bins[j].edges) for j in numeric]
        with_edges = [i for i, size in enumerate(sizes) if size]
        return cls(
            numeric=np.array(numeric, dtype=np.intp),
            edges=np.array([e for j in numeric for e in bins[j].edges], dtype=np.float64),
            edge_feature=np.repeat(np.arange(len(numeric), dtype=np.intp), sizes),
            edge_starts=np.cumsum([0, *[sizes[i] for i in with_edges]])[:-1].astype(np.intp),
            with_edges=np.array(with_edges, dtype=np.intp),
            missing_bin=np.array([size + 1 for size in sizes], dtype=np.intp),
            categorical=np.array(categorical, dtype=np.intp),
            levels=np.array([bins[j].levels for j in categorical], dtype=np.float64),
        )


@dataclass
class LinearLearner:
    """An additive model on binned features: raw = intercept + sum of one weight per feature."""

    bins: list[FeatureBins]
    weights: np.ndarray  # all features' bins, feature after feature
    intercept: float
    centres: np.ndarray  # per feature: its weight's average over the training rows
    strength: float  # scikit-learn's C (inverse L2 strength) it was fitted with
    kind: LearnerKind = "logistic"

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([b.count for b in self.bins])[:-1]]).astype(np.intp)

    @cached_property
    def _layout(self) -> _BinLayout:
        return _BinLayout.of(self.bins)

    def design(self, values: np.ndarray) -> np.ndarray:
        """Each row's bin per feature, as positions in `weights`: (rows, features). A number's
        bin is how many of its feature's edges are at or below it; missing is the last bin, and
        so is a category code outside the training levels."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.bins):
            raise ValueError(f"expected {len(self.bins)} columns, got shape {values.shape}")
        out = np.empty(values.shape, dtype=np.intp)
        # In blocks of rows: the (rows, all edges) comparison stays small.
        for start in range(0, len(values), _DESIGN_ROWS):
            block = slice(start, start + _DESIGN_ROWS)
            out[block] = self._bins_of(values[block])
        out += self.offsets
        return out

    def _bins_of(self, values: np.ndarray) -> np.ndarray:
        layout = self._layout
        out = np.empty(values.shape, dtype=np.intp)
        numbers = values[:, layout.numeric]
        # All features' edges compared at once, then counted per feature.
        at_or_above = numbers[:, layout.edge_feature] >= layout.edges
        counts = np.zeros(numbers.shape, dtype=np.intp)
        if layout.edges.size:
            counts[:, layout.with_edges] = np.add.reduceat(
                at_or_above, layout.edge_starts, axis=1, dtype=np.intp
            )
        out[:, layout.numeric] = np.where(np.isnan(numbers), layout.missing_bin, counts)
        codes = values[:, layout.categorical]
        inside = (codes >= 0) & (codes < layout.levels)  # NaN compares False: missing
        out[:, layout.categorical] = np.where(inside, codes, layout.levels).astype(np.intp)
        return out

    def terms(self, values: np.ndarray) -> np.ndarray:
        terms: np.ndarray = self.weights[self.design(values)]
        return terms

    def raw_scores(self, values: np.ndarray, threads: int = 1) -> np.ndarray:
        raw: np.ndarray = self.intercept + self.terms(values).sum(axis=1)
        return raw

    def contributions(self, values: np.ndarray) -> np.ndarray:
        terms = self.terms(values)
        bias = self.intercept + float(self.centres.sum())
        return np.column_stack([terms - self.centres, np.full(len(terms), bias)])

    def importance(self, values: np.ndarray) -> np.ndarray:
        return mean_absolute_contribution(self, values)

    def check_levels(self, levels: list[list[str] | None]) -> None:
        counts = [b.levels for b in self.bins if b.levels is not None]
        if counts != [len(found) for found in levels if found is not None]:
            raise LearnerMismatch("the model's category levels differ from its linear model's")

    def save(self, folder: Path) -> None:
        state = {
            "bins": [{"edges": list(b.edges), "levels": b.levels} for b in self.bins],
            "weights": self.weights.tolist(),
            "intercept": self.intercept,
            "centres": self.centres.tolist(),
            "strength": self.strength,
        }
        (folder / _LINEAR_FILE).write_text(json.dumps(state))

    @classmethod
    def load(cls, folder: Path) -> LinearLearner:
        state = json.loads((folder / _LINEAR_FILE).read_text())
        return cls(
            bins=[
                FeatureBins(edges=tuple(float(e) for e in b["edges"]), levels=b["levels"])
                for b in state["bins"]
            ],
            weights=np.asarray(state["weights"], dtype=np.float64),
            intercept=float(state["intercept"]),
            centres=np.asarray(state["centres"], dtype=np.float64),
            strength=float(state["strength"]),
        )


@dataclass
class BlendLearner:
    """LightGBM and the logistic model, their raw scores averaged."""

    tree: TreeLearner
    linear: LinearLearner
    kind: LearnerKind = "blend"

    def raw_scores(self, values: np.ndarray, threads: int = 1) -> np.ndarray:
        raw: np.ndarray = (
            self.tree.raw_scores(values, threads) + self.linear.raw_scores(values, threads)
        ) / 2
        return raw

    def contributions(self, values: np.ndarray) -> np.ndarray:
        both: np.ndarray = (self.tree.contributions(values) + self.linear.contributions(values)) / 2
        return both

    def importance(self, values: np.ndarray) -> np.ndarray:
        return mean_absolute_contribution(self, values)

    def check_levels(self, levels: list[list[str] | None]) -> None:
        self.tree.check_levels(levels)
        self.linear.check_levels(levels)

    def save(self, folder: Path) -> None:
        self.tree.save(folder)
        self.linear.save(folder)


def mean_absolute_contribution(learner: Learner, values: np.ndarray) -> np.ndarray:
    """Each feature's mean absolute contribution (SHAP importance) over up to
    `_IMPORTANCE_ROWS` of `values`."""
    contributions = learner.contributions(values[:_IMPORTANCE_ROWS])[:, :-1]
    importance: np.ndarray = np.abs(contributions).mean(axis=0)
    return importance


def load_learner(folder: Path, kind: LearnerKind) -> Learner:
    if kind == "logistic":
        return LinearLearner.load(folder)
    tree = TreeLearner(lgb.Booster(model_file=str(folder / _BOOSTER_FILE)))
    return BlendLearner(tree, LinearLearner.load(folder)) if kind == "blend" else tree
