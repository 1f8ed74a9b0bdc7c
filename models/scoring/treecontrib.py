"""Exact feature contributions of a LightGBM model (its `pred_contrib`), from tables built once.

`booster.predict(X, pred_contrib=True)` runs path-dependent TreeSHAP for every row and tree. For
one leaf, that SHAP value depends on the row only through one bit per feature on the leaf's path:
does the row meet all of the path's conditions on that feature? So within a tree, rows that fall
into the same *region* of every split feature (between two of the tree's thresholds, one category,
missing) get the same contributions. `build_tables` enumerates, per tree, every combination of its
features' regions and stores the contributions once; `ContributionTables.predict` bins each
feature, looks one table row up per tree and sums.

A tree whose combinations would be too many is split into groups of leaves (its contributions are a
sum over its leaves, and a group needs only the regions its own leaves tell apart); a tree with a
leaf whose path holds more features than `max_path_features` is left to LightGBM itself.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# LightGBM reads |x| <= kZeroThreshold (1e-35 as a float) as exactly 0 when it takes a row in.
_ZERO = float(np.float32(1e-35))
# Cuts around the values LightGBM reads as 0: (-inf, below -1e-35], [-1e-35, -tiniest],
# (-tiniest, 0] = {+0, -0}, (0, 1e-35], (1e-35, inf).
_ZERO_FENCE = (
    float(np.nextafter(-_ZERO, -np.inf)),
    -float(np.nextafter(0.0, 1.0)),
    0.0,
    _ZERO,
)
# static_cast<int> of a category value at or above this is INT_MIN on x86: sent right.
_INT_LIMIT = 2.0**31
_NAN_BIN = 0  # bin 0 of every feature holds NaN
_MAX_CATEGORY = 2**20  # categories are looked up in a table this long at most
_BLOCK_ROWS = 64  # rows per pass in `predict`: its temporaries then fit in the CPU's cache


@dataclass(frozen=True)
class _Node:
    feature: int
    categorical: bool
    threshold: float
    categories: frozenset[int]
    default_left: bool
    missing_type: str
    count: float


@dataclass(frozen=True)
class _Leaf:
    value: float
    count: float
    path: tuple[tuple[int, bool], ...]  # (node, went left) from the root down


@dataclass(frozen=True)
class _Tree:
    nodes: list[_Node]
    leaves: list[_Leaf]

    @property
    def expected_value(self) -> float:
        """LightGBM's Tree::ExpectedValue: leaf values weighted by the training rows in them."""
        if not self.nodes:
            return self.leaves[0].value
        total = self.nodes[0].count
        return sum(leaf.count / total * leaf.value for leaf in self.leaves)


def _thresholds(model_text: str) -> list[list[float]]:
    """Each tree's thresholds by split index, from the model text: `dump_model` writes an
    infinite threshold as 1e300, and a row's inf must still go where the real one sends it."""
    found: list[list[float]] = []
    for line in model_text.splitlines():
        if line.startswith("Tree="):
            found.append([])
        elif line.startswith("threshold=") and found:
            found[-1] = [float(v) for v in line.removeprefix("threshold=").split()]
        elif line.startswith("end of trees"):
            break
    return found


def _parse_tree(structure: dict[str, Any], thresholds: list[float]) -> _Tree:
    nodes: list[_Node] = []
    leaves: list[_Leaf] = []
    stack: list[tuple[dict[str, Any], tuple[tuple[int, bool], ...]]] = [(structure, ())]
    while stack:
        item, path = stack.pop()
        if "split_index" not in item:
            leaves.append(_Leaf(float(item["leaf_value"]), float(item.get("leaf_count", 0)), path))
            continue
        categorical = item["decision_type"] == "=="
        nodes.append(
            _Node(
                feature=int(item["split_feature"]),
                categorical=categorical,
                threshold=math.nan if categorical else thresholds[int(item["split_index"])],
                categories=(
                    frozenset(int(c) for c in str(item["threshold"]).split("||"))
                    if categorical
                    else frozenset()
                ),
                default_left=bool(item["default_left"]),
                missing_type=str(item["missing_type"]),
                count=float(item["internal_count"]),
            )
        )
        index = len(nodes) - 1
        stack.append((item["right_child"], (*path, (index, False))))
        stack.append((item["left_child"], (*path, (index, True))))
    return _Tree(nodes, leaves)


