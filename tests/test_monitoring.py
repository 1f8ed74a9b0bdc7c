"""Monitoring: PSI and drift levels, and outcomes of logged predictions on a hand-made example."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from models.reports.evaluation import reliability_table
from models.reports.monitoring import (
    CLOSED_BEFORE,
    CONVERTED,
    NOT_CONVERTED,
    PENDING,
    drift_level,
    drift_report,
    expand_features,
    outcome_report,
    population_stability_index,
    reference_distribution,
    resolve_predictions,
)

# Undefined numbers must come out as NaN quietly, not through numpy or pandas warnings.
pytestmark = pytest.mark.filterwarnings("error")

N = 100_000


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


# --- PSI ---------------------------------------------------------------------------------------


def test_reference_distribution_has_quantile_bins_and_missing_share(
    rng: np.random.Generator,
) -> None:
    values = rng.normal(size=1_000)
    values[:100] = np.nan
    reference = reference_distribution(values, bins=10)
    edges, shares = reference["edges"], reference["shares"]
    assert edges[0] == -math.inf and edges[-1] == math.inf
    assert len(edges) == 11 and len(shares) == 10
    assert np.all(np.diff(edges) > 0)
    assert reference["missing"] == [pytest.approx(0.1)]
    assert shares == pytest.approx([0.09] * 10, abs=0.002)
    assert sum(shares) + reference["missing"][0] == pytest.approx(1.0)


def test_psi_by_hand() -> None:
    reference = {"edges": [-math.inf, 0.0, math.inf], "shares": [0.5, 0.5], "missing": [0.0]}
    # Current shares 0.75 / 0.25; a value on an edge falls in the lower bin.
    psi = population_stability_index(reference, np.array([-1.0, 0.0, -2.0, 1.0]))
    assert psi == pytest.approx(0.25 * math.log(1.5) + 0.25 * math.log(2.0))


def test_psi_is_near_zero_for_the_same_distribution(rng: np.random.Generator) -> None:
    reference = reference_distribution(rng.normal(size=N))
    psi = population_stability_index(reference, rng.normal(size=N))
    assert 0.0 <= psi < 0.01
    assert drift_level(psi) == "stable"


def test_psi_is_major_for_a_clearly_shifted_distribution(rng: np.random.Generator) -> None:
    reference = reference_distribution(rng.normal(size=N))
    psi = population_stability_index(reference, rng.normal(loc=1.0, size=N))
    assert psi > 0.25
    assert drift_level(psi) == "major"


def test_psi_sees_a_jump_in_missing_values(rng: np.random.Generator) -> None:
    reference = reference_distribution(rng.normal(size=N))
    current = rng.normal(size=N)
    current[: N // 5] = np.nan
    assert population_stability_index(reference, current) > 0.25


def test_psi_is_stable_when_the_missing_share_is_unchanged(rng: np.random.Generator) -> None:
    before, after = rng.normal(size=N), rng.normal(size=N)
    before[: N // 10] = np.nan
    after[-N // 10 :] = np.nan
    assert population_stability_index(reference_distribution(before), after) < 0.01


def test_constant_column(rng: np.random.Generator) -> None:
    reference = reference_distribution(np.full(500, 3.0))
    assert reference["edges"] == [-math.inf, 3.0, math.inf]
    assert reference["shares"] == [1.0, 0.0]
    assert population_stability_index(reference, np.full(50, 3.0)) == pytest.approx(0.0)
    assert population_stability_index(reference, np.full(50, 4.0)) > 0.25
    assert population_stability_index(reference, np.full(50, np.nan)) > 0.25


def test_all_missing_reference() -> None:
    reference = reference_distribution(np.full(10, np.nan))
    assert reference == {"edges": [-math.inf, math.inf], "shares": [0.0], "missing": [1.0]}
    assert population_stability_index(reference, np.full(5, np.nan)) == pytest.approx(0.0)
    assert population_stability_index(reference, np.ones(5)) > 0.25


def test_values_outside_the_reference_range_land_in_the_end_bins(
    rng: np.random.Generator,
) -> None:
    reference = reference_distribution(rng.uniform(0.0, 1.0, size=10_000))
    above = population_stability_index(reference, np.full(100, 50.0))
    below = population_stability_index(reference, np.array([-np.inf, -1e9] * 50))
    for psi in (above, below):
        assert math.isfinite(psi) and psi > 0.25
    # All mass in one of ten bins of 0.1: (1 - 0.1) ln 10 + 9 * (1e-4 - 0.1) ln(1e-3).
    expected = 0.9 * math.log(10) + 9 * (1e-4 - 0.1) * math.log(1e-3)
    assert above == pytest.approx(expected, rel=0.01)


def test_discrete_values_get_fewer_bins(rng: np.random.Generator) -> None:
    values = rng.choice([0.0, 1.0, 2.0], p=[0.7, 0.2, 0.1], size=10_000)
    reference = reference_distribution(values, bins=10)
    assert reference["edges"][1:-1] == [0.0, 1.0, 2.0]
    assert reference["shares"][:3] == pytest.approx([0.7, 0.2, 0.1], abs=0.02)
    assert population_stability_index(reference, values) == pytest.approx(0.0)


def test_reference_survives_json_and_edges_are_never_read(rng: np.random.Generator) -> None:
    reference = reference_distribution(rng.normal(size=1_000))
    current = rng.normal(size=500)
    restored = json.loads(json.dumps(reference))
    assert population_stability_index(restored, current) == population_stability_index(
        reference, current
    )
    finite_ends = {**reference, "edges": [-10.0, *reference["edges"][1:-1], 10.0]}
    assert population_stability_index(finite_ends, current * 100) == pytest.approx(
        population_stability_index(reference, current * 100)
    )


def test_psi_of_nothing_is_nan_and_bad_references_are_refused() -> None:
    reference = {"edges": [-math.inf, 0.0, math.inf], "shares": [0.5, 0.5], "missing": [0.0]}
    assert math.isnan(population_stability_index(reference, np.array([])))
    with pytest.raises(ValueError, match="sum to 1"):
        population_stability_index({**reference, "shares": [0.5, 0.6]}, np.ones(3))
    with pytest.raises(ValueError, match="edges"):
        population_stability_index({**reference, "shares": [1.0]}, np.ones(3))
    with pytest.raises(ValueError, match="no values"):
        reference_distribution(np.array([]))
    with pytest.raises(ValueError, match="bins"):
        reference_distribution(np.ones(3), bins=0)


@pytest.mark.parametrize(
    ("psi", "level"),
    [(0.0, "stable"), (0.099, "stable"), (0.1, "moderate"), (0.25, "moderate"), (0.26, "major")],
)
def test_drift_level(psi: float, level: str) -> None:
    assert drift_level(psi) == level


def test_drift_report(rng: np.random.Generator) -> None:
    n = 20_000
    reference = {
        "same": reference_distribution(rng.normal(size=n)),
        "nudged": reference_distribution(rng.normal(size=n)),
        "moved": reference_distribution(rng.normal(size=n)),
        "not_scored": reference_distribution(rng.normal(size=n)),
    }
    current = pd.DataFrame(
        {
            "same": rng.normal(size=n),
            "nudged": rng.normal(loc=0.45, size=n),
            "moved": pd.array(np.round(rng.normal(loc=2.0, size=n)), dtype="Int64"),
            "not_in_reference": rng.normal(size=n),
        }
    )
    report = drift_report(reference, current)
    assert list(report.columns) == ["name", "psi", "level", "n"]
    assert list(report["name"]) == ["moved", "nudged", "same"]  # largest shift first
    assert list(report["level"]) == ["major", "moderate", "stable"]
    assert (report["n"] == n).all()


def test_drift_report_on_no_rows_and_on_text() -> None:
    reference = {"x": {"edges": [-math.inf, math.inf], "shares": [1.0], "missing": [0.0]}}
    empty = drift_report(reference, pd.DataFrame({"x": pd.Series([], dtype="float64")}))
    assert empty["level"].tolist() == ["no data"] and math.isnan(empty["psi"].iloc[0])
    with pytest.raises(TypeError, match="'x'"):
        drift_report(reference, pd.DataFrame({"x": ["a", "b"]}))


def test_expand_features() -> None:
    logged = pd.DataFrame({"features": ['{"visits": 3, "industry": "retail"}', None, "{}"]})
    features = expand_features(logged)
    assert features["visits"].tolist()[0] == 3 and features["industry"].tolist()[0] == "retail"
    assert features.iloc[1:].isna().all().all()


# --- outcomes ----------------------------------------------------------------------------------

HORIZON = 30
NOW = pd.Timestamp("2025-03-01", tz="UTC")


def _t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# (lead, as_of, tier, probability, mql, rule_mql, expected status at NOW)
CASES = [
    ("a", "2025-01-01", "A", 0.80, True, False, CONVERTED),  # won on 01-10
    ("b", "2025-01-01", "A", 0.60, True, True, NOT_CONVERTED),  # lost
    ("c", "2025-01-01", "B", 0.30, False, True, NOT_CONVERTED),  # no outcome, horizon over
    ("d", "2025-02-20", "B", 0.40, False, False, PENDING),  # no outcome, horizon running
    ("e", "2025-02-25", "C", 0.10, False, True, CONVERTED),  # won before its horizon ends
    ("f", "2025-01-01", "C", 0.05, False, False, NOT_CONVERTED),  # won after its horizon
    ("g", "2025-02-01", "D", 0.02, False, False, CLOSED_BEFORE),  # lost before as_of
    ("a", "2025-01-05", "A", 0.85, True, True, CONVERTED),  # a scored again
    ("h", "2025-02-20", "D", 0.03, False, False, PENDING),  # won after NOW: not known yet
    ("i", "2025-01-01", "B", 0.35, False, False, NOT_CONVERTED),  # won exactly at the deadline
]
OUTCOMES = [
    ("a", 1, "2025-01-10"),
    ("b", 0, "2025-01-20"),
    ("e", 1, "2025-02-27"),
    ("f", 1, "2025-02-15"),
    ("g", 0, "2025-01-15"),
    ("h", 1, "2025-03-05"),
    ("i", 1, "2025-01-31"),
]


def _predictions() -> pd.DataFrame:
    as_of = pd.Series([_t(case[1]) for case in CASES])
    return pd.DataFrame(
        {
            "lead_id": [case[0] for case in CASES],
            "scored_at": as_of + pd.Timedelta(seconds=1),
            "as_of": as_of,
            "model_version": "3",
            "probability": [case[3] for case in CASES],
            "mql": pd.array([case[4] for case in CASES], dtype="boolean"),
            "tier": [case[2] for case in CASES],
            "rule_score": 10.0,
            "rule_mql": pd.array([case[5] for case in CASES], dtype="boolean"),
        }
    )


def _outcomes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [row[0] for row in OUTCOMES],
            "outcome": [row[1] for row in OUTCOMES],
            "closed_at": [_t(row[2]) for row in OUTCOMES],
        }
    )


def test_resolve_predictions_by_horizon() -> None:
    resolved = resolve_predictions(_predictions(), _outcomes(), HORIZON, NOW)
    assert resolved["status"].tolist() == [case[6] for case in CASES]
    expected = {CONVERTED: 1, NOT_CONVERTED: 0}
    assert resolved["converted"].tolist() == [expected.get(case[6], pd.NA) for case in CASES]


def test_only_matured_waits_for_the_whole_horizon() -> None:
    resolved = resolve_predictions(_predictions(), _outcomes(), HORIZON, NOW, only_matured=True)
    status = dict(zip(range(len(CASES)), resolved["status"], strict=True))
    assert status[4] == PENDING  # e: won, but its horizon ends after NOW
    assert status[6] == CLOSED_BEFORE
    assert [status[k] for k in (0, 1, 2, 5, 7, 9)] == [
        CONVERTED,
        NOT_CONVERTED,
        NOT_CONVERTED,
        NOT_CONVERTED,
        CONVERTED,
        NOT_CONVERTED,
    ]


def test_outcome_report_by_tier() -> None:
    by_tier = outcome_report(_predictions(), _outcomes(), HORIZON, NOW)["by_tier"]
    expected = pd.DataFrame(
        {
            "tier": ["A", "B", "C", "D"],
            "predictions": [3, 3, 2, 2],
            "resolved": [3, 2, 2, 0],
            "converted": [2, 0, 1, 0],
            "conversion_rate": [2 / 3, 0.0, 0.5, math.nan],
            "mean_probability": [0.75, 0.325, 0.075, math.nan],
        }
    ).astype({"tier": "str"})
    pd.testing.assert_frame_equal(by_tier, expected)


def test_outcome_report_model_vs_rules() -> None:
    table = outcome_report(_predictions(), _outcomes(), HORIZON, NOW)["model_vs_rules"]
    expected = pd.DataFrame(
        {
            "list": ["model", "rules", "both", "model_only", "rules_only", "neither"],
            "count": [3, 4, 2, 1, 2, 2],
            "conversions": [2, 2, 1, 1, 1, 0],
            "conversion_rate": [2 / 3, 0.5, 0.5, 1.0, 0.5, 0.0],
        }
    )
    pd.testing.assert_frame_equal(table, expected)


def test_outcome_report_summary_and_calibration() -> None:
    report = outcome_report(_predictions(), _outcomes(), HORIZON, NOW)
    summary = report["summary"].iloc[0]
    assert summary["predictions"] == 10 and summary["leads"] == 9
    assert (summary["resolved"], summary["pending"], summary["closed_before_as_of"]) == (7, 2, 1)
    assert summary["converted"] == 3
    assert summary["resolved_share"] == pytest.approx(0.7)
    assert summary["conversion_rate"] == pytest.approx(3 / 7)
    assert summary["conversion_ratio"] == pytest.approx((2 / 3) / 0.5)
    assert math.isnan(summary["ece"])  # 7 resolved predictions are too few
    assert summary["now"] == NOW

    resolved = [i for i, case in enumerate(CASES) if case[6] in (CONVERTED, NOT_CONVERTED)]
    y = [int(CASES[i][6] == CONVERTED) for i in resolved]
    probability = [CASES[i][3] for i in resolved]
    pd.testing.assert_frame_equal(report["calibration"], reliability_table(y, probability))
    with_ece = outcome_report(_predictions(), _outcomes(), HORIZON, NOW, min_resolved_for_ece=7)
    assert math.isfinite(with_ece["summary"]["ece"].iloc[0])


def test_now_defaults_to_the_latest_time_seen() -> None:
    report = outcome_report(_predictions(), _outcomes(), HORIZON)
    assert report["summary"]["now"].iloc[0] == _t("2025-03-05")  # h's close
    # At 03-05, h's win is known.
    assert report["summary"]["converted"].iloc[0] == 4


def test_integer_and_text_lead_ids_meet_and_later_outcomes_win() -> None:
    predictions = _predictions().iloc[[0]].assign(lead_id=[17])
    outcomes = pd.DataFrame(
        {
            "lead_id": ["17", "17"],
            "outcome": [0, 1],
            "closed_at": [_t("2025-01-03"), _t("2025-01-04")],
        }
    )
    resolved = resolve_predictions(predictions, outcomes, HORIZON, NOW)
    assert resolved["status"].tolist() == [CONVERTED]


def test_outcome_report_with_nothing_logged() -> None:
    empty = _predictions().iloc[:0]
    report = outcome_report(empty, _outcomes().iloc[:0], HORIZON, NOW)
    assert len(report["by_tier"]) == 0 and len(report["calibration"]) == 0
    summary = report["summary"].iloc[0]
    assert summary["predictions"] == 0 and math.isnan(summary["conversion_rate"])


def test_naive_times_and_bad_outcomes_are_refused() -> None:
    naive = _predictions().assign(as_of=lambda f: f["as_of"].dt.tz_localize(None))
    with pytest.raises(ValueError, match="timezone"):
        resolve_predictions(naive, _outcomes(), HORIZON, NOW)
    with pytest.raises(ValueError, match="won"):
        resolve_predictions(_predictions(), _outcomes().assign(outcome=2), HORIZON, NOW)
    with pytest.raises(ValueError, match="lack columns: tier"):
        resolve_predictions(_predictions().drop(columns="tier"), _outcomes(), HORIZON, NOW)
