"""Reasons: phrases per feature family, picks checked against a real LightGBM model's contributions,
batch equal to one lead at a time, and the per-lead path using only precomputed lookups."""

from __future__ import annotations

import math
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

import models.scoring.reasons as explain
from features.build import build_features, feature_names
from features.config import FeatureConfig
from features.fit import SENIORITY_LEVELS
from features.vocabulary import EVENT_TYPES
from models.scoring.reasons import (
    EVENT_WORDS,
    MIN_CONTRIBUTION,
    SENIORITY_WORDS,
    Reason,
    ReasonWriter,
    _reason,
    format_number,
)
from tests.conftest import START, random_funnel

DEFAULT = FeatureConfig()
SNAPSHOT = FeatureConfig(
    event_types=["pricing_page_view", "unsubscribe", "chat_started"],
    windows_days=[1, 7],
    categorical_columns=["company_size", "Lead Origin"],
    numeric_columns=["Total Time Spent on Website", "TotalVisits"],
)


@pytest.fixture(scope="module")
def writer() -> ReasonWriter:
    return ReasonWriter(feature_names(SNAPSHOT), SNAPSHOT)


def one(
    w: ReasonWriter, contributions: np.ndarray, values: list[object]
) -> dict[str, list[Reason]]:
    """One lead's reasons, through the writer's one method (a batch of one)."""
    row = np.atleast_2d(np.asarray(contributions, dtype=np.float64))
    return w.reasons_batch(row, {n: [v] for n, v in zip(w.feature_names, values, strict=True)})[0]


def naive(
    w: ReasonWriter, contributions: np.ndarray, values: list[object]
) -> dict[str, list[Reason]]:
    """The plain reading of "top k": sort every contribution past the noise floor, ties by
    feature order; the reference the vectorised writer is held to."""
    names = w.feature_names
    row = [float(c) for c in contributions[: len(names)]]
    ranked_for = sorted(
        (j for j, c in enumerate(row) if c >= MIN_CONTRIBUTION), key=lambda j: -row[j]
    )
    ranked_against = sorted(
        (j for j, c in enumerate(row) if c <= -MIN_CONTRIBUTION), key=lambda j: row[j]
    )
    return {
        side: [Reason(names[j], w.phrase(names[j], values[j]), row[j]) for j in ranked[: w.top_k]]
        for side, ranked in (("for", ranked_for), ("against", ranked_against))
    }


# --- phrases ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("feature", "value", "phrase"),
    [
        ("pricing_page_view_count_7d", 3.0, "3 pricing-page visits in the last 7 days"),
        ("pricing_page_view_count_7d", 1.0, "1 pricing-page visit in the last 7 days"),
        ("pricing_page_view_count_7d", 0.0, "no pricing-page visit in the last 7 days"),
        ("pricing_page_view_count_1d", 2.0, "2 pricing-page visits in the last day"),
        ("pricing_page_view_count_all", 5.0, "5 pricing-page visits so far"),
        ("pricing_page_view_count_all", 0.0, "no pricing-page visit yet"),
        ("pricing_page_view_days_since_last", 2.7, "last pricing-page visit 2 days ago"),
        ("pricing_page_view_days_since_last", 1.0, "last pricing-page visit 1 day ago"),
        ("pricing_page_view_days_since_last", 0.4, "last pricing-page visit today"),
        ("pricing_page_view_days_since_last", math.nan, "never visited the pricing page"),
        # No natural noun: spoken with the verb.
        ("unsubscribe_count_7d", 1.0, "unsubscribed in the last 7 days"),
        ("unsubscribe_count_7d", 0.0, "not unsubscribed in the last 7 days"),
        ("unsubscribe_count_all", 2.0, "unsubscribed 2 times so far"),
        ("unsubscribe_count_all", 0.0, "not unsubscribed yet"),
        ("unsubscribe_days_since_last", 12.0, "unsubscribed 12 days ago"),
        ("unsubscribe_days_since_last", np.float64("nan"), "never unsubscribed"),
        # An event type with no words of its own: its name with spaces.
        ("chat_started_count_7d", 2.0, "2 chat started events in the last 7 days"),
        ("chat_started_count_all", 1.0, "1 chat started event so far"),
        ("chat_started_days_since_last", math.nan, "never had a chat started event"),
    ],
)
def test_event_phrases(writer: ReasonWriter, feature: str, value: object, phrase: str) -> None:
    assert writer.phrase(feature, value) == phrase