def _child_count(tree: _Tree, leaf: _Leaf, step: int) -> float:
    """Training rows in the child the path takes at its `step`-th node."""
    if step + 1 < len(leaf.path):
        return tree.nodes[leaf.path[step + 1][0]].count
    return leaf.count


# --- binning: every feature's values cut at all of the model's thresholds for it -------------


@dataclass(frozen=True)
class _FeatureBins:
    """How one feature's values map to bins; `values` holds one representative per bin."""

    categorical: bool
    cuts: np.ndarray  # numeric: sorted thresholds; categorical: sorted categories
    values: np.ndarray


def _feature_bins(trees: list[_Tree], n_features: int) -> dict[int, _FeatureBins]:
    thresholds: dict[int, set[float]] = {}
    categories: dict[int, set[int]] = {}
    for tree in trees:
        for node in tree.nodes:
            if node.categorical:
                categories.setdefault(node.feature, set()).update(node.categories)
            else:
                thresholds.setdefault(node.feature, set()).add(node.threshold)
    bins: dict[int, _FeatureBins] = {}
    for feature, found in thresholds.items():
        if feature in categories:
            raise ValueError(f"feature {feature} has both numeric and categorical splits")
        # Bin 0 is NaN; bin 1 + i holds (cuts[i - 1], cuts[i]], represented by cuts[i]. The
        # extra cuts give 0 a bin of its own (for missing_type Zero) and fence off the other
        # values LightGBM reads as 0: no row lands there, and no other bin is represented by one.
        cuts = np.array(sorted({*found, *_ZERO_FENCE}))
        values = np.concatenate([[math.nan], cuts, [math.inf]])
        bins[feature] = _FeatureBins(False, cuts, values)
    for feature, seen in categories.items():
        if max(seen) >= _MAX_CATEGORY:
            raise ValueError(f"feature {feature} has categories of {_MAX_CATEGORY} and above")
        # Bin 0 NaN, 1 negative (or too large for an int), 2 any other category, 3 + i cuts[i].
        cats = np.array(sorted(seen), dtype=np.float64)
        values = np.concatenate([[math.nan, -1.0, cats[-1] + 1.0], cats])
        bins[feature] = _FeatureBins(True, cats, values)
    if any(f >= n_features for f in bins):
        raise ValueError("the model splits on a feature it does not declare")
    return bins


def _goes_left(node: _Node, values: np.ndarray) -> np.ndarray:
    """LightGBM's decision at `node` (tree.h, Numerical/CategoricalDecision) for each value."""
    if node.categorical:
        valid = ~np.isnan(values) & (values > -1.0) & (values < _INT_LIMIT)
        codes = np.where(valid, np.trunc(np.where(valid, values, 0.0)), -1.0)
        chosen: np.ndarray = valid & np.isin(codes, list(node.categories))
        return chosen
    if node.missing_type != "NaN":
        values = np.where(np.isnan(values), 0.0, values)
    if node.missing_type == "Zero":
        missing = np.abs(values) <= _ZERO
    elif node.missing_type == "NaN":
        missing = np.isnan(values)
    else:
        missing = np.zeros(values.shape, dtype=bool)
    left: np.ndarray = np.where(missing, node.default_left, values <= node.threshold)
    return left


# --- SHAP of one leaf as a function of its path bits ------------------------------------------


