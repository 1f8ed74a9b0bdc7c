"""Candidate learners: the binned logistic model, and the choice between candidates by time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from features.config import FeatureConfig, SnapshotConfig
from models.rules.points import PointsRules
from models.scoring.learners import FeatureBins, LinearLearner, TreeLearner
from models.scoring.scorer import LeadScorer, ScoresDisagree
from models.training import candidates as candidates_module
from models.training.calibration import ScoreColumn, choose_calibrator
from models.training.candidates import TrainingData, fit_bins, fit_logistic
from models.training.config import SplitConfig, TrainConfig
from models.training.drift import drift_report
from models.training.split import split_by_order
from models.training.train import TrainingResult, recency_weights, train_lead_scorer
from simulator.funnel import SimulatedFunnel, SimulatorConfig, simulate_funnel


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n).astype(float)
    visits[rng.random(n) < 0.1] = np.nan
    size = pd.Categorical(rng.choice(["1-10", "11-50", "51-200"], n), ["1-10", "11-50", "51-200"])
    logit = -2 + 0.4 * np.nan_to_num(visits) + np.where(size == "51-200", 1.0, 0.0)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({"visits": visits, "company_size": size}), labels


def test_binned_logistic_is_scikit_learns_model_and_its_reasons_are_its_terms(
    tmp_path: Path,
) -> None:
    frame, labels = _frame(4_000, seed=1)
    data = TrainingData.of(frame, labels, None)
    rows = np.arange(3_000)
    bins = fit_bins(data.values[rows], data.names, data.levels, q=5)
    assert bins[1] == FeatureBins(levels=3)
    learner = fit_logistic(data, rows, bins, strength=0.5, max_iter=1_000)

    # The same fit, straight from scikit-learn on the one-hot bins.
    design = learner.design(data.values)
    onehot = sparse.csr_matrix(
        (np.ones(design.size), design.ravel(), np.arange(0, design.size + 1, design.shape[1])),
        shape=(len(design), learner.weights.size),
    )
    reference = LogisticRegression(C=0.5, max_iter=1_000).fit(onehot[rows], labels[rows])
    new = data.values[3_000:]
    np.testing.assert_allclose(
        learner.raw_scores(new), reference.decision_function(onehot[3_000:]), atol=1e-9
    )
    # Reasons: one term per feature, centred on the training average, adding up to the score.
    contributions = learner.contributions(new)
    np.testing.assert_allclose(contributions.sum(axis=1), learner.raw_scores(new), atol=1e-9)
    np.testing.assert_allclose(
        learner.contributions(data.values[rows])[:, :-1].mean(axis=0), 0, atol=1e-9
    )
    # Missing and unseen values have their own bin, never an error.
    odd = np.array([[np.nan, np.nan], [np.inf, 7.0], [-1.0, -1.0]])
    assert np.isfinite(learner.raw_scores(odd)).all()
    # Saved and loaded: the same scores, bit for bit.
    learner.save(tmp_path)
    again = LinearLearner.load(tmp_path)
    assert np.array_equal(again.raw_scores(new), learner.raw_scores(new))


@pytest.fixture(scope="module")
def funnel() -> SimulatedFunnel:
    return simulate_funnel(SimulatorConfig(n_leads=6_000, seed=3))


def _train(funnel: SimulatedFunnel, **overrides: object) -> TrainingResult:
    return train_lead_scorer(
        funnel.leads,
        funnel.events,
        features=FeatureConfig(),
        snapshots=SnapshotConfig(observed_until=funnel.observed_until),
        rules=PointsRules.default(),
        config=TrainConfig(**overrides),  # type: ignore[arg-type]
    )


def test_the_candidate_with_the_lower_calibrated_log_loss_is_served(
    funnel: SimulatedFunnel,
) -> None:
    result = _train(funnel)
    fits = {fit.name: fit for fit in result.candidates}
    assert set(fits) == {"lightgbm", "logistic", "blend"}
    best = min(fits.values(), key=lambda fit: fit.choice_loss)
    assert result.chosen is best
    assert result.scorer.learner is best.learner
    meta = result.scorer.metadata
    assert meta["learner"] == best.name
    assert f"{best.choice_loss:.4f}" in meta["chosen_because"]
    assert [c["name"] for c in meta["candidates"]] == ["lightgbm", "logistic", "blend"]
    # The blend is the mean of the other two's scores, and its reasons add up to its score.
    blend = fits["blend"]
    np.testing.assert_allclose(blend.raw, (fits["lightgbm"].raw + fits["logistic"].raw) / 2)
    values = result.scorer.feature_matrix(
        result.scorer.batch_at(result.holdout[["lead_id", "as_of"]].head(50), funnel.leads,
                               funnel.events)
    ).values  # fmt: skip
    np.testing.assert_allclose(
        blend.learner.contributions(values).sum(axis=1), blend.learner.raw_scores(values),
        atol=1e-9,
    )  # fmt: skip
    # Every candidate was calibrated on the same rows, the newest before the test.
    calibration = result.split.rows["calibration"]
    for fit in fits.values():
        assert np.array_equal(fit.calibration_rows, calibration)


def test_a_logistic_champion_goes_through_the_same_kernel_bundle_and_check(
    funnel: SimulatedFunnel, tmp_path: Path
) -> None:
    result = _train(funnel, candidates=["logistic"])
    scorer = result.scorer
    assert isinstance(scorer.learner, LinearLearner)
    assert result.evaluation.metrics["model_roc_auc"] > result.evaluation.metrics["rules_roc_auc"]
    folder = scorer.save(tmp_path / "bundle")
    loaded = LeadScorer.load(folder)
    assert isinstance(loaded.learner, LinearLearner)
    holdout = result.holdout.head(200)
    spine = holdout[["lead_id", "as_of"]]
    again = loaded.score_snapshots(spine, funnel.leads, funnel.events)
    np.testing.assert_array_equal(again["probability"], holdout["probability"])
    assert again["reasons"].tolist() == holdout["reasons"].tolist()
    # A reason's contribution is the lead's term for that feature, centred.
    batch = loaded.batch_at(spine.head(1), funnel.leads, funnel.events)
    matrix = loaded.feature_matrix(batch)
    terms = loaded.learner.terms(matrix.values)[0] - loaded.learner.centres
    reason = again["reasons"].iloc[0]["for"][0]
    assert reason["contribution"] == pytest.approx(terms[matrix.position[reason["feature"]]])
    # The stored check rows hold the logistic model to its training scores too.
    rows = np.load(folder / "check_rows.npz")["rows"]
    rows[:, -1] += 1e-6
    np.savez(folder / "check_rows.npz", rows=rows)
    with pytest.raises(ScoresDisagree, match="refusing to serve"):
        LeadScorer.load(folder)


def test_lightgbm_keeps_a_minimum_of_rounds_when_early_stopping_stops_at_once(
    funnel: SimulatedFunnel,
) -> None:
    # A learning rate this high overfits at once: early stopping picks a round or two.
    lightgbm = TrainConfig().lightgbm.model_copy(
        update={"learning_rate": 1.0, "num_leaves": 63, "max_depth": -1, "min_child_samples": 5,
                "early_stopping_rounds": 60, "min_rounds": 40}
    )  # fmt: skip
    result = _train(funnel, lightgbm=lightgbm, candidates=["lightgbm"])
    settings = result.chosen.settings
    assert settings["early_stopping_best"] < 40
    assert settings["rounds"] == 40
    assert isinstance(result.scorer.learner, TreeLearner)
    assert result.scorer.learner.booster.num_trees() == 40
    assert "kept the minimum of 40" in result.chosen.notes[0]


def _record_logistic_fits(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The rows of every logistic fit from now on, in order (the fits still happen)."""
    seen: list[np.ndarray] = []
    real_fit = candidates_module.fit_logistic

    def recording_fit(*args: object, **kwargs: object) -> object:
        seen.append(np.asarray(args[1]).copy())
        return real_fit(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(candidates_module, "fit_logistic", recording_fit)
    return seen


def test_walk_forward_blocks_learn_only_from_snapshots_whose_outcome_was_known(
    funnel: SimulatedFunnel, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_logistic_fits(monkeypatch)
    result = _train(funnel, strategy="walk_forward", candidates=["logistic"])
    as_of = result.training_set["as_of"]
    horizon = pd.Timedelta(days=90)
    scored = result.chosen.calibration_rows
    blocks = np.array_split(scored, 3)
    block_fits = seen[len(TrainConfig().logistic.strengths) : -1]
    assert len(block_fits) == 3
    for rows, block in zip(block_fits, blocks, strict=True):
        start = as_of.iloc[block].min()
        # Every row learned from had its whole label window end by the block's start.
        assert (as_of.iloc[rows] + horizon <= start).all()
        assert len(rows) > 0


def test_recency_weights_halve_every_share_of_the_history_back_from_the_newest() -> None:
    order = np.array([40, 10, 30, 20, 99])  # the last row is the test's
    rows = np.array([0, 1, 2, 3])
    weights = recency_weights(order, rows, half_life_share=0.25)
    assert weights is not None
    # Newest (40) first: ages 0, 1/4, 2/4, 3/4 of the four rows.
    np.testing.assert_allclose(weights[[0, 2, 3, 1]], [1, 0.5, 0.25, 0.125])
    assert weights[4] == 1
    assert recency_weights(order, rows, None) is None


def test_calibration_can_learn_from_the_newest_rows_only() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=4_000)
    # The older half converts far less than the newer half at the same raw score.
    shift = np.where(np.arange(4_000) < 2_000, -2.0, 0.0)
    labels = (rng.random(4_000) < 1 / (1 + np.exp(-(raw + shift)))).astype(int)
    frame = pd.DataFrame({"raw_score": raw})
    model = ScoreColumn().fit(frame, labels)
    order = np.arange(4_000)
    everything, _ = choose_calibrator(model, frame, labels, ["sigmoid"], order)
    newest, _ = choose_calibrator(model, frame, labels, ["sigmoid"], order, newest_share=0.5)
    newer = slice(2_000, None)
    gap_all = abs(everything.apply(raw[newer]).mean() - labels[newer].mean())
    gap_newest = abs(newest.apply(raw[newer]).mean() - labels[newer].mean())
    assert gap_newest < 0.01 < gap_all


def test_drift_between_slices_is_reported_and_warned_about() -> None:
    rng = np.random.default_rng(1)
    n = 8_000
    order = np.arange(n)
    newest = order >= 6_000
    labels = (rng.random(n) < np.where(newest, 0.30, 0.05)).astype(int)
    steady = rng.normal(size=n)
    moved = rng.normal(size=n) + np.where(newest, 3.0, 0.0)
    values = np.column_stack([steady, moved])
    split = split_by_order(order, "row", SplitConfig(test_share=0.25))
    report = drift_report(split, order, lambda k: f"row {k:,.0f}", labels, values,
                          ["steady", "moved"])  # fmt: skip
    assert [s.name for s in report.slices] == ["train", "validation", "calibration", "test"]
    assert report.slices[-1].conversion_rate == pytest.approx(0.30, abs=0.03)
    assert any("conversion rate drifts" in w and "test slice" in w for w in report.warnings)
    assert any("moved (PSI" in w for w in report.warnings)
    assert "steady" not in " ".join(report.warnings)
    assert report.feature_psi["steady"] < 0.1


def test_the_served_learner_learns_from_every_outcome_known_when_calibration_starts(
    funnel: SimulatedFunnel, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_logistic_fits(monkeypatch)
    result = _train(funnel, candidates=["logistic"])
    rows = seen[-1]  # the refit after the settings were chosen on the train slice
    as_of = result.training_set["as_of"]
    start = result.split.starts["calibration"]
    assert (as_of.iloc[rows] + pd.Timedelta(days=90) <= start).all()
    # More than the train slice: validation rows and train rows the embargo held back from it.
    assert len(rows) > len(result.split.rows["train"])
    assert np.intersect1d(rows, result.split.rows["calibration"]).size == 0