def test_every_standard_event_type_has_its_own_words() -> None:
    assert set(EVENT_WORDS) == set(EVENT_TYPES)
    config = FeatureConfig(windows_days=[7])
    w = ReasonWriter(feature_names(config), config)
    assert w.phrase("demo_request_days_since_last", 2.0) == "last demo request 2 days ago"
    assert w.phrase("demo_request_days_since_last", None) == "never requested a demo"
    assert w.phrase("content_download_count_all", 5.0) == "5 content downloads so far"
    assert w.phrase("content_download_count_all", 0.0) == "no content download yet"
    assert w.phrase("email_sent_count_7d", 1.0) == "1 email received in the last 7 days"
    assert w.phrase("email_sent_count_7d", 4.0) == "4 emails received in the last 7 days"
    # No standard type falls back to the "<name> event" wording.
    for kind in EVENT_TYPES:
        assert "event" not in w.phrase(f"{kind}_count_all", 2.0), kind


@pytest.mark.parametrize(
    ("feature", "value", "phrase"),
    [
        ("engagement_decayed", 4.23456, "engagement score 4.23 (recent actions weigh most)"),
        ("engagement_decayed", 0.0, "no engagement yet"),
        ("active_days", 5.0, "active on 5 different days"),
        ("active_days", 1.0, "active on 1 day"),
        ("active_days", 0.0, "not active yet"),
        ("velocity_7d_vs_30d", 2.4, "activity picking up (7-day rate 2.4x the 30-day rate)"),
        ("velocity_7d_vs_30d", 0.5, "activity slowing down (7-day rate 0.5x the 30-day rate)"),
        ("velocity_7d_vs_30d", 1.04, "activity steady (7-day rate 1.0x the 30-day rate)"),
        ("velocity_7d_vs_30d", 0.0, "no activity in the last 7 days"),
        ("days_since_last_activity", 45.2, "no activity for 45 days"),
        ("days_since_last_activity", 2.0, "last active 2 days ago"),
        ("days_since_last_activity", 0.2, "active today"),
        ("days_since_last_activity", math.nan, "no activity yet"),
        ("email_open_rate", 0.4, "opened 40% of emails"),
        ("email_open_rate", 0.004, "opened 1% of emails"),
        ("email_open_rate", 0.0, "never opened an email"),
        ("email_open_rate", 1.5, "opened every email"),
        ("email_open_rate", math.nan, "no emails received yet"),
        ("lead_age_days", 12.9, "lead created 12 days ago"),
        ("lead_age_days", 1.5, "lead created 1 day ago"),
        ("lead_age_days", 0.5, "lead created today"),
    ],
)
def test_behaviour_phrases(writer: ReasonWriter, feature: str, value: object, phrase: str) -> None:
    assert writer.phrase(feature, value) == phrase


@pytest.mark.parametrize(
    ("feature", "value", "phrase"),
    [
        ("seniority", "c_level", "job title: C-level"),
        ("seniority", "vp", "job title: VP"),
        ("seniority", "individual", "job title: individual contributor"),
        ("seniority", math.nan, "no job title"),
        ("seniority", None, "no job title"),
        ("is_company_email", 1.0, "company email domain"),
        ("is_company_email", 0.0, "free-mail address"),
        ("is_company_email", math.nan, "no email address"),
        ("company_size", "201-1000", "company size: 201-1000"),
        ("company_size", pd.NA, "company size unknown"),
        # Snapshot-style columns, named the way exports name them.
        ("Lead Origin", "API", "lead origin: API"),
        ("Lead Origin", math.nan, "lead origin unknown"),
        ("Total Time Spent on Website", 1532.0, "total time spent on website: 1532"),
        ("Total Time Spent on Website", 12.3456, "total time spent on website: 12.3"),
        ("TotalVisits", 3.0, "total visits: 3"),
        # A column the writer was not built with still gets a readable phrase.
        ("ROI_estimate", 0.000123456, "ROI estimate: 0.000123"),
        ("Do Not Email", True, "do not email: yes"),
    ],
)
def test_fit_and_other_column_phrases(
    writer: ReasonWriter, feature: str, value: object, phrase: str
) -> None:
    assert writer.phrase(feature, value) == phrase


def test_every_seniority_level_reads_as_a_job_title() -> None:
    assert set(SENIORITY_WORDS) == set(SENIORITY_LEVELS)


