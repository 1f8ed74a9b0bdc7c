"""The suggested points table: whole points, few rules, loads back, keeps the model's lift."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.pointintime import AS_OF
from features.training import label_snapshots, snapshot_spine
from models.rules.points import RULE_MQL, RULE_SCORE, EventPoints, NumberBand, PointsRules
from models.rules.scorecard import ScorecardConfig, candidate_rules, fit_scorecard, scorecard_report
from simulator.funnel import SimulatorConfig, simulate_funnel, true_conversion_probability

FEATURES = FeatureConfig()
CONFIG = ScorecardConfig(max_rules=20)
MQL_SHARE = 0.1


@dataclass(frozen=True)
class Fitted:
    leads: pd.DataFrame
    events: pd.DataFrame
    older: pd.DataFrame
    newer: pd.DataFrame
    probability_older: np.ndarray
    probability_newer: np.ndarray
    labels_newer: np.ndarray
    scorecard: PointsRules


def _fit(funnel_seed: int = 2) -> Fitted:
    """A simulated funnel split by time; the 'model' is the simulator's true probability."""
    funnel = simulate_funnel(SimulatorConfig(n_leads=4_000, seed=funnel_seed))
    spine = snapshot_spine(funnel.leads, SnapshotConfig(), funnel.observed_until)
    probability = true_conversion_probability(
        funnel.truth, spine["lead_id"], spine[AS_OF], funnel.horizon_days, given_open=True
    )
    labels = label_snapshots(spine, funnel.leads, funnel.horizon_days)
    cut = int(0.7 * len(spine))  # the spine is in time order: fit on older, report on newer
    older, newer = spine.iloc[:cut].reset_index(drop=True), spine.iloc[cut:].reset_index(drop=True)
    scorecard = fit_scorecard(
        older, funnel.leads, funnel.events, FEATURES, probability[:cut], MQL_SHARE, CONFIG
    )
    return Fitted(
        funnel.leads,
        funnel.events,
        older,
        newer,
        probability[:cut],
        probability[cut:],
        labels[cut:],
        scorecard,
    )


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    return _fit()


def _all_points(rules: PointsRules) -> list[float]:
    return [
        rules.mql_threshold,
        *(spec.points for spec in rules.events.values()),
        *(spec.cap for spec in rules.events.values() if spec.cap is not None),
        *(points for table in rules.attributes.values() for points in table.values()),
        *(band.points for bands in rules.numbers.values() for band in bands),
    ]


def test_scorecard_is_a_small_table_of_whole_points_that_loads_back(
    fitted: Fitted, tmp_path: Path
) -> None:
    card = fitted.scorecard
    assert 5 <= len(card.rule_keys()) <= CONFIG.max_rules
    assert all(float(p).is_integer() for p in _all_points(card))
    assert max(abs(p) for p in _all_points(card)[1:]) >= CONFIG.max_points
    path = tmp_path / "scorecard.yaml"
    path.write_text(card.to_yaml())
    loaded = PointsRules.from_yaml(path)
    assert loaded == card
    pd.testing.assert_frame_equal(
        loaded.score(fitted.newer, fitted.leads, fitted.events, FEATURES),
        card.score(fitted.newer, fitted.leads, fitted.events, FEATURES),
    )


def test_scorecard_marks_the_models_share_of_snapshots(fitted: Fitted) -> None:
    scored = fitted.scorecard.score(fitted.older, fitted.leads, fitted.events, FEATURES)
    assert scored[RULE_MQL].mean() == pytest.approx(MQL_SHARE, abs=0.02)


def test_scorecard_keeps_most_of_the_models_lift_on_newer_snapshots(fitted: Fitted) -> None:
    flat = PointsRules(
        mql_threshold=1,
        events={kind: EventPoints(points=1, cap=5) for kind in FEATURES.event_types},
    )
    args = (fitted.newer, fitted.leads, fitted.events, FEATURES, fitted.labels_newer)
    report = scorecard_report(fitted.scorecard, *args, fitted.probability_newer, flat)
    default = scorecard_report(
        fitted.scorecard, *args, fitted.probability_newer, PointsRules.default()
    )
    # Measured: 0.73 here; with 25 rules 0.64-0.84 over seeds 1-6 and 0.77 on 100k snapshots.
    assert report.lift_kept > 0.6
    assert report.scorecard_list_conversion_rate > 3 * report.base_rate
    # Measured: model 0.88, scorecard 0.82, default rules 0.71, one point per action 0.54.
    assert report.scorecard_roc_auc > report.model_roc_auc - 0.1
    assert (
        report.rules_roc_auc is not None and report.scorecard_roc_auc > report.rules_roc_auc + 0.2
    )
    assert default.rules_roc_auc is not None
    assert report.scorecard_roc_auc > default.rules_roc_auc + 0.08
    assert report.rank_correlation > 0.7
    assert report.n_rules == len(fitted.scorecard.rule_keys())
    assert report.list_size == fitted.scorecard.score(*args[:4])[RULE_MQL].sum()
    assert set(report.as_dict()) >= {"lift_kept", "model_roc_auc", "scorecard_roc_auc"}


