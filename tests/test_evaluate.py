"""Evaluation: metrics against scikit-learn, ECE, deciles, gain, list comparison, artifacts."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from models.reports.evaluation import (
    RULES_BASIS,
    RULES_BASIS_NOTE,
    Scores,
    classification_metrics,
    compare_at_equal_volume,
    compare_lists,
    decile_table,
    evaluate,
    expected_calibration_error,
    gain_curve,
    metric_key_part,
    mql_metrics,
    reliability_table,
    summary_html,
    ties_at_threshold,
    top_k,
    write_artifacts,
)

# Undefined metrics must come out as NaN quietly, not through scikit-learn or numpy warnings.
pytestmark = pytest.mark.filterwarnings("error")

# What the brief allows in an MLflow metric key.
MLFLOW_KEY = re.compile(r"^[A-Za-z0-9_\-. /]+$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and outcomes drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 1.0, n)
    return rng.binomial(1, p), p


def holdout(n: int = 600, seed: int = 3) -> tuple[np.ndarray, Scores, Scores, pd.Series]:
    """A small holdout: an informative model, coarse rules, a segment with no conversions."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    truth = 1.0 / (1.0 + np.exp(-(1.5 * signal - 2.0)))
    source = pd.Series(rng.choice(["Paid Search", "web/inar", "cold_list"], n))
    source[rng.uniform(size=n) < 0.05] = None
    y = rng.binomial(1, truth)
    y[(source == "cold_list").to_numpy()] = 0
    model = Scores("model", truth, truth > 0.3)
    points = np.round(signal * 2 + rng.normal(0, 1.5, n))
    rules = Scores("rules", np.clip((points + 6) / 30, 0, 1), points >= 3)
    return y, model, rules, source


# --- one scorer --------------------------------------------------------------------------------


def test_classification_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0, 1)
    got = classification_metrics(y, p)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert got["log_loss"] == pytest.approx(log_loss(y, p))
    assert got["brier"] == pytest.approx(brier_score_loss(y, p))
    assert got["base_rate"] == pytest.approx(y.mean())
    assert got["mean_probability"] == pytest.approx(p.mean())


def test_reliability_table_bins_like_calibration_curve_and_counts_every_lead() -> None:
    y, p = calibrated(2_000, seed=1)
    table = reliability_table(y, p, n_bins=8)
    observed, predicted = calibration_curve(y, p, n_bins=8, strategy="quantile")
    np.testing.assert_allclose(table["observed_rate"], observed)
    np.testing.assert_allclose(table["mean_predicted"], predicted)
    assert table["count"].sum() == 2_000
    assert list(table["bin"]) == list(range(1, 9))


def test_reliability_table_keeps_tied_probabilities_in_one_bin() -> None:
    # Coarse scores (like isotonic-mapped rules): quantile edges coincide, bins merge.
    p = np.repeat([0.1, 0.2, 0.3, 0.4], [40, 30, 20, 10])
    y = (np.arange(100) % 4 == 0).astype(int)
    table = reliability_table(y, p, n_bins=5)
    observed, predicted = calibration_curve(y, p, n_bins=5, strategy="quantile")
    np.testing.assert_allclose(table["observed_rate"], observed)
    np.testing.assert_allclose(table["mean_predicted"], predicted)
    assert list(table["count"]) == [40, 30, 20, 10]
    np.testing.assert_allclose(table["mean_predicted"], [0.1, 0.2, 0.3, 0.4])


def test_ece_by_hand_on_two_bins() -> None:
    # Bins {0.1, 0.2} and {0.7, 0.8}: gaps |0.15 - 0.5| and |0.75 - 0.5|, each half the leads.
    y = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.2, 0.7, 0.8])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.25)


def test_ece_is_small_for_calibrated_and_large_for_miscalibrated_probabilities() -> None:
    n, n_bins = 100_000, 10
    y, p = calibrated(n, seed=2)
    # Each bin's observed rate has standard error <= sqrt(0.25 / (n / n_bins)); allow 3 of them.
    tolerance = 3 * math.sqrt(0.25 * n_bins / n)
    assert classification_metrics(y, p, n_bins)["ece"] < tolerance
    assert classification_metrics(y, np.clip(2 * p, 0, 1), n_bins)["ece"] > 0.15


def test_single_class_gives_nan_aucs_and_still_the_defined_metrics() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.4])
    got = classification_metrics(np.zeros(4, dtype=int), p)
    assert math.isnan(got["roc_auc"])
    assert math.isnan(got["pr_auc"])
    assert got["log_loss"] == pytest.approx(log_loss([0, 0, 0, 0], p, labels=[0, 1]))
    assert got["brier"] == pytest.approx(np.mean(p**2))
    assert got["base_rate"] == 0.0