@pytest.mark.parametrize(
    ("value", "text"),
    [(3.0, "3"), (-2.0, "-2"), (1234.5, "1230"), (2.3456, "2.35"), (0.5, "0.5"), (1e-4, "0.0001")],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


def test_default_features_all_have_a_family_of_their_own() -> None:
    w = ReasonWriter(feature_names(DEFAULT), DEFAULT)
    generic = [name for name, family in w.families.items() if family == "other"]
    assert generic == []
    # A column the config does not know is phrased generically, not guessed from its name.
    assert ReasonWriter(["foo_count_all"], DEFAULT).phrase("foo_count_all", 2.0) == (
        "foo count all: 2"
    )


# --- picking the top contributions --------------------------------------------------------------


def test_top_k_sorting_ties_and_tiny_contributions() -> None:
    names = [f"f{i}" for i in range(8)]
    w = ReasonWriter(names, FeatureConfig(), top_k=3)
    contributions = np.array([0.5, -0.2, 0.5, 1e-12, -0.7, 0.9, -0.2, 0.1, 99.0])  # last: bias
    got = one(w, contributions, [1.0] * 8)
    assert [r.feature for r in got["for"]] == ["f5", "f0", "f2"]  # 0.5 tie: feature order
    assert [r.feature for r in got["against"]] == ["f4", "f1", "f6"]
    assert [r.contribution for r in got["for"]] == [0.9, 0.5, 0.5]
    # Without the bias column the answer is the same.
    assert one(w, contributions[:-1], [1.0] * 8) == got
    # Below the noise floor nothing is said; fewer than top_k is fine.
    few = one(w, np.array([0, 0, 1e-10, -1e-10, 0, 0, 0.3, 0]), [0.0] * 8)
    assert [r.feature for r in few["for"]] == ["f6"]
    assert few["against"] == []
    assert one(w, np.zeros(8), [0.0] * 8) == {"for": [], "against": []}


def test_top_k_one_and_bad_input() -> None:
    w = ReasonWriter(["a", "b", "c"], FeatureConfig(), top_k=1)
    got = one(w, np.array([0.2, 0.3, -0.1]), [1.0, 2.0, 3.0])
    assert [r.feature for r in got["for"]] == ["b"]
    assert [r.feature for r in got["against"]] == ["c"]
    with pytest.raises(ValueError, match="3 columns"):
        one(w, np.zeros(5), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="NaN"):
        one(w, np.array([np.nan, 0.1, 0.2]), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="top_k"):
        ReasonWriter(["a"], FeatureConfig(), top_k=0)
    with pytest.raises(ValueError, match="duplicates"):
        ReasonWriter(["a", "a"], FeatureConfig())


def test_reason_as_dict() -> None:
    reason = Reason("active_days", "active on 5 different days", 0.25)
    assert reason.as_dict() == {
        "feature": "active_days",
        "phrase": "active on 5 different days",
        "contribution": 0.25,
    }


# --- against a real LightGBM model ----------------------------------------------------------------

MODEL_CONFIG = FeatureConfig(
    event_types=["pricing_page_view"],
    windows_days=[7],
    categorical_columns=["company_size"],
    title_column=None,
    email_column=None,
)
MODEL_FEATURES = ["pricing_page_view_count_7d", "lead_age_days", "company_size"]
SIZES = ["1-10", "11-50", "201-1000"]


def _frame(visits: Any, age: Any, size: Any) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pricing_page_view_count_7d": np.asarray(visits, dtype=np.float64),
            "lead_age_days": np.asarray(age, dtype=np.float64),
            "company_size": pd.Categorical(size, categories=SIZES),
        }
    )


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    """Converts mostly on pricing-page visits; age is noise, company size a weak nudge."""
    rng = np.random.default_rng(7)
    n = 400
    visits = rng.poisson(3.0, n)
    size = rng.choice(SIZES, n)
    logit = 1.6 * (visits - 3) + 0.3 * (size == "201-1000")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = _frame(visits, rng.uniform(0, 120, n), size)
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "learning_rate": 0.1,
        "min_data_in_leaf": 10,
        "num_threads": 1,
        "deterministic": True,
        "seed": 0,
        "verbose": -1,
    }
    return lgb.train(params, lgb.Dataset(frame, label=y), num_boost_round=40)