def _leaf_shap(values: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """SHAP values of leaves for every pattern of their path bits.

    `values` (L,) are leaf values, `zeros` (L, d) the fraction of training rows that follow the
    path on each of the d path features. Returns (L, 2**d, d): for pattern p (bit k says the row
    meets the path's conditions on feature k), the contribution to feature k. With o the bits and
    z the zero fractions, the leaf's value function is v * prod_{j in S} o_j * prod_{j not in S} z_j
    and this is its Shapley value, the same as TreeSHAP's path unwinding computes.
    """
    n_leaves, d = zeros.shape
    patterns = (np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1
    ones = np.broadcast_to(patterns.astype(np.float64), (n_leaves, 2**d, d))
    z = np.broadcast_to(zeros[:, None, :], (n_leaves, 2**d, d))
    weights = np.array(
        [math.factorial(s) * math.factorial(d - 1 - s) / math.factorial(d) for s in range(d)]
    )
    out = np.empty((n_leaves, 2**d, d))
    for i in range(d):
        # Coefficients of prod_{j != i} (z_j + o_j t): term s sums over the sets S with |S| = s.
        coefficients = np.zeros((n_leaves, 2**d, d))
        coefficients[..., 0] = 1.0
        size = 1
        for j in range(d):
            if j == i:
                continue
            shifted = np.zeros_like(coefficients)
            shifted[..., 1 : size + 1] = coefficients[..., :size] * ones[..., j, None]
            coefficients = coefficients * z[..., j, None] + shifted
            size += 1
        out[..., i] = values[:, None] * (ones[..., i] - z[..., i]) * (coefficients @ weights)
    return out


@dataclass
class _LeafTerms:
    """One leaf's path features, its bits per bin of each, and its SHAP per bit pattern."""

    features: list[int]
    bits: list[np.ndarray]  # per path feature: does each bin of it meet the path's conditions
    zeros: list[float]
    value: float
    shap: np.ndarray | None = None  # (2**d, d)


def _leaf_terms(tree: _Tree, bins: dict[int, _FeatureBins]) -> list[_LeafTerms]:
    goes_left = [_goes_left(node, bins[node.feature].values) for node in tree.nodes]
    terms = []
    for leaf in tree.leaves:
        bits: dict[int, np.ndarray] = {}
        zeros: dict[int, float] = {}
        for step, (index, left) in enumerate(leaf.path):
            node = tree.nodes[index]
            met = goes_left[index] if left else ~goes_left[index]
            bits[node.feature] = bits[node.feature] & met if node.feature in bits else met
            fraction = _child_count(tree, leaf, step) / node.count
            zeros[node.feature] = zeros.get(node.feature, 1.0) * fraction
        features = list(bits)
        bit_list, zero_list = [bits[f] for f in features], [zeros[f] for f in features]
        terms.append(_LeafTerms(features, bit_list, zero_list, leaf.value))
    return terms


def _fill_shap(terms: list[_LeafTerms]) -> None:
    """Computes every leaf's pattern table, leaves with the same path length together."""
    by_length: dict[int, list[_LeafTerms]] = {}
    for term in terms:
        by_length.setdefault(len(term.features), []).append(term)
    for group in by_length.values():
        shap = _leaf_shap(np.array([t.value for t in group]), np.array([t.zeros for t in group]))
        for term, table in zip(group, shap, strict=True):
            term.shap = table


# --- tables: one per group of leaves, over its features' region combinations ------------------


@dataclass(frozen=True)
class _Group:
    features: list[int]  # sorted
    regions: list[np.ndarray]  # per feature: region of each of its bins
    strides: list[int]  # per feature: table rows between consecutive regions of it
    table: np.ndarray  # (region combinations, len(features))


def _regions(leaves: list[_LeafTerms], feature: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins that every leaf treats alike share a region: (region per bin, a bin per region)."""
    signature = np.array(
        [t.bits[t.features.index(feature)] for t in leaves if feature in t.features]
    )
    if len(signature) < 63:
        # Each bin's bits as one integer: a 1-d unique, much faster than unique(axis=...).
        keys = (signature.astype(np.int64) << np.arange(len(signature))[:, None]).sum(axis=0)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(signature.T, axis=0, return_index=True, return_inverse=True)
    return inverse.reshape(-1), first


def _combinations(leaves: list[_LeafTerms]) -> int:
    features = {f for t in leaves for f in t.features}
    return math.prod(len(_regions(leaves, f)[1]) for f in features)


def _group_leaves(leaves: list[_LeafTerms], max_combinations: int) -> list[list[_LeafTerms]]:
    """The whole tree if small enough, else runs of consecutive leaves (they share most of
    their paths) while a run's region combinations stay under the cap."""
    if _combinations(leaves) <= max_combinations:
        return [leaves]
    groups: list[list[_LeafTerms]] = []
    current: list[_LeafTerms] = []
    for leaf in leaves:
        if current and _combinations([*current, leaf]) > max_combinations:
            groups.append(current)
            current = []
        current.append(leaf)
    groups.append(current)
    return groups


def _build_group(leaves: list[_LeafTerms]) -> _Group:
    """The table of a group of leaves: row = mixed-radix index of the regions of its features
    (first feature most significant), column = feature."""
    features = sorted({f for t in leaves for f in t.features})
    regions, region_bins = zip(*(_regions(leaves, f) for f in features), strict=True)
    sizes = [len(b) for b in region_bins]
    strides = [math.prod(sizes[k + 1 :]) for k in range(len(sizes))]
    row = np.arange(math.prod(sizes))
    position = {f: k for k, f in enumerate(features)}
    table = np.zeros((len(row), len(features)))
    for leaf in leaves:
        assert leaf.shap is not None
        pattern = np.zeros(len(row), dtype=np.intp)
        for k, (f, bits) in enumerate(zip(leaf.features, leaf.bits, strict=True)):
            j = position[f]
            met_by_region = bits[region_bins[j]].astype(np.intp)
            pattern |= met_by_region[(row // strides[j]) % sizes[j]] << k
        for k, f in enumerate(leaf.features):
            table[:, position[f]] += leaf.shap[pattern, k]
    return _Group(features, list(regions), strides, table)


# --- the tables and their prediction -----------------------------------------------------------


@dataclass(frozen=True)
class ContributionTables:
    """Everything `predict` needs, built by `build_tables`; read-only after that.

    A value's *rank* on a feature is how many of the feature's rank cuts are at or above it:
    the last cut is inf, so only NaN has rank 0, and the cuts fall wherever the feature's bin
    (see `_feature_bins`) changes, so the rank alone gives the bin. One comparison of each
    value with its feature's cuts thus bins every feature at once (NaN, LightGBM's zeros and
    category codes included).

    A *pair* is one feature of one group. Groups are ordered by width, widest first, and pairs
    by layer: first every group's first feature, then the second feature of the groups that have
    one, and so on; so a group's table row is summed over layers with contiguous adds. Layer 0
    ends with a *constant pair* whose row holds 0 and the bias: the output's other columns (the
    features no tree splits on, the bias) are read from it like any feature's, so a block of
    rows comes out whole.
    """

    n_features: int
    bias: float  # expected value of the tabled trees
    rank_cut_feature: np.ndarray  # column of x of each rank cut, feature after feature
    rank_cuts: np.ndarray  # (cuts, 1): each feature's sorted, the last inf; the constant's NaN
    rank_starts: np.ndarray  # first rank cut of each ranked feature
    pair_rank_row: np.ndarray  # per pair: row of its feature among the ranked features
    pair_start: np.ndarray  # (pairs, 1): index in `lookup` of the pair's rank 0
    lookup: np.ndarray  # per pair and rank: region * stride * width (+ table offset, layer 0)
    groups: int  # pairs in layer 0, the constant pair included
    # (groups added to, their pairs) of each layer after the first.
    layer_slices: tuple[tuple[slice, slice], ...]
    # Per output column (features, then the bias), its pairs: group, column in its table.
    sorted_group: np.ndarray
    sorted_column: np.ndarray  # (pairs, 1)
    sorted_starts: np.ndarray
    values: np.ndarray  # all tables, flat
    fallback_iterations: tuple[int, ...]  # trees left to LightGBM
    booster: lgb.Booster | None  # only for those

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Contributions (n, n_features + 1), the bias last: `pred_contrib` of the float64
        matrix LightGBM sees (see `lightgbm_matrix`)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} columns, got shape {x.shape}")
        out = np.empty((len(x), self.n_features + 1))
        # In blocks of rows: the (pairs, rows) temporaries then stay in the CPU's cache.
        for start in range(0, len(x), _BLOCK_ROWS):
            block = x[start : start + _BLOCK_ROWS]
            out[start : start + len(block)] = self._tabled(block).T
        for iteration in self.fallback_iterations:
            assert self.booster is not None
            out += self.booster.predict(
                x, pred_contrib=True, start_iteration=iteration, num_iteration=1, num_threads=1
            )
        return out

    def _tabled(self, x: np.ndarray) -> np.ndarray:
        """The tabled trees' contributions and the bias: (n_features + 1, n)."""
        at_or_above = x.T.take(self.rank_cut_feature, axis=0) <= self.rank_cuts
        ranks = np.add.reduceat(at_or_above, self.rank_starts, axis=0, dtype=np.intp)
        index = ranks.take(self.pair_rank_row, axis=0)
        index += self.pair_start
        parts = self.lookup.take(index)
        rows = parts[: self.groups]  # each group's row offset into `values`
        for groups, pairs in self.layer_slices:
            np.add(rows[groups], parts[pairs], out=rows[groups])
        cells = rows.take(self.sorted_group, axis=0)
        cells += self.sorted_column
        result: np.ndarray = np.add.reduceat(self.values.take(cells), self.sorted_starts, axis=0)
        return result


def build_tables(
    booster: lgb.Booster, *, max_combinations: int = 4096, max_path_features: int = 10
) -> ContributionTables:
    """Tables for `booster` (one tree per iteration, no linear trees): see the module docstring.

    `max_combinations` caps a table's rows (memory against speed; a group of one leaf may have
    up to 2**max_path_features); a tree with a leaf whose path holds more than
    `max_path_features` features is left to LightGBM's own pred_contrib.
    """
    model = booster.dump_model()
    if model["num_tree_per_iteration"] != 1:
        raise ValueError("only models with one tree per iteration (binary, regression)")
    if model.get("average_output"):
        raise ValueError("random forests (average_output) are not supported")
    text = booster.model_to_string()
    if "is_linear=1" in text:
        raise ValueError("linear trees are not supported")
    n_features = int(model["max_feature_idx"]) + 1
    trees = [
        _parse_tree(info["tree_structure"], thresholds)
        for info, thresholds in zip(model["tree_info"], _thresholds(text), strict=True)
    ]
    bins = _feature_bins(trees, n_features)
    tabled: list[list[_LeafTerms]] = []
    fallback: list[int] = []
    bias = 0.0
    for iteration, tree in enumerate(trees):
        terms = _leaf_terms(tree, bins) if tree.nodes else []
        if any(len(t.features) > max_path_features for t in terms):
            fallback.append(iteration)
            continue
        bias += tree.expected_value
        if terms:
            tabled.append(terms)
    _fill_shap([term for terms in tabled for term in terms])
    groups = [
        _build_group(group) for terms in tabled for group in _group_leaves(terms, max_combinations)
    ]
    if fallback:
        logger.info("%d of %d trees left to LightGBM's pred_contrib", len(fallback), len(trees))
    return _assemble(n_features, bias, bins, groups, tuple(fallback), booster)


def _offsets(sizes: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)


def _bins_of(spec: _FeatureBins, values: np.ndarray) -> np.ndarray:
    """The bin of each value, as LightGBM reads it: NaN, its zeros, category codes."""
    bins = np.full(values.shape, _NAN_BIN, dtype=np.intp)
    present = ~np.isnan(values)
    found = values[present]
    if spec.categorical:
        cats = spec.cuts.astype(np.intp)
        limit = int(cats[-1]) + 1
        by_code = np.full(limit + 2, 2, dtype=np.intp)  # codes -1 .. limit; others: bin 2
        by_code[0] = 1
        by_code[cats + 1] = 3 + np.arange(len(cats))
        valid = (found > -1.0) & (found < _INT_LIMIT)
        codes = np.minimum(np.where(valid, found, -1.0), limit).astype(np.intp)
        bins[present] = by_code[codes + 1]
    else:
        folded = np.where(np.abs(found) <= _ZERO, 0.0, found)
        bins[present] = 1 + np.searchsorted(spec.cuts, folded, side="left")
    return bins


def _rank_cuts(spec: _FeatureBins) -> np.ndarray:
    """Sorted cuts, the last inf, such that the values between two neighbours (above the lower,
    up to the upper) share a bin: then how many cuts are at or above a value gives its bin."""
    if not spec.categorical:
        # Bin 1 + i is (cuts[i - 1], cuts[i]]; the zero fence is among the cuts.
        return np.append(spec.cuts, math.inf)
    # Category c holds [c, c + 1) (0: (-1, 1)); up to -1 and from 2**31 up is no category.
    ends = {float(np.nextafter(c, -math.inf)) for cat in spec.cuts for c in (cat, cat + 1.0)}
    return np.array(sorted({-1.0, *ends, float(np.nextafter(_INT_LIMIT, -math.inf)), math.inf}))


def _assemble(
    n_features: int,
    bias: float,
    bins: dict[int, _FeatureBins],
    groups: list[_Group],
    fallback: tuple[int, ...],
    booster: lgb.Booster,
) -> ContributionTables:
    groups = sorted(groups, key=lambda g: -len(g.features))
    ranked = sorted({f for g in groups for f in g.features})
    rank_row = {f: k for k, f in enumerate(ranked)}
    rank_cuts = [_rank_cuts(bins[f]) for f in ranked]
    # Rank r >= 1 (cuts at or above a value) is the bin of the values up to cuts[-r]; 0 is NaN.
    bin_of_rank = {
        f: np.concatenate([[_NAN_BIN], _bins_of(bins[f], cuts[::-1])])
        for f, cuts in zip(ranked, rank_cuts, strict=True)
    }
    table_offset = _offsets([g.table.size for g in groups])
    constant = len(groups)  # the constant pair's group
    constant_offset = sum(g.table.size for g in groups)  # where its 0 and bias go in `values`
    lookup: list[np.ndarray] = []
    pair_rank_row: list[int] = []
    # Per output column, its pairs' (group, column in the group's table), in pair order.
    columns: list[list[tuple[int, int]]] = [[] for _ in range(n_features)]

    def add_pair(g: int, k: int) -> None:
        group = groups[g]
        f = group.features[k]
        by_bin = group.regions[k].astype(np.intp) * (group.strides[k] * len(group.features))
        lookup.append((by_bin + table_offset[g] if k == 0 else by_bin)[bin_of_rank[f]])
        pair_rank_row.append(rank_row[f])
        columns[f].append((g, k))

    for g in range(len(groups)):
        add_pair(g, 0)
    # The constant pair ranks a cut no value is at or below (NaN, on any column): rank 0.
    lookup.append(np.full(2, constant_offset, dtype=np.intp))
    pair_rank_row.append(len(ranked))
    layer_slices: list[tuple[slice, slice]] = []
    for k in range(1, max((len(g.features) for g in groups), default=0)):
        layer = [g for g in range(len(groups)) if len(groups[g].features) > k]
        layer_slices.append((slice(0, len(layer)), slice(len(lookup), len(lookup) + len(layer))))
        for g in layer:
            add_pair(g, k)
    cut_counts = [len(cuts) for cuts in rank_cuts] + [1]
    sorted_pairs = [pairs or [(constant, 0)] for pairs in columns] + [[(constant, 1)]]
    flat = [pair for pairs in sorted_pairs for pair in pairs]
    return ContributionTables(
        n_features=n_features,
        bias=bias,
        rank_cut_feature=np.repeat(np.array([*ranked, 0], dtype=np.intp), cut_counts),
        rank_cuts=np.concatenate([*rank_cuts, [math.nan]])[:, None],
        rank_starts=_offsets(cut_counts),
        pair_rank_row=np.array(pair_rank_row, dtype=np.intp),
        pair_start=_offsets([len(part) for part in lookup])[:, None],
        lookup=np.concatenate(lookup),
        groups=len(groups) + 1,
        layer_slices=tuple(layer_slices),
        sorted_group=np.array([g for g, _ in flat], dtype=np.intp),
        sorted_column=np.array([k for _, k in flat], dtype=np.intp)[:, None],
        sorted_starts=_offsets([len(pairs) for pairs in sorted_pairs]),
        values=np.concatenate([*(g.table.reshape(-1) for g in groups), [0.0, bias]]),
        fallback_iterations=fallback,
        booster=booster if fallback else None,
    )


def lightgbm_matrix(booster: lgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    """The float64 matrix LightGBM predicts from when given `frame` (its columns in model
    order): pandas categoricals become codes in the training categories, NaN if unseen or
    missing; everything else is cast to float."""
    levels = booster.pandas_categorical or []
    out = np.empty((len(frame), frame.shape[1]))
    k = 0
    for j, (_, column) in enumerate(frame.items()):
        if isinstance(column.dtype, pd.CategoricalDtype):
            if k >= len(levels):
                raise ValueError("more categorical columns than the model was trained with")
            codes = column.cat.set_categories(levels[k]).cat.codes.to_numpy()
            out[:, j] = np.where(codes < 0, np.nan, codes)
            k += 1
        else:
            out[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if k != len(levels):
        raise ValueError("fewer categorical columns than the model was trained with")
    return out
