"""Table-based contributions equal LightGBM's own pred_contrib, row for row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.batch import LeadBatch
from features.build import feature_frame
from models.scoring.learners import TreeLearner
from models.scoring.scorer import LeadScorer, ScoresDisagree
from models.scoring.treecontrib import (
    ContributionTables,
    build_tables,
    lightgbm_matrix,
)
from tests.conftest import trained_scorer

TOLERANCE = 1e-9


def _train(params: dict[str, Any], data: lgb.Dataset, rounds: int) -> lgb.Booster:
    # One thread: fast enough here, and steady when other work shares the machine.
    base = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 0}
    return lgb.train({**base, **params}, data, num_boost_round=rounds)


def _assert_same_as_lightgbm(
    booster: lgb.Booster, tables: ContributionTables, x: np.ndarray
) -> None:
    expected = np.asarray(booster.predict(x, pred_contrib=True, num_threads=1))
    got = tables.predict(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    raw = booster.predict(x, raw_score=True, num_threads=1)
    np.testing.assert_allclose(got.sum(axis=1), raw, rtol=0, atol=TOLERANCE)


def _thresholds(booster: lgb.Booster) -> dict[int, list[float]]:
    """Every numeric threshold of the model, by feature."""
    found: dict[int, list[float]] = {}

    def walk(node: dict[str, Any]) -> None:
        if "split_index" not in node:
            return
        if node["decision_type"] == "<=":
            found.setdefault(node["split_feature"], []).append(float(node["threshold"]))
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    return found


_AWKWARD = np.array([np.nan, 0.0, -0.0, 1e-36, -1e-36, 1e-35, -1e-35, 1e-34, np.inf, -np.inf])


def _probe_rows(booster: lgb.Booster, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows built to land on the edges: each value is a training value, exactly a threshold,
    just either side of one, or NaN, zero, tiny, infinite."""
    n = 400
    rows = x[rng.integers(0, len(x), n)].copy()
    for feature, cuts in _thresholds(booster).items():
        cuts_arr = np.array(cuts)
        edges = np.concatenate(
            [cuts_arr, np.nextafter(cuts_arr, np.inf), np.nextafter(cuts_arr, -np.inf), _AWKWARD]
        )
        pick = rng.random(n) < 0.6
        rows[pick, feature] = rng.choice(edges, pick.sum())
    return rows


def _numeric_data(rng: np.random.Generator, n: int = 1_500) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 6))
    x[:, 1] = rng.integers(0, 5, n)  # many exact zeros
    x[rng.random((n, 6)) < 0.1] = np.nan
    x[rng.random((n, 6)) < 0.1] = 0.0
    logit = (
        np.nan_to_num(x[:, 0]) + (x[:, 1] == 0) - np.isnan(x[:, 2]) + 0.5 * np.nan_to_num(x[:, 3])
    )
    return x, (logit + rng.normal(size=n) > 0).astype(float)


NUMERIC_CASES: dict[str, dict[str, Any]] = {
    "missing NaN, depth 4": {"max_depth": 4, "num_leaves": 15},
    "missing Zero": {"zero_as_missing": True, "num_leaves": 15},
    "missing None": {"use_missing": False, "num_leaves": 15},
    "unlimited depth": {"max_depth": -1, "num_leaves": 31, "min_data_in_leaf": 5},
    "regression": {"objective": "regression", "num_leaves": 7},
}