def _contributions(booster: lgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(booster.predict(frame, pred_contrib=True))


@pytest.fixture(scope="module")
def leads() -> pd.DataFrame:
    return _frame([9, 0, 3, 5], [30.0, 30.0, 5.0, 90.0], ["11-50", "11-50", "201-1000", None])


def test_reasons_carry_the_boosters_own_contributions(
    booster: lgb.Booster, leads: pd.DataFrame
) -> None:
    w = ReasonWriter(MODEL_FEATURES, MODEL_CONFIG)
    contrib = _contributions(booster, leads)
    raw = np.asarray(booster.predict(leads, raw_score=True))
    assert contrib.shape == (len(leads), len(MODEL_FEATURES) + 1)
    for i in range(len(leads)):
        values = leads.iloc[i].tolist()
        got = one(w, contrib[i], values)
        every = got["for"] + got["against"]
        for reason in every:
            j = MODEL_FEATURES.index(reason.feature)
            assert reason.contribution == contrib[i, j]
            assert reason.phrase == w.phrase(reason.feature, values[j])
        # With top_k = number of features, every contribution is told: they add up to the score.
        assert sum(r.contribution for r in every) + contrib[i, -1] == pytest.approx(raw[i])
        assert [r.contribution for r in got["for"]] == sorted(
            (r.contribution for r in got["for"]), reverse=True
        )
        assert [r.contribution for r in got["against"]] == sorted(
            r.contribution for r in got["against"]
        )
        assert all(r.contribution > 0 for r in got["for"])
        assert all(r.contribution < 0 for r in got["against"])


def test_the_true_driver_leads_for_and_against(booster: lgb.Booster, leads: pd.DataFrame) -> None:
    w = ReasonWriter(MODEL_FEATURES, MODEL_CONFIG, top_k=1)
    contrib = _contributions(booster, leads)
    high = one(w, contrib[0], leads.iloc[0].tolist())
    low = one(w, contrib[1], leads.iloc[1].tolist())
    assert len(high["for"]) == 1
    assert len(low["against"]) == 1
    assert high["for"][0].feature == "pricing_page_view_count_7d"
    assert high["for"][0].phrase == "9 pricing-page visits in the last 7 days"
    assert low["against"][0].feature == "pricing_page_view_count_7d"
    assert low["against"][0].phrase == "no pricing-page visit in the last 7 days"
    # A missing category is phrased as unknown.
    assert w.phrase("company_size", leads["company_size"].tolist()[3]) == "company size unknown"


def test_reasons_equal_a_plain_sort(booster: lgb.Booster, leads: pd.DataFrame) -> None:
    w = ReasonWriter(MODEL_FEATURES, MODEL_CONFIG, top_k=2)
    contrib = _contributions(booster, leads)
    batch = w.reasons_batch(contrib, leads)
    assert batch == [naive(w, contrib[i], leads.iloc[i].tolist()) for i in range(len(leads))]
    with pytest.raises(ValueError, match="rows"):
        w.reasons_batch(contrib[:2], leads)
    with pytest.raises(KeyError, match="company_size"):
        w.reasons_batch(contrib, leads.drop(columns="company_size"))


def test_reasons_equal_a_plain_sort_on_real_features() -> None:
    """All ~80 default features with their real dtypes; contributions with ties and zeros."""
    funnel = random_funnel(n_leads=40, n_events=800, seed=3)
    frame = build_features(funnel.leads, funnel.events, START + pd.Timedelta(days=120), DEFAULT)
    names = feature_names(DEFAULT)
    rng = np.random.default_rng(1)
    contrib = rng.choice([-0.5, -0.1, 0.0, 1e-12, 0.1, 0.5], size=(len(frame), len(names) + 1))
    contrib += rng.normal(0, 1, contrib.shape) * (rng.random(contrib.shape) < 0.02)
    w = ReasonWriter(names, DEFAULT)
    batch = w.reasons_batch(contrib, frame)
    columns = {name: frame[name].tolist() for name in names}
    reference = [
        naive(w, contrib[i], [columns[name][i] for name in names]) for i in range(len(frame))
    ]
    assert batch == reference
    assert all(len(r["for"]) == 3 and len(r["against"]) == 3 for r in batch)


# --- the per-lead path --------------------------------------------------------------------------


def test_one_lead_uses_only_precomputed_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    names = feature_names(DEFAULT)
    assert len(names) > 75
    w = ReasonWriter(names, DEFAULT)
    assert list(w.formatters) == names
    assert all(callable(f) for f in w.formatters.values())

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("built per call")

    # Nothing is looked up by name, no formatter made and no pandas object built per lead.
    for helper in ("formatters_for", "event_words", "humanise", "_labelled"):
        monkeypatch.setattr(explain, helper, refuse)
    monkeypatch.setattr(pd, "DataFrame", refuse)
    monkeypatch.setattr(pd, "Series", refuse)
    rng = np.random.default_rng(0)
    values: list[object] = list(rng.integers(0, 5, len(names)).astype(float))
    for name in ("seniority", "industry", "company_size", "country", "lead_source"):
        values[names.index(name)] = None
    for _ in range(50):
        got = one(w, rng.normal(size=len(names) + 1), values)
        assert len(got["for"]) == 3
        assert len(got["against"]) == 3
        assert all(isinstance(r.phrase, str) and r.phrase for r in got["for"] + got["against"])


def test_the_fast_reason_constructor_builds_what_the_dataclass_builds() -> None:
    # `_reason` sets the slots itself: a field added to Reason must be added there too, and
    # comparing reads every field (an unset slot raises).
    made = _reason("pricing_page_view_count_7d", "3 pricing-page visits", -0.0)
    assert made == Reason("pricing_page_view_count_7d", "3 pricing-page visits", -0.0)
    assert (
        made.as_dict()
        == Reason("pricing_page_view_count_7d", "3 pricing-page visits", -0.0).as_dict()
    )
    assert hash(made) == hash(Reason("pricing_page_view_count_7d", "3 pricing-page visits", -0.0))
