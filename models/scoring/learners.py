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
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import lightgbm as lgb
import numpy as np

from models.scoring.treecontrib import ContributionTables, build_tables

LearnerKind = Literal["lightgbm", "logistic", "blend"]
# Rows binned at once by the logistic model: its (rows, all cuts) temporaries then stay small.
_DESIGN_ROWS = 1_024
# Rows `importance` reads at most: enough to rank features.
_IMPORTANCE_ROWS = 2_000
_BOOSTER_FILE = "booster.txt"
_LINEAR_FILE = "linear.json"


class LearnerMismatch(ValueError):
    """A saved learner does not fit the feature layout it is loaded with."""


class Learner(Protocol):
    @property
    def kind(self) -> LearnerKind: ...

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
class _RankLayout:
    """Every feature's bin from one comparison of a row with all features' cuts at once.

    A value's *rank* on a feature is how many of the feature's cuts are at or below it. The
    first cut is -inf, so only NaN has rank 0 (its missing bin); a numeric feature's other cuts
    are its edges (rank 1 + bin), a category's are 0, 1, .., levels (rank 2 + code, or 1 or
    levels + 2 outside the codes). One more column, the bias, has the single cut NaN: rank 0.
    Ranks index flat tables, each column's ranks from its `rank_offset` on.
    """

    cut_column: np.ndarray  # column of the values of each cut, column after column
    cuts: np.ndarray
    starts: np.ndarray  # first cut of each column
    rank_offset: np.ndarray  # per column (features, then the bias): the table index of rank 0
    rank_feature: np.ndarray  # per table index: its feature (the bias: n_features)
    rank_bin: np.ndarray  # per table index: the bin (the bias: 0)

    @classmethod
    def of(cls, bins: list[FeatureBins]) -> _RankLayout:
        cuts: list[np.ndarray] = []
        rank_bins: list[np.ndarray] = []
        for b in bins:
            if b.levels is None:
                # NaN: the missing bin, after the value bins.
                cuts.append(np.array([-math.inf, *b.edges], dtype=np.float64))
                rank_bins.append(np.array([len(b.edges) + 1, *range(len(b.edges) + 1)]))
            else:
                # NaN, below 0 and from `levels` up: the missing bin, `levels`.
                cuts.append(np.array([-math.inf, *range(b.levels + 1)], dtype=np.float64))
                rank_bins.append(np.array([b.levels, b.levels, *range(b.levels), b.levels]))
        cuts.append(np.array([math.nan]))
        rank_bins.append(np.zeros(2, dtype=np.intp))
        counts = [len(c) for c in cuts]
        ranks = [len(b) for b in rank_bins]  # a column's ranks: 0 .. its cuts
        return cls(
            cut_column=np.repeat(np.array([*range(len(bins)), 0], dtype=np.intp), counts),
            cuts=np.concatenate(cuts),
            starts=_offsets(counts),
            rank_offset=_offsets(ranks),
            rank_feature=np.repeat(np.arange(len(cuts), dtype=np.intp), ranks),
            rank_bin=np.concatenate(rank_bins).astype(np.intp),
        )


def _offsets(sizes: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)


@dataclass(frozen=True)
class LinearLearner:
    """An additive model on binned features: raw = intercept + sum of one weight per feature.

    Not changed once built (frozen; its arrays are not written either): scoring reads tables
    made from the weights once, on first use."""

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
    def _layout(self) -> _RankLayout:
        return _RankLayout.of(self.bins)

    @cached_property
    def _position_of_rank(self) -> np.ndarray:
        """Per rank table index: the position in `weights` of its feature's bin."""
        layout = self._layout
        with_bias = np.append(self.offsets, 0)
        position: np.ndarray = with_bias[layout.rank_feature] + layout.rank_bin
        return position

    @cached_property
    def _term_of_rank(self) -> np.ndarray:
        term: np.ndarray = self.weights[self._position_of_rank]
        return term

    @cached_property
    def _contribution_of_rank(self) -> np.ndarray:
        """Per rank table index: its term less its feature's centre; the bias's: the bias."""
        layout = self._layout
        bias = self.intercept + float(self.centres.sum())
        centred: np.ndarray = self._term_of_rank - np.append(self.centres, 0.0)[layout.rank_feature]
        centred[layout.rank_offset[-1] :] = bias
        return centred

    def _rank_index(self, values: np.ndarray) -> np.ndarray:
        """Each row's rank per column (features, then the bias) as an index into the rank
        tables: (rows, features + 1)."""
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.bins):
            raise ValueError(f"expected {len(self.bins)} columns, got shape {values.shape}")
        layout = self._layout
        index = np.empty((len(values), len(layout.starts)), dtype=np.intp)
        # In blocks of rows: the (rows, all cuts) comparison stays small.
        for start in range(0, len(values), _DESIGN_ROWS):
            block = values[start : start + _DESIGN_ROWS]
            at_or_below = block.take(layout.cut_column, axis=1) >= layout.cuts
            np.add.reduceat(
                at_or_below,
                layout.starts,
                axis=1,
                dtype=np.intp,
                out=index[start : start + len(block)],
            )
        index += layout.rank_offset
        return index

    def design(self, values: np.ndarray) -> np.ndarray:
        """Each row's bin per feature, as positions in `weights`: (rows, features). A number's
        bin is how many of its feature's edges are at or below it; missing is the last bin, and
        so is a category code outside the training levels."""
        design: np.ndarray = self._position_of_rank.take(self._rank_index(values)[:, :-1])
        return design

    def terms(self, values: np.ndarray) -> np.ndarray:
        """Each row's weight per feature: `weights` at `design`."""
        terms: np.ndarray = self._term_of_rank.take(self._rank_index(values)[:, :-1])
        return terms

    def raw_scores(self, values: np.ndarray, threads: int = 1) -> np.ndarray:
        raw: np.ndarray = self.intercept + self.terms(values).sum(axis=1)
        return raw

    def contributions(self, values: np.ndarray) -> np.ndarray:
        contributions: np.ndarray = self._contribution_of_rank.take(self._rank_index(values))
        return contributions

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
        # In place on the fresh tree array: the same numbers as (tree + linear) / 2.
        both = self.tree.contributions(values)
        both += self.linear.contributions(values)
        both /= 2
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