def test_mql_metrics_by_hand_and_empty_list_is_nan() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 1, 0, 0, 0])  # base rate 0.3
    mql = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    got = mql_metrics(y, mql)
    assert got == pytest.approx(
        {"mql_count": 3, "mql_share": 0.3, "precision": 2 / 3, "recall": 2 / 3, "lift": 20 / 9}
    )
    empty = mql_metrics(y, np.zeros(10, dtype=bool))
    assert empty["mql_count"] == 0
    assert math.isnan(empty["precision"])
    assert math.isnan(empty["lift"])


# --- deciles and gain --------------------------------------------------------------------------


def test_deciles_on_a_monotone_signal() -> None:
    rng = np.random.default_rng(4)
    score = rng.uniform(size=1_000)
    y = rng.binomial(1, score**3)
    table = decile_table(y, score)
    assert list(table["decile"]) == list(range(1, 11))
    assert list(table["count"]) == [100] * 10
    assert table["count"].sum() == 1_000
    assert table["conversions"].sum() == y.sum()
    assert table["conversion_rate"].iloc[0] == table["conversion_rate"].max()
    assert table["conversion_rate"].iloc[0] > 2 * table["conversion_rate"].iloc[5]
    assert table["cumulative_capture"].iloc[-1] == pytest.approx(1.0)
    assert table["lift"].iloc[0] == pytest.approx(table["conversion_rate"].iloc[0] / y.mean())


def test_deciles_keep_tied_scores_together() -> None:
    score = np.r_[np.linspace(1.0, 0.5, 70), np.zeros(30)]  # the lowest 30% are tied
    y = np.r_[np.ones(5), np.zeros(95)].astype(int)
    table = decile_table(y, score)
    assert table["count"].sum() == 100
    # The tied 30 have average rank 85.5: all in decile 9, none left for decile 10.
    assert table.loc[table["decile"] == 9, "count"].item() == 30
    assert table.loc[table["decile"] == 10, "count"].item() == 0
    assert math.isnan(table.loc[table["decile"] == 10, "conversion_rate"].item())


def test_gain_curve_runs_from_origin_to_one_one() -> None:
    rng = np.random.default_rng(5)
    score = rng.uniform(size=400)
    y = rng.binomial(1, score)
    gain = gain_curve(y, score)
    assert len(gain) == 101
    first, last = gain.iloc[0], gain.iloc[-1]
    assert (first["share_contacted"], first["share_of_conversions_captured"]) == (0.0, 0.0)
    assert last["share_contacted"] == pytest.approx(1.0)
    assert last["share_of_conversions_captured"] == pytest.approx(1.0)
    assert (np.diff(gain["share_of_conversions_captured"]) >= 0).all()
    assert gain["lift"].iloc[10] > 1.3  # an informative score beats random at the top


def test_gain_curve_of_random_scores_has_lift_about_one() -> None:
    rng = np.random.default_rng(6)
    y = rng.binomial(1, 0.3, 20_000)
    gain = gain_curve(y, rng.uniform(size=20_000))
    # From 10% contacted on, ~600+ conversions in the list: lift's standard error is ~0.035.
    np.testing.assert_allclose(gain["lift"].iloc[10:], 1.0, atol=0.15)


def test_gain_curve_of_tied_scores_is_the_diagonal_whatever_the_row_order() -> None:
    y = np.r_[np.ones(10), np.zeros(90)].astype(int)  # every conversion comes first
    gain = gain_curve(y, np.full(100, 0.5))
    np.testing.assert_allclose(gain["share_of_conversions_captured"], gain["share_contacted"])


# --- comparing lists ---------------------------------------------------------------------------

