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

    A *pair* is one feature of one group. Groups are ordered by width, widest first, and pairs
    by layer: first every group's first feature, then the second feature of the groups that have
    one, and so on; so a group's table row is summed over layers with contiguous adds.
    """

    n_features: int
    bias: float  # expected value of the tabled trees
    # Numeric features are binned by comparing each value with all of its feature's cuts.
    numeric_features: np.ndarray
    numeric_cuts: np.ndarray  # all numeric features' cuts, feature after feature
    numeric_cut_row: np.ndarray  # row of each cut's feature among numeric_features
    numeric_starts: np.ndarray  # first cut of each numeric feature
    categorical_features: np.ndarray
    categorical_limit: np.ndarray  # per categorical feature: largest category + 1
    categorical_bins: np.ndarray  # at the feature's offset + code + 1: bin (code -1: invalid)
    categorical_offset: np.ndarray
    bin_offset: np.ndarray  # per feature: its first bin in one numbering of all features' bins
    pair_feature: np.ndarray
    pair_shift: np.ndarray  # index in `lookup` = global bin + shift
    lookup: np.ndarray  # per pair and bin: region * stride * width (+ table offset, layer 0)
    layer_sizes: tuple[int, ...]  # pairs per layer; the first is the number of groups
    # Pairs in feature order: group, column in the group's table; first pair of each feature.
    sorted_group: np.ndarray
    sorted_column: np.ndarray
    sorted_starts: np.ndarray
    sorted_features: np.ndarray
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
        out = np.zeros((len(x), self.n_features + 1))
        out[:, -1] = self.bias
        if self.layer_sizes:
            # In blocks of rows: the (pairs, rows) temporaries then stay in the CPU's cache.
            for start in range(0, len(x), _BLOCK_ROWS):
                block = x[start : start + _BLOCK_ROWS]
                out[start : start + len(block), self.sorted_features] = self._tabled(block).T
        for iteration in self.fallback_iterations:
            assert self.booster is not None
            out += self.booster.predict(
                x, pred_contrib=True, start_iteration=iteration, num_iteration=1, num_threads=1
            )
        return out

    def _tabled(self, x: np.ndarray) -> np.ndarray:
        """The tabled trees' contributions to each used feature: (len(sorted_features), n)."""
        bins = self._global_bins(x)
        parts = self.lookup[bins[self.pair_feature] + self.pair_shift[:, None]]
        rows = parts[: self.layer_sizes[0]]  # each group's row offset into `values`
        start = self.layer_sizes[0]
        for size in self.layer_sizes[1:]:
            rows[:size] += parts[start : start + size]
            start += size
        cells = rows[self.sorted_group] + self.sorted_column[:, None]
        result: np.ndarray = np.add.reduceat(self.values[cells], self.sorted_starts, axis=0)
        return result

    def _global_bins(self, x: np.ndarray) -> np.ndarray:
        """Each feature's bin, offset into one numbering of all features' bins: (n_features, n).
        Unused features get bin 0 (no pair reads them)."""
        bins = np.zeros((self.n_features, len(x)), dtype=np.intp)
        if len(self.numeric_features):
            columns = x[:, self.numeric_features].T
            columns = np.where(np.abs(columns) <= _ZERO, 0.0, columns)
            # 1 + the number of cuts below the value, as searchsorted(side="left") would say.
            below = columns[self.numeric_cut_row] > self.numeric_cuts[:, None]
            counts = np.add.reduceat(below, self.numeric_starts, axis=0, dtype=np.intp)
            bins[self.numeric_features] = np.where(np.isnan(columns), _NAN_BIN, counts + 1)
        if len(self.categorical_features):
            columns = x[:, self.categorical_features].T
            valid = (columns > -1.0) & (columns < _INT_LIMIT)  # False for NaN too
            clipped = np.minimum(np.where(valid, columns, -1.0), self.categorical_limit[:, None])
            index = clipped.astype(np.intp) + 1 + self.categorical_offset[:, None]
            bins[self.categorical_features] = np.where(
                np.isnan(columns), _NAN_BIN, self.categorical_bins[index]
            )
        offset: np.ndarray = bins + self.bin_offset[:, None]
        return offset


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


def _assemble(
    n_features: int,
    bias: float,
    bins: dict[int, _FeatureBins],
    groups: list[_Group],
    fallback: tuple[int, ...],
    booster: lgb.Booster,
) -> ContributionTables:
    bin_offset = _offsets([len(bins[f].values) if f in bins else 0 for f in range(n_features)])
    numeric = sorted(f for f, spec in bins.items() if not spec.categorical)
    cut_counts = [len(bins[f].cuts) for f in numeric]
    categorical = sorted(f for f, spec in bins.items() if spec.categorical)
    limits, category_bins = [], []
    for f in categorical:
        cats = bins[f].cuts.astype(np.intp)
        limit = int(cats[-1]) + 1
        by_code = np.full(limit + 2, 2, dtype=np.intp)  # codes -1 .. limit; others: bin 2
        by_code[0] = 1
        by_code[cats + 1] = 3 + np.arange(len(cats))
        limits.append(limit)
        category_bins.append(by_code)

    groups = sorted(groups, key=lambda g: -len(g.features))
    table_offset = _offsets([g.table.size for g in groups])
    widest = len(groups[0].features) if groups else 0
    layers = [[g for g in range(len(groups)) if len(groups[g].features) > k] for k in range(widest)]
    pair_feature: list[int] = []
    pair_group: list[int] = []
    pair_column: list[int] = []
    lookup: list[np.ndarray] = []
    pair_shift: list[int] = []
    used = 0
    for k, layer in enumerate(layers):
        for g in layer:
            group = groups[g]
            f = group.features[k]
            part = group.regions[k].astype(np.intp) * (group.strides[k] * len(group.features))
            lookup.append(part + table_offset[g] if k == 0 else part)
            pair_shift.append(used - int(bin_offset[f]))
            used += len(part)
            pair_feature.append(f)
            pair_group.append(g)
            pair_column.append(k)

    order = np.argsort(np.array(pair_feature, dtype=np.intp), kind="stable")
    sorted_feature = np.array(pair_feature, dtype=np.intp)[order]
    starts = np.flatnonzero(np.diff(sorted_feature, prepend=-1))
    return ContributionTables(
        n_features=n_features,
        bias=bias,
        numeric_features=np.array(numeric, dtype=np.intp),
        numeric_cuts=np.concatenate([bins[f].cuts for f in numeric]) if numeric else np.zeros(0),
        numeric_cut_row=np.repeat(np.arange(len(numeric), dtype=np.intp), cut_counts),
        numeric_starts=_offsets(cut_counts),
        categorical_features=np.array(categorical, dtype=np.intp),
        categorical_limit=np.array(limits, dtype=np.float64),
        categorical_bins=np.concatenate(category_bins) if category_bins else np.zeros(0, np.intp),
        categorical_offset=_offsets([len(b) for b in category_bins]),
        bin_offset=bin_offset,
        pair_feature=np.array(pair_feature, dtype=np.intp),
        pair_shift=np.array(pair_shift, dtype=np.intp),
        lookup=np.concatenate(lookup) if lookup else np.zeros(0, np.intp),
        layer_sizes=tuple(len(layer) for layer in layers),
        sorted_group=np.array(pair_group, dtype=np.intp)[order],
        sorted_column=np.array(pair_column, dtype=np.intp)[order],
        sorted_starts=starts.astype(np.intp),
        sorted_features=sorted_feature[starts],
        values=np.concatenate([g.table.reshape(-1) for g in groups]) if groups else np.zeros(0),
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