@pytest.mark.parametrize("params", NUMERIC_CASES.values(), ids=NUMERIC_CASES.keys())
def test_numeric_models_match_pred_contrib(params: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    x, y = _numeric_data(rng)
    booster = _train({"min_data_in_leaf": 10, **params}, lgb.Dataset(x, y), 40)
    tables = build_tables(booster)
    assert not tables.fallback_iterations
    _assert_same_as_lightgbm(booster, tables, x)
    _assert_same_as_lightgbm(booster, tables, _probe_rows(booster, x, rng))


def test_missing_types_are_all_exercised() -> None:
    rng = np.random.default_rng(1)
    x, y = _numeric_data(rng)
    seen = set()
    for params in NUMERIC_CASES.values():
        booster = _train({"min_data_in_leaf": 10, **params}, lgb.Dataset(x, y), 5)
        seen |= {t for t in ("None", "Zero", "NaN") if f'"missing_type": "{t}"' in str(
            booster.dump_model()).replace("'", '"')}  # fmt: skip
    assert seen == {"None", "Zero", "NaN"}


def _categorical_data(rng: np.random.Generator, n: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    x = np.column_stack(
        [
            rng.integers(0, 10, n).astype(float),
            rng.integers(0, 40, n).astype(float),
            rng.normal(size=n),
            rng.normal(size=n),
        ]
    )
    x[rng.random((n, 4)) < 0.05] = np.nan
    effect = np.isin(x[:, 0], [1, 4, 7]) * 1.5 - np.isin(x[:, 1], np.arange(0, 40, 3))
    return x, (effect + np.nan_to_num(x[:, 2]) + rng.normal(size=n) > 0).astype(float)


@pytest.mark.parametrize("max_depth", [3, -1])
def test_integer_coded_categoricals_and_unseen_codes(max_depth: int) -> None:
    rng = np.random.default_rng(2)
    x, y = _categorical_data(rng)
    booster = _train(
        {
            "max_depth": max_depth,
            "num_leaves": 15,
            "min_data_per_group": 5,
            "cat_smooth": 1.0,
            "max_cat_to_onehot": 4,
        },
        lgb.Dataset(x, y, categorical_feature=[0, 1]),
        40,
    )
    assert '"decision_type": "=="' in str(booster.dump_model()).replace("'", '"')
    tables = build_tables(booster)
    _assert_same_as_lightgbm(booster, tables, x)
    probes = _probe_rows(booster, x, rng)
    # Codes never seen, negative, fractional, too large for an int, missing, infinite.
    odd = np.array([12, 40, 63, 64, -1, -3, -0.5, 2.5, 0.999, 3e9, 2.0**31, np.nan, np.inf])
    for column in (0, 1):
        pick = rng.random(len(probes)) < 0.5
        probes[pick, column] = rng.choice(odd, pick.sum())
    _assert_same_as_lightgbm(booster, tables, probes)


def test_pandas_categories_with_unseen_and_missing_values() -> None:
    rng = np.random.default_rng(3)
    n = 2_000
    colours = ["red", "green", "blue", "teal", "plum", "sand"]
    frame = pd.DataFrame(
        {
            "colour": pd.Categorical(rng.choice(colours, n)),
            "size": rng.normal(size=n),
            "shape": pd.Categorical(rng.choice(["round", "square", "star"], n)),
        }
    )
    frame.loc[rng.random(n) < 0.05, "colour"] = np.nan
    y = frame["colour"].isin(["red", "teal"]) + frame["size"] + rng.normal(size=n) > 0.5
    booster = _train(
        {"num_leaves": 8, "min_data_per_group": 5}, lgb.Dataset(frame, y.astype(float)), 30
    )
    tables = build_tables(booster)
    # Requests: categories in another order, unseen ones, missing ones.
    asked = pd.DataFrame(
        {
            "colour": pd.Categorical(
                rng.choice(np.array([*colours, "mauve", None], dtype=object), 500),
                categories=["mauve", *colours[::-1]],
            ),
            "size": rng.normal(size=500),
            "shape": pd.Categorical(rng.choice(["star", "round", "hexagon"], 500)),
        }
    )
    for data in (frame, asked):
        x = lightgbm_matrix(booster, data)
        expected = booster.predict(data, pred_contrib=True)
        assert np.array_equal(booster.predict(x, pred_contrib=True), expected)
        np.testing.assert_allclose(tables.predict(x), expected, rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def pipeline_scorer() -> tuple[LeadScorer, pd.DataFrame, LeadBatch]:
    """The project's own model (depth 4, 15 leaves, categorical fit features) on simulated
    leads, and its feature frame for those leads."""
    funnel, scorer = trained_scorer(3_000, seed=5, candidates=["lightgbm"])
    leads = funnel.leads.sample(800, random_state=0).reset_index(drop=True)
    spine = pd.DataFrame(
        {
            "lead_id": leads["lead_id"],
            "as_of": (leads["created_at"] + pd.Timedelta(days=20)).dt.as_unit("ns"),
        }
    )
    events = funnel.events[funnel.events["lead_id"].isin(leads["lead_id"])]
    batch = scorer.batch_at(spine, leads, events)
    return scorer, feature_frame(spine, scorer.feature_matrix(batch)), batch


def booster_of(scorer: LeadScorer) -> lgb.Booster:
    assert isinstance(scorer.learner, TreeLearner)
    return scorer.learner.booster


@pytest.fixture(scope="module")
def pipeline_model(
    pipeline_scorer: tuple[LeadScorer, pd.DataFrame, LeadBatch],
) -> tuple[lgb.Booster, pd.DataFrame]:
    scorer, features, _ = pipeline_scorer
    return booster_of(scorer), features[scorer.feature_names]


def test_pipeline_model_matches_pred_contrib(
    pipeline_model: tuple[lgb.Booster, pd.DataFrame],
) -> None:
    booster, features = pipeline_model
    x = lightgbm_matrix(booster, features)
    assert np.array_equal(
        booster.predict(x, pred_contrib=True), booster.predict(features, pred_contrib=True)
    )
    tables = build_tables(booster)
    assert not tables.fallback_iterations
    _assert_same_as_lightgbm(booster, tables, x)
    _assert_same_as_lightgbm(booster, tables, _probe_rows(booster, x, np.random.default_rng(4)))


def test_one_row_at_a_time_gives_the_batch_numbers_exactly(
    pipeline_model: tuple[lgb.Booster, pd.DataFrame],
) -> None:
    booster, features = pipeline_model
    x = lightgbm_matrix(booster, features)[:150]
    tables = build_tables(booster)
    single = np.concatenate([tables.predict(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(single, tables.predict(x))
    assert tables.predict(x[:0]).shape == (0, x.shape[1] + 1)


@pytest.mark.parametrize(
    ("options", "fallback"),
    [
        ({"max_combinations": 8}, False),  # every tree split into groups of leaves
        ({"max_path_features": 2}, True),  # deeper trees left to LightGBM
    ],
)
def test_small_caps_stay_exact(options: dict[str, int], fallback: bool) -> None:
    rng = np.random.default_rng(6)
    x, y = _categorical_data(rng)
    booster = _train(
        {"num_leaves": 15, "min_data_per_group": 5}, lgb.Dataset(x, y, categorical_feature=[0]), 20
    )
    tables = build_tables(booster, **options)
    assert bool(tables.fallback_iterations) == fallback
    _assert_same_as_lightgbm(booster, tables, _probe_rows(booster, x, rng))


def test_a_tree_without_splits() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 3))
    # Nothing to learn: one tree, a single leaf holding the mean; only the bias is nonzero.
    booster = _train({"objective": "regression"}, lgb.Dataset(x, np.full(300, 2.5)), 5)
    assert "split_index" not in booster.dump_model()["tree_info"][0]["tree_structure"]
    _assert_same_as_lightgbm(booster, build_tables(booster), x)


def test_refuses_what_it_cannot_do() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(300, 3))
    booster = _train(
        {"objective": "multiclass", "num_class": 3}, lgb.Dataset(x, rng.integers(0, 3, 300)), 2
    )
    with pytest.raises(ValueError, match="one tree per iteration"):
        build_tables(booster)
    forest = _train(
        {"boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.5},
        lgb.Dataset(x, x[:, 0] > 0),
        2,
    )
    with pytest.raises(ValueError, match="random forests"):
        build_tables(forest)
    binary = _train({}, lgb.Dataset(x, x[:, 0] > 0), 2)
    with pytest.raises(ValueError, match="expected 3 columns"):
        build_tables(binary).predict(x[:, :2])


def test_scorer_scores_and_reasons_match_lightgbm(
    pipeline_scorer: tuple[LeadScorer, pd.DataFrame, LeadBatch],
) -> None:
    scorer, features, batch = pipeline_scorer
    frame = features[scorer.feature_names]
    matrix = scorer.feature_matrix(batch).values
    # The kernel's matrix is what LightGBM makes of the training-style frame, bit for bit.
    assert np.array_equal(matrix, lightgbm_matrix(booster_of(scorer), frame), equal_nan=True)
    raw = booster_of(scorer).predict(frame, raw_score=True)
    np.testing.assert_allclose(scorer.raw_scores(matrix), raw, rtol=0, atol=TOLERANCE)
    # The reasons the scorer writes from the tables, against LightGBM's own contributions.
    expected = scorer.reason_writer.reasons_batch(
        np.asarray(booster_of(scorer).predict(frame, pred_contrib=True)), frame
    )
    got = scorer.score_batch(batch).columns["reasons"]
    for mine, theirs in zip(got, expected, strict=True):
        for side in ("for", "against"):
            assert [r["phrase"] for r in mine[side]] == [r.phrase for r in theirs[side]]
            np.testing.assert_allclose(
                np.array([r["contribution"] for r in mine[side]], dtype=np.float64),
                np.array([r.contribution for r in theirs[side]]),
                rtol=0,
                atol=TOLERANCE,
            )


def test_a_model_whose_stored_rows_score_differently_is_refused(
    pipeline_scorer: tuple[LeadScorer, pd.DataFrame, LeadBatch], tmp_path: Path
) -> None:
    """The bundle keeps feature rows and LightGBM's raw scores of them; loading checks both
    LightGBM and the reason tables against those scores (a LightGBM upgrade, a table bug)."""
    scorer = pipeline_scorer[0]
    assert scorer.check_rows is not None and len(scorer.check_rows) >= 100
    folder = scorer.save(tmp_path / "bundle")
    LeadScorer.load(folder)  # as saved: loads
    rows = np.load(folder / "check_rows.npz")["rows"]
    rows[:, -1] += 1e-6  # the scores the model gave at training, nudged
    np.savez(folder / "check_rows.npz", rows=rows)
    with pytest.raises(ScoresDisagree, match="refusing to serve"):
        LeadScorer.load(folder)