def test_candidate_columns_times_points_score_as_the_exported_table(fitted: Fitted) -> None:
    """What is fitted (weights on the candidates' columns) is what the exported table scores,
    event caps included: points p on a rule capped at c events is `cap: |p| x c`."""
    args = (fitted.older.iloc[:2_000], fitted.leads, fitted.events, FEATURES)
    candidates = candidate_rules(*args, CONFIG)
    assert len(candidates.events) >= 8 and candidates.attributes and not candidates.numbers
    design = candidates.points_by_rule_at(*args)
    rng = np.random.default_rng(3)
    points = rng.integers(-30, 31, len(design.keys)).astype(np.float64)
    table = PointsRules(
        mql_threshold=0,
        half_life_days=candidates.half_life_days,
        events={
            kind: EventPoints(points=p, cap=abs(p) * (spec.cap or 1) or None)
            for (kind, spec), p in zip(candidates.events.items(), points, strict=False)
        },
        attributes={
            name: dict(zip(values, points[start:], strict=False))
            for name, values, start in _attribute_offsets(candidates)
        },
    )
    np.testing.assert_allclose(
        table.score(*args)[RULE_SCORE], design.points @ points, rtol=1e-12, atol=1e-9
    )


def _attribute_offsets(rules: PointsRules) -> list[tuple[str, list[str], int]]:
    start = len(rules.events)
    out = []
    for name, table in rules.attributes.items():
        out.append((name, list(table), start))
        start += len(table)
    return out


def test_scorecard_is_deterministic(fitted: Fitted) -> None:
    assert _fit().scorecard == fitted.scorecard


def _planted_table(n: int = 6_000, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """Snapshot mode: one row per lead; referrals have twice the odds, 6+ visits 1.8 times."""
    rng = np.random.default_rng(seed)
    source = rng.choice(np.array(["web", "referral", "event", "partner"], dtype=object), n)
    occupation = rng.choice(np.array(["student", "professional", "other", None], dtype=object), n)
    visits = rng.poisson(4, n).astype(np.float64)
    visits[rng.random(n) < 0.1] = np.nan
    log_odds = (
        -2.0
        + np.log(2.0) * (source == "referral")
        + np.log(1.8) * (visits >= 6)
        + 0.3 * (occupation == "professional")
        - 0.3 * (occupation == "student")
    )
    leads = pd.DataFrame(
        {
            "lead_id": np.arange(n),
            "Lead Source": source,
            "Occupation": occupation,
            "TotalVisits": visits,
            # Noise: an id-like column and a numeric column with no effect.
            "Email Hash": [f"h{i:05d}" for i in rng.permutation(n)],
            "Page Views Per Visit": rng.gamma(2.0, 1.5, n).round(2),
        }
    )
    return leads, 1 / (1 + np.exp(-log_odds))


def test_snapshot_mode_recovers_the_planted_rules() -> None:
    leads, probability = _planted_table()
    spine = pd.DataFrame({"lead_id": leads["lead_id"], AS_OF: pd.Timestamp("2024-06-01", tz="UTC")})
    events = pd.DataFrame(
        {
            "lead_id": pd.Series([], dtype="int64"),
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "event_type": pd.Series([], dtype="str"),
        }
    )
    features = FeatureConfig(
        categorical_columns=["Lead Source", "Occupation", "Email Hash"],
        numeric_columns=["TotalVisits", "Page Views Per Visit"],
        title_column=None,
        email_column=None,
    )
    config = ScorecardConfig(max_rules=6, point_step=5)
    card = fit_scorecard(spine, leads, events, features, probability, 0.2, config)
    assert card.attributes["Lead Source"] == {"referral": 30}, "the strongest rule, alone"
    assert card.numbers["TotalVisits"] == [NumberBand(at_least=6, points=25)]
    # 0.3 / log(2) x 30 = 13 points, to the nearest 5.
    assert card.attributes["Occupation"] == {"professional": 15, "student": -15}
    assert "Email Hash" not in card.attributes, "no id value applies to 1% of leads"
    assert not card.events
    assert all(p % 5 == 0 for p in _all_points(card))
    mql = card.score(spine, leads, events, features)[RULE_MQL]
    assert mql.mean() == pytest.approx(0.2, abs=0.05)


def test_scorecard_refuses_probabilities_it_cannot_approximate(fitted: Fitted) -> None:
    args = (fitted.older, fitted.leads, fitted.events, FEATURES)
    with pytest.raises(ValueError, match="model_probability has shape"):
        fit_scorecard(*args, fitted.probability_older[:-1], MQL_SHARE, CONFIG)
    with pytest.raises(ValueError, match="mql_share"):
        fit_scorecard(*args, fitted.probability_older, 1.0, CONFIG)
    with pytest.raises(DataContractError, match="same probability"):
        fit_scorecard(*args, np.full(len(fitted.older), 0.1), MQL_SHARE, CONFIG)


def test_scorecard_scores_rule_columns_from_the_feature_config(fitted: Fitted) -> None:
    config = CONFIG.model_copy(update={"attribute_columns": ["budget"]})
    with pytest.raises(DataContractError, match="attribute 'budget'"):
        fit_scorecard(
            fitted.older,
            fitted.leads,
            fitted.events,
            FEATURES,
            fitted.probability_older,
            MQL_SHARE,
            config,
        )