Y8 = np.array([1, 0, 1, 0, 0, 0, 0, 1])
MODEL8 = np.array([1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
RULES8 = np.array([1, 0, 0, 1, 1, 0, 1, 0], dtype=bool)


def test_compare_lists_on_a_hand_made_example() -> None:
    got = compare_lists(Y8, MODEL8, RULES8)
    # both: rows 0, 6; model only: 1, 2; rules only: 3, 4; neither: 5, 7.
    expected = {
        "model_count": 4,
        "rules_count": 4,
        "both_count": 2,
        "model_only_count": 2,
        "rules_only_count": 2,
        "neither_count": 2,
        "model_conversions": 2,
        "rules_conversions": 1,
        "both_conversions": 1,
        "model_only_conversions": 1,
        "rules_only_conversions": 0,
        "neither_conversions": 1,
        "model_conversion_rate": 0.5,
        "rules_conversion_rate": 0.25,
        "both_conversion_rate": 0.5,
        "model_only_conversion_rate": 0.5,
        "rules_only_conversion_rate": 0.0,
        "neither_conversion_rate": 0.5,
        "overlap_jaccard": 2 / 6,
        "conversion_ratio": 2.0,
    }
    assert got == pytest.approx(expected)
    parts = ("both_count", "model_only_count", "rules_only_count", "neither_count")
    assert sum(got[k] for k in parts) == len(Y8)
    assert got["model_count"] == got["both_count"] + got["model_only_count"]


def test_compare_lists_with_empty_lists_gives_nan_rates() -> None:
    nobody = np.zeros(8, dtype=bool)
    got = compare_lists(Y8, nobody, nobody)
    assert got["neither_count"] == 8
    for key in ("model_conversion_rate", "rules_conversion_rate", "conversion_ratio"):
        assert math.isnan(got[key])
    assert math.isnan(got["overlap_jaccard"])


def test_top_k_breaks_ties_by_position() -> None:
    score = np.array([0.2, 0.9, 0.5, 0.9, 0.5, 0.1])
    assert top_k(score, 3).tolist() == [False, True, True, True, False, False]
    assert not top_k(score, 0).any()
    assert top_k(score, 6).all()
    with pytest.raises(ValueError, match="k must be between"):
        top_k(score, 7)


def test_equal_volume_takes_exactly_as_many_model_leads_as_rules_mqls() -> None:
    probability = np.array([0.9, 0.8, 0.8, 0.1, 0.5, 0.2, 0.3, 0.8])
    rules = np.array([0, 0, 0, 1, 1, 0, 1, 0], dtype=bool)  # k = 3
    got = compare_at_equal_volume(Y8, probability, rules)
    assert got["model_count"] == got["rules_count"] == 3
    # Top 3: row 0, then the first two of the tied 0.8s (rows 1 and 2, not 7).
    expected_list = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    assert got == pytest.approx(compare_lists(Y8, expected_list, rules), nan_ok=True)


# --- the whole evaluation ----------------------------------------------------------------------

SCORER_KEYS = [
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "mean_probability",
    "mql_count",
    "mql_share",
    "mql_precision",
    "mql_recall",
    "mql_lift",
    "ties_at_threshold",
    "ties_at_threshold_share",
    "top_decile_lift",
    *(f"decile_{d}_conversion_rate" for d in range(1, 11)),
]
LIST_KEYS = [
    f"{group}_{what}"
    for group in ("model", "rules", "both", "model_only", "rules_only", "neither")
    for what in ("count", "conversions", "conversion_rate")
] + ["overlap_jaccard", "conversion_ratio"]
SEGMENT_KEYS = [
    "count",
    "base_rate",
    "model_roc_auc",
    "rules_roc_auc",
    "equal_volume_model_count",
    "equal_volume_rules_count",
    "equal_volume_model_conversion_rate",
    "equal_volume_rules_conversion_rate",
    "equal_volume_conversion_ratio",
]


def test_evaluate_produces_the_documented_keys_and_segments() -> None:
    y, model, rules, source = holdout()
    result = evaluate(y, model, rules, source, segment_name="lead_source")
    segments = ["Paid_Search", "web_inar", "cold_list", "missing"]
    expected = (
        {"n_leads", "base_rate"}
        | {f"{who}_{key}" for who in ("model", "rules") for key in SCORER_KEYS}
        | {f"{setting}_{key}" for setting in ("equal_volume", "own_threshold") for key in LIST_KEYS}
        | {f"segment_{s}_{key}" for s in segments for key in SEGMENT_KEYS}
    )
    assert set(result.metrics) == expected
    assert all(MLFLOW_KEY.match(key) for key in result.metrics)
    assert all(isinstance(value, float) for value in result.metrics.values())
    assert set(result.tables) == {
        "reliability_model",
        "reliability_rules",
        "deciles_model",
        "deciles_rules",
        "gain_model",
        "gain_rules",
        "by_segment",
    }
    m = result.metrics
    assert m["model_roc_auc"] == pytest.approx(roc_auc_score(y, model.probability))
    assert m["equal_volume_model_count"] == m["rules_mql_count"] == rules.mql.sum()
    assert m["own_threshold_model_count"] == model.mql.sum()

    by_segment = result.tables["by_segment"].set_index("lead_source")
    assert by_segment["count"].sum() == len(y)
    assert by_segment.loc["(missing)", "count"] == source.isna().sum()
    # No conversions among cold leads: counted, base rate 0, AUC undefined, no crash.
    cold = by_segment.loc["cold_list"]
    assert cold["count"] == (source == "cold_list").sum()
    assert cold["base_rate"] == 0.0
    assert np.isnan(cold["model_roc_auc"])
    assert math.isnan(m["segment_cold_list_rules_roc_auc"])
    assert m["segment_Paid_Search_model_roc_auc"] == pytest.approx(
        roc_auc_score(y[source == "Paid Search"], model.probability[source == "Paid Search"])
    )
    # The per-segment lists are the global equal-volume lists: their sizes add up to k.
    assert by_segment["model_list_count"].sum() == rules.mql.sum()


def test_ties_at_the_threshold_are_counted_and_reported() -> None:
    # An isotonic step of 6 leads at 0.2 holds the model's weakest MQLs.
    probability = np.array([0.9, 0.5, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1])
    mql = probability >= 0.2
    assert ties_at_threshold(probability, mql) == 6
    assert math.isnan(ties_at_threshold(probability, np.zeros(10, dtype=bool)))
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    rules = Scores("rules", np.linspace(0.1, 0.9, 10), np.arange(10) < 2)
    result = evaluate(y, Scores("model", probability, mql), rules)
    assert result.metrics["model_ties_at_threshold"] == 6
    assert result.metrics["model_ties_at_threshold_share"] == pytest.approx(0.6)
    assert result.metrics["rules_ties_at_threshold"] == 1
    page = summary_html(result, "t")
    assert "6 of 10 leads (60.0%) tie exactly at the" in " ".join(page.split())
    assert "Leads tied at the MQL threshold" in page


def test_evaluate_without_segment_and_with_a_single_class_holdout() -> None:
    _, model, rules, _ = holdout(n=200)
    result = evaluate(np.zeros(200, dtype=int), model, rules)
    assert math.isnan(result.metrics["model_roc_auc"])
    assert math.isnan(result.metrics["equal_volume_conversion_ratio"])
    assert result.metrics["base_rate"] == 0.0
    assert result.tables["by_segment"].empty
    assert not any(key.startswith("segment_") for key in result.metrics)


def test_segment_values_become_safe_distinct_metric_keys() -> None:
    assert metric_key_part("Paid Search / EMEA") == "Paid_Search_EMEA"
    assert metric_key_part(None) == "missing"
    assert metric_key_part("ü") == "blank"
    y = np.array([0, 1, 0, 1])
    model = Scores("model", np.array([0.1, 0.9, 0.2, 0.8]), np.array([0, 1, 0, 1]))
    segment = pd.Series(["a b", "a_b", "a b", "a_b"])  # both sanitise to "a_b"
    result = evaluate(y, model, model, segment)
    assert list(result.tables["by_segment"]["key"]) == ["a_b", "a_b_2"]
    assert "segment_a_b_2_count" in result.metrics


def test_scores_reject_bad_inputs() -> None:
    with pytest.raises(ValueError, match="outside"):
        Scores("model", np.array([0.5, 1.2]), np.array([True, False]))
    with pytest.raises(ValueError, match="shape"):
        Scores("model", np.array([0.5, 0.2]), np.array([True]))
    with pytest.raises(ValueError, match="0/1"):
        classification_metrics(np.array([0, 2]), np.array([0.1, 0.2]))


# --- artifacts ---------------------------------------------------------------------------------


def test_write_artifacts_renders_figures_json_and_html(tmp_path: Path) -> None:
    y, model, rules, source = holdout()
    result = evaluate(y, model, rules, source)
    written = write_artifacts(result, y, model, rules, tmp_path / "eval")
    names = {path.name for path in written}
    assert names == {
        "evaluation.json",
        "reliability.png",
        "gain_lift.png",
        "score_distribution.png",
        "summary.html",
    }
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == sorted(names)  # no temporaries
    for path in written:
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data.startswith(PNG_SIGNATURE)
            assert len(data) > 10_000  # a drawn chart, not an empty canvas

    def no_nan(token: str) -> None:
        raise AssertionError(f"{token} is not JSON")

    document = json.loads((tmp_path / "eval/evaluation.json").read_text(), parse_constant=no_nan)
    assert document["metrics"]["model_roc_auc"] == pytest.approx(result.metrics["model_roc_auc"])
    assert document["metrics"]["segment_cold_list_model_roc_auc"] is None
    assert document["rules_basis"] == RULES_BASIS == "calibrated probability"
    assert (
        document["metrics"]["model_ties_at_threshold"] == result.metrics["model_ties_at_threshold"]
    )
    assert len(document["tables"]["deciles_model"]) == 10

    page = (tmp_path / "eval/summary.html").read_text()
    assert f"{result.metrics['model_roc_auc']:.3f}" in page
    assert f"{result.metrics['rules_roc_auc']:.3f}" in page
    assert f"{result.metrics['equal_volume_conversion_ratio']:.2f}" in page
    assert "web/inar" in page
    # Which rules figures these are is named on the page.
    assert html.escape(RULES_BASIS_NOTE) in page
    assert "<link" not in page and "<script" not in page and "http" not in page


def test_summary_html_escapes_what_it_is_given() -> None:
    y, model, rules, _ = holdout(n=200)
    segment = pd.Series(["<b>x</b>", "ok"] * 100)
    page = summary_html(evaluate(y, model, rules, segment), title="A & B <i>")
    assert "<title>A &amp; B &lt;i&gt;</title>" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page
