"""Tests for the funnel simulator: determinism, the data contract, realism and an honest truth."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.stats import kstest
from sklearn.metrics import roc_auc_score

from features.config import FREE_MAIL_DOMAINS, FeatureConfig, SnapshotConfig
from features.training import LABEL
from features.vocabulary import EVENT_TYPES
from models.rules.points import PointsRules
from models.training.config import TrainConfig
from models.training.train import train_lead_scorer
from simulator import funnel as simulator
from simulator.funnel import (
    SimulatedFunnel,
    SimulatorConfig,
    simulate_funnel,
    true_conversion_probability,
    write_funnel,
)

SMALL = SimulatorConfig(n_leads=4_000, seed=7)
# Large enough for rate and calibration checks with tight tolerances, still well under a second.
MEDIUM = SimulatorConfig(n_leads=30_000, seed=11)


@pytest.fixture(scope="module")
def funnel() -> SimulatedFunnel:
    return simulate_funnel(SMALL)


@pytest.fixture(scope="module")
def medium() -> SimulatedFunnel:
    return simulate_funnel(MEDIUM)


# Close dates recorded late disagree with the process on purpose; the truth is checked against
# outcomes recorded on time.
ON_TIME = MEDIUM.model_copy(update={"late_close_share": 0.0})


@pytest.fixture(scope="module")
def on_time() -> SimulatedFunnel:
    return simulate_funnel(ON_TIME)


def _events_with_leads(funnel: SimulatedFunnel) -> pd.DataFrame:
    columns = ["lead_id", "created_at", "closed_at", "converted"]
    return funnel.events.merge(funnel.leads[columns], on="lead_id", how="left", validate="m:1")


def _first_ts(events: pd.DataFrame, event_type: str) -> pd.Series:
    """Per lead, the time of its first event of this type."""
    return events[events["event_type"] == event_type].groupby("lead_id")["ts"].min()


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_config_refuses_bad_values() -> None:
    with pytest.raises(ValidationError):
        SimulatorConfig(n_leads=0)
    with pytest.raises(ValidationError):
        SimulatorConfig(start=datetime(2024, 1, 1))  # naive
    with pytest.raises(ValidationError):
        SimulatorConfig(n_lead=10)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SMALL.n_leads = 5  # type: ignore[misc]


def test_on_step_reports_each_stage_in_order() -> None:
    steps: list[str] = []
    simulate_funnel(SimulatorConfig(n_leads=200, seed=1), on_step=steps.append)
    assert steps == list(simulator.SIMULATION_STEPS)
    assert len(steps) == 8


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


def test_same_seed_gives_equal_frames(funnel: SimulatedFunnel) -> None:
    again = simulate_funnel(SMALL)
    pd.testing.assert_frame_equal(funnel.leads, again.leads)
    pd.testing.assert_frame_equal(funnel.events, again.events)
    pd.testing.assert_frame_equal(funnel.truth, again.truth)
    assert funnel.observed_until == again.observed_until


def test_different_seed_gives_different_data(funnel: SimulatedFunnel) -> None:
    other = simulate_funnel(SMALL.model_copy(update={"seed": SMALL.seed + 1}))
    assert not funnel.leads["created_at"].equals(other.leads["created_at"])
    assert not funnel.leads["email"].equals(other.leads["email"])
    assert len(funnel.events) != len(other.events) or not funnel.events.equals(other.events)


def test_same_seed_writes_byte_identical_files(funnel: SimulatedFunnel, tmp_path: Path) -> None:
    first = write_funnel(funnel, tmp_path / "a")
    second = write_funnel(simulate_funnel(SMALL), tmp_path / "b")
    other = write_funnel(simulate_funnel(SMALL.model_copy(update={"seed": 99})), tmp_path / "c")
    assert [p.name for p in first] == ["leads.parquet", "events.parquet", "truth.parquet"]
    for a, b, c in zip(first, second, other, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert a.read_bytes() != c.read_bytes(), a.name


# --------------------------------------------------------------------------------------------
# Data contract
# --------------------------------------------------------------------------------------------


def test_leads_contract(funnel: SimulatedFunnel) -> None:
    leads = funnel.leads
    assert len(leads) == SMALL.n_leads  # duplicate records included
    assert leads["lead_id"].dtype == np.int64
    assert leads["lead_id"].is_unique
    assert leads["account_id"].dtype == np.int64
    assert leads["account_id"].nunique() < len(leads)  # accounts hold several leads
    for column in ("created_at", "closed_at"):
        assert isinstance(leads[column].dtype, pd.DatetimeTZDtype)
        assert str(leads[column].dt.tz) == "UTC"
        assert leads[column].dt.unit == "ns"
    assert leads["converted"].dtype == "Int8"
    assert set(leads["converted"].dropna().unique()) == {0, 1}
    assert leads["company_size"].cat.categories.tolist() == list(simulator.COMPANY_SIZES)
    assert leads["lead_source"].cat.categories.tolist() == list(simulator.LEAD_SOURCES)
    assert pd.api.types.is_string_dtype(leads["email"])
    assert pd.api.types.is_string_dtype(leads["job_title"])
    assert leads["email"].notna().all()
    # Every spelling a CRM holds is a level, so schemas match across seeds.
    industries = list(simulator.INDUSTRIES)
    assert leads["industry"].cat.categories.tolist() == [
        *industries,
        *(v.lower() for v in industries),
        *(f"{v} " for v in industries),
    ]


def test_outcome_columns_agree(funnel: SimulatedFunnel) -> None:
    leads = funnel.leads
    is_open = leads["converted"].isna()
    assert leads.loc[is_open, "closed_at"].isna().all()
    assert leads.loc[~is_open, "closed_at"].notna().all()
    assert (leads.loc[~is_open, "closed_at"] > leads.loc[~is_open, "created_at"]).all()
    assert (leads["created_at"] < funnel.observed_until).all()
    assert (leads["closed_at"].dropna() <= funnel.observed_until).all()


def test_events_contract(funnel: SimulatedFunnel) -> None:
    events = funnel.events
    columns = ["lead_id", "ts", "event_type", "channel", "campaign", "url", "value"]
    assert list(events.columns) == columns
    assert events["lead_id"].dtype == np.int64
    assert isinstance(events["ts"].dtype, pd.DatetimeTZDtype)
    assert str(events["ts"].dt.tz) == "UTC"
    assert events["event_type"].cat.categories.tolist() == list(EVENT_TYPES)
    assert set(events["event_type"].unique()) == set(EVENT_TYPES)  # every type occurs
    assert set(events["channel"].cat.categories) == {"email", "web", "event", "sales"}
    assert events["value"].dtype == np.float64
    assert events["lead_id"].isin(funnel.leads["lead_id"]).all()
    order = np.lexsort((events["lead_id"].to_numpy(), events["ts"].to_numpy()))
    assert (order == np.arange(len(events))).all(), "events must be sorted by (ts, lead_id)"


def test_page_events_have_urls_and_seconds(funnel: SimulatedFunnel) -> None:
    events = funnel.events
    pages = events["event_type"].isin(["page_view", "pricing_page_view", "docs_page_view"])
    assert events.loc[pages, "url"].notna().all()
    assert (events.loc[pages, "value"] > 0).all()
    pricing = events["event_type"] == "pricing_page_view"
    assert events.loc[pricing, "url"].astype(str).str.startswith("/pricing").all()
    docs = events["event_type"] == "docs_page_view"
    assert events.loc[docs, "url"].astype(str).str.startswith("/docs/").all()
    mail = events["event_type"].isin(["email_sent", "email_open", "email_bounce"])
    assert events.loc[mail, "url"].isna().all()
    assert events.loc[mail, "value"].isna().all()


def test_events_fall_within_lead_lifetime(funnel: SimulatedFunnel) -> None:
    merged = _events_with_leads(funnel)
    assert (merged["ts"] >= merged["created_at"]).all()
    assert (merged["ts"] <= funnel.observed_until).all()
    won = merged["converted"].eq(1).fillna(False)
    assert won.any()
    assert not (won & (merged["ts"] > merged["closed_at"])).any()


def test_lost_leads_only_receive_email_after_close(funnel: SimulatedFunnel) -> None:
    merged = _events_with_leads(funnel)
    lost = merged["converted"].eq(0).fillna(False)
    after = merged[lost & (merged["ts"] > merged["closed_at"])]
    assert len(after) > 0  # nurture keeps mailing lost leads
    email_side = {"email_sent", "email_open", "email_click", "email_bounce", "unsubscribe"}
    assert set(after["event_type"].unique()) <= email_side


def test_webinar_attendance_follows_registration(funnel: SimulatedFunnel) -> None:
    events = funnel.events
    attended = events[events["event_type"] == "webinar_attended"][["lead_id", "ts"]]
    registered = events[events["event_type"] == "webinar_registered"][["lead_id", "ts"]]
    assert len(attended) > 0
    registered = registered.rename(columns={"ts": "registered_at"})
    registered["ts"] = registered["registered_at"]
    matched = pd.merge_asof(
        attended.sort_values("ts"),
        registered.sort_values("ts"),
        on="ts",
        by="lead_id",
        direction="backward",
        allow_exact_matches=False,
    )
    assert matched["registered_at"].notna().all()


def test_no_opens_after_bounce(funnel: SimulatedFunnel) -> None:
    events = funnel.events
    bounced_at = _first_ts(events, "email_bounce")
    assert len(bounced_at) > 0
    opens = events[events["event_type"].isin(["email_open", "email_click", "email_sent"])]
    opens = opens[opens["lead_id"].isin(bounced_at.index)]
    assert (opens["ts"] <= opens["lead_id"].map(bounced_at)).all()
    assert not opens["event_type"].isin(["email_open", "email_click"]).any()


def test_no_sends_after_unsubscribe(funnel: SimulatedFunnel) -> None:
    events = funnel.events
    unsubscribed_at = _first_ts(events, "unsubscribe")
    assert len(unsubscribed_at) > 0
    assert (events[events["event_type"] == "unsubscribe"].groupby("lead_id").size() == 1).all()
    sends = events[events["event_type"] == "email_sent"]
    sends = sends[sends["lead_id"].isin(unsubscribed_at.index)]
    assert (sends["ts"] <= sends["lead_id"].map(unsubscribed_at)).all()


def test_truth_contract(funnel: SimulatedFunnel) -> None:
    truth = funnel.truth
    assert truth["lead_id"].equals(funnel.leads["lead_id"])
    for column in ("p_convert_ever", "p_convert_within_horizon", "p_stage", "p_close_lost"):
        assert truth[column].between(0.0, 1.0).all(), column
    assert (truth["p_convert_within_horizon"] <= truth["p_convert_ever"]).all()
    assert (truth["p_convert_ever"] <= truth["p_stage"]).all()
    assert (truth[["stage_sigma", "convert_rate", "drop_rate", "lost_delay_sigma"]] > 0).all().all()
    # The path: a project starts after creation and ends after it starts; closes follow.
    assert (truth["stage_days"] > 0).all()
    assert (truth["stage_end_days"] >= truth["stage_days"]).all()
    assert (truth["closed_days"] > 0).all()
    assert {"fit", "intent", "activity", "security_scanner"} <= set(truth.columns)


def test_conversions_happen_only_through_a_buying_stage(funnel: SimulatedFunnel) -> None:
    leads, truth = funnel.leads, funnel.truth
    won = leads["converted"].eq(1).fillna(False).to_numpy()
    days = (leads["closed_at"] - leads["created_at"]).dt.total_seconds().to_numpy() / 86_400
    assert np.isfinite(truth["stage_days"].to_numpy()[won]).all()
    # Recorded at the conversion, or a few days late now and then.
    late = days[won] - truth["stage_end_days"].to_numpy()[won]
    assert (late > -1e-4).all() and (late < 14).all()
    assert (late < 1e-4).mean() > 0.9


# --------------------------------------------------------------------------------------------
# Realism
# --------------------------------------------------------------------------------------------


def test_outcome_rates_are_realistic(medium: SimulatedFunnel) -> None:
    leads = medium.leads
    closed = leads["converted"].notna()
    won_rate = leads.loc[closed, "converted"].astype(float).mean()
    assert 0.08 <= won_rate <= 0.20
    horizon = pd.Timedelta(days=MEDIUM.horizon_days)
    seen = leads["created_at"] + horizon <= medium.observed_until
    within = leads["converted"].eq(1).fillna(False) & (
        leads["closed_at"] - leads["created_at"] < horizon
    )
    assert 0.04 <= within[seen].mean() <= 0.15
    # Many leads are still open, and more so among those created late.
    is_open = leads["converted"].isna()
    assert 0.2 <= is_open.mean() <= 0.6
    late = leads["created_at"] >= medium.observed_until - pd.Timedelta(days=60)
    assert is_open[late].mean() > is_open[~late].mean() + 0.2
    delay = (leads["closed_at"] - leads["created_at"]).dt.total_seconds() / 86_400
    assert 20 < delay[leads["converted"].eq(1).fillna(False)].median() < 70


def test_event_volume(medium: SimulatedFunnel) -> None:
    per_lead = len(medium.events) / len(medium.leads)
    assert 12 <= per_lead <= 30
    counts = medium.events["event_type"].value_counts()
    assert counts["webinar_attended"] < counts["webinar_registered"]
    assert counts["email_open"] < counts["email_sent"]


def test_attributes_look_like_crm_exports(medium: SimulatedFunnel) -> None:
    leads = medium.leads
    domain = leads["email"].str.split("@").str[1]
    free = domain.isin(FREE_MAIL_DOMAINS)
    assert 0.08 <= free.mean() <= 0.4
    assert domain[~free].str.contains(r"^[a-z-]+\.[a-z.]+$").all()
    assert leads["email"].str.contains(r"^[a-z0-9._]+@").all()
    # Colleagues share their company's domain.
    company_domains = domain[~free].groupby(leads.loc[~free, "account_id"]).nunique()
    assert (company_domains == 1).all()
    titles = leads["job_title"]
    assert titles.nunique() > 200
    for title in ("Chief Technology Officer", "Student", "Intern", "Founder & CEO"):
        assert (titles == title).any(), title
    assert (titles.str.lower() == titles).mean() > 0.05  # case variety
    assert (titles.str.upper() == titles).mean() > 0.02


@pytest.mark.parametrize("signal", ["pricing_page_view", "demo_request", "docs_page_view"])
def test_engagement_bursts_before_conversion(medium: SimulatedFunnel, signal: str) -> None:
    merged = _events_with_leads(medium)
    won = merged["converted"].eq(1).fillna(False)
    signals = merged[won & (merged["event_type"] == signal)]
    days_before = (signals["closed_at"] - signals["ts"]).dt.total_seconds() / 86_400
    # Time in a buying stage is exponential (median 16 days): signals pile up before the
    # conversion, each earlier three-week window holding about half of the next one.
    windows = [
        ((days_before > start) & (days_before <= start + 21)).sum() for start in (0, 21, 42, 63)
    ]
    for later, earlier in itertools.pairwise(windows):
        assert later > 1.6 * earlier, windows


def test_interest_fades(medium: SimulatedFunnel) -> None:
    merged = _events_with_leads(medium)
    pages = merged[merged["event_type"] == "page_view"]
    age = (pages["ts"] - pages["created_at"]).dt.total_seconds() / 86_400
    # Leads old enough to have been watched for 120 days: more visits early than late.
    watched = pages["created_at"] <= medium.observed_until - pd.Timedelta(days=120)
    assert (age[watched] < 30).sum() > 2 * ((age[watched] >= 90) & (age[watched] < 120)).sum()


def test_security_scanners_open_within_seconds(medium: SimulatedFunnel) -> None:
    events = medium.events
    sends = events[events["event_type"] == "email_sent"][["lead_id", "ts"]]
    opens = events[events["event_type"] == "email_open"][["lead_id", "ts"]]
    sends = sends.assign(sent_at=sends["ts"])
    matched = pd.merge_asof(opens.sort_values("ts"), sends.sort_values("ts"), on="ts", by="lead_id")
    lag = (matched["ts"] - matched["sent_at"]).dt.total_seconds()
    fast = matched[lag <= 20]
    assert 0.05 <= len(fast) / len(opens) <= 0.5
    scanner_leads = medium.truth.loc[medium.truth["security_scanner"], "lead_id"]
    assert fast["lead_id"].isin(scanner_leads).mean() > 0.9
    # Humans take minutes to days.
    assert lag[~matched["lead_id"].isin(scanner_leads)].median() > 600


def test_students_engage_but_rarely_convert(medium: SimulatedFunnel) -> None:
    leads, truth = medium.leads, medium.truth
    student = leads["job_title"].str.lower().str.contains("student|intern")
    per_lead = medium.events.groupby("lead_id").size().reindex(leads["lead_id"], fill_value=0)
    assert per_lead[student.to_numpy()].mean() > per_lead[~student.to_numpy()].mean()
    assert truth.loc[student, "p_convert_ever"].mean() < 0.3 * truth["p_convert_ever"].mean()


# --------------------------------------------------------------------------------------------
# Truth honesty
# --------------------------------------------------------------------------------------------


def _binomial_tolerance(p: pd.Series | np.ndarray) -> float:
    """Four standard deviations of a mean of independent Bernoulli(p) outcomes."""
    p = np.asarray(p)
    return float(4.0 * np.sqrt(np.sum(p * (1.0 - p))) / p.size)


def test_truth_matches_realised_conversion_within_horizon(medium: SimulatedFunnel) -> None:
    leads, truth = medium.leads, medium.truth
    horizon = pd.Timedelta(days=MEDIUM.horizon_days)
    seen = (leads["created_at"] + horizon <= medium.observed_until).to_numpy()
    realised = (
        leads["converted"].eq(1).fillna(False)
        & (leads["closed_at"] - leads["created_at"] < horizon)
    ).to_numpy()[seen]
    p = truth["p_convert_within_horizon"].to_numpy()[seen]
    assert abs(realised.mean() - p.mean()) < _binomial_tolerance(p)
    # Calibrated by construction: also within each quintile of the truth.
    bins = np.quantile(p, [0.2, 0.4, 0.6, 0.8])
    for q in range(5):
        in_bin = np.digitize(p, bins) == q
        assert abs(realised[in_bin].mean() - p[in_bin].mean()) < _binomial_tolerance(p[in_bin])
    assert roc_auc_score(realised, p) > 0.75


def test_time_in_stage_follows_the_truth(medium: SimulatedFunnel) -> None:
    """Probability integral transform: the time from stage entry to a conversion, under the
    truth's exponential (truncated at a window every one of them was watched for), is uniform."""
    leads, truth = medium.leads, medium.truth
    window = 120.0
    created = (leads["created_at"] - medium.observed_until).dt.total_seconds() / 86_400
    stage_at = created.to_numpy() + truth["stage_days"].to_numpy()  # days before the end
    in_stage = (truth["stage_end_days"] - truth["stage_days"]).to_numpy()
    won = leads["converted"].eq(1).fillna(False).to_numpy()
    watched = won & (stage_at <= -window) & (in_stage < window)
    rate = (truth["convert_rate"] + truth["drop_rate"]).to_numpy()[watched]
    pit = -np.expm1(-rate * in_stage[watched]) / -np.expm1(-rate * window)
    assert watched.sum() > 500
    assert kstest(pit, "uniform").pvalue > 0.01


@pytest.mark.parametrize("given_open", [False, True])
def test_conditional_truth_matches_realised_later_conversion(
    medium: SimulatedFunnel, given_open: bool
) -> None:
    leads = medium.leads
    horizon = pd.Timedelta(days=MEDIUM.horizon_days)
    as_of = leads["created_at"] + pd.Timedelta(days=30)
    won = leads["converted"].eq(1).fillna(False)
    converted_before = won & (leads["closed_at"] < as_of)
    closed_before = leads["closed_at"].notna() & (leads["closed_at"] < as_of)
    at_risk = ~(closed_before if given_open else converted_before)
    keep = (at_risk & (as_of + horizon <= medium.observed_until)).to_numpy()
    realised = won & (leads["closed_at"] >= as_of) & (leads["closed_at"] < as_of + horizon)
    realised_kept = realised.to_numpy()[keep]
    p = true_conversion_probability(
        medium.truth,
        leads["lead_id"].to_numpy()[keep],
        as_of[keep],
        MEDIUM.horizon_days,
        given_open=given_open,
    )
    assert abs(realised_kept.mean() - p.mean()) < _binomial_tolerance(p)
    assert roc_auc_score(realised_kept, p) > 0.7


def _open_snapshots(funnel: SimulatedFunnel, seed: int) -> pd.DataFrame:
    """One snapshot per lead at a random age, kept where the lead is open and the horizon is
    observed, with whether it converted within the horizon."""
    leads = funnel.leads
    horizon = pd.Timedelta(days=funnel.horizon_days)
    rng = np.random.default_rng(seed)
    as_of = leads["created_at"] + pd.to_timedelta(rng.uniform(0, 240, len(leads)), unit="D")
    is_open = leads["closed_at"].isna() | (leads["closed_at"] > as_of)
    keep = (is_open & (as_of + horizon <= funnel.observed_until)).to_numpy()
    won = leads["converted"].eq(1).fillna(False)
    realised = won & (leads["closed_at"] < as_of + horizon)
    return pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy()[keep],
            "as_of": as_of[keep].to_numpy(),
            "realised": realised.to_numpy()[keep],
        }
    )


def _assert_calibrated_on_open_snapshots(
    funnel: SimulatedFunnel, seed: int = 1
) -> tuple[pd.DataFrame, np.ndarray]:
    """The truth given the latent state matches the realised rate, overall and by decile."""
    snapshots = _open_snapshots(funnel, seed)
    p = true_conversion_probability(
        funnel.truth, snapshots["lead_id"], snapshots["as_of"], funnel.horizon_days, given_open=True
    )
    realised = snapshots["realised"].to_numpy()
    assert abs(realised.mean() - p.mean()) < _binomial_tolerance(p)
    decile = np.digitize(p, np.quantile(p, np.linspace(0.1, 0.9, 9)))
    for d in range(10):
        in_bin = decile == d
        tolerance = _binomial_tolerance(p[in_bin])
        assert abs(realised[in_bin].mean() - p[in_bin].mean()) < tolerance, d
    return snapshots, p


def test_truth_given_the_latent_state_is_calibrated_on_open_snapshots(
    on_time: SimulatedFunnel,
) -> None:
    medium = on_time
    snapshots, p = _assert_calibrated_on_open_snapshots(medium)
    realised = snapshots["realised"].to_numpy()
    # Knowing whether a project is live separates leads far better than the attributes alone.
    at_creation = true_conversion_probability(
        medium.truth, snapshots["lead_id"], snapshots["as_of"], MEDIUM.horizon_days
    )
    assert roc_auc_score(realised, p) > roc_auc_score(realised, at_creation) + 0.03


@pytest.mark.parametrize("elapsed", [0.0, 20.0, 75.0])
def test_truth_while_waiting_matches_a_monte_carlo_of_the_process(
    funnel: SimulatedFunnel, elapsed: float
) -> None:
    """A lead open and not yet in a project at as_of: replay its process from the truth's
    parameters many times and count conversions within the horizon."""
    truth = funnel.truth
    row = truth.loc[truth["p_stage"].sub(0.5).abs().idxmin()].copy()
    row[["stage_days", "stage_end_days", "closed_days"]] = np.inf  # waiting at any as_of
    horizon = 90.0
    rng = np.random.default_rng(0)
    m = 400_000
    entry = np.where(
        rng.random(m) < row["p_stage"],
        np.exp(row["stage_mu"] + row["stage_sigma"] * rng.standard_normal(m)),
        np.inf,
    )
    lost = np.where(
        rng.random(m) < row["p_close_lost"],
        np.exp(row["lost_delay_mu"] + row["lost_delay_sigma"] * rng.standard_normal(m)),
        np.inf,
    )
    rate = row["convert_rate"] + row["drop_rate"]
    lands = rng.random(m) * rate < row["convert_rate"]
    converts_at = np.where(lands & (entry < lost), entry + rng.exponential(1.0 / rate, m), np.inf)
    waiting = (entry > elapsed) & (lost > elapsed)
    hits = converts_at[waiting] < elapsed + horizon
    as_of = row["created_at"] + pd.Timedelta(days=elapsed)
    p = true_conversion_probability(
        pd.DataFrame([row]), [row["lead_id"]], as_of, int(horizon), given_open=True
    )
    assert abs(hits.mean() - p[0]) < 4 * np.sqrt(p[0] * (1 - p[0]) / hits.size) + 1e-4


def test_truth_at_creation_equals_within_horizon_column(funnel: SimulatedFunnel) -> None:
    truth = funnel.truth
    for given_open in (False, True):
        p = true_conversion_probability(
            truth,
            truth["lead_id"],
            truth["created_at"],
            SMALL.horizon_days,
            given_open=given_open,
        )
        np.testing.assert_array_equal(p, truth["p_convert_within_horizon"])


def test_true_probability_accepts_one_time_and_lookups_by_id(funnel: SimulatedFunnel) -> None:
    truth = funnel.truth
    ids = truth["lead_id"].to_numpy()[[5, 1, 3]]
    when = pd.Timestamp("2025-01-01", tz="UTC")
    scalar = true_conversion_probability(truth, ids, when, 30)
    per_lead = true_conversion_probability(truth, ids, [when] * 3, 30)
    naive = true_conversion_probability(truth, ids, np.datetime64("2025-01-01"), 30)
    np.testing.assert_array_equal(scalar, per_lead)
    np.testing.assert_array_equal(scalar, naive)
    # Looked up by id, not by position.
    reordered = true_conversion_probability(truth, ids[::-1], when, 30)
    np.testing.assert_array_equal(reordered, scalar[::-1])
    # A longer horizon can only add probability.
    assert (true_conversion_probability(truth, ids, when, 90) >= scalar).all()
    with pytest.raises(KeyError):
        true_conversion_probability(truth, [-1], when, 30)
    with pytest.raises(ValueError):
        true_conversion_probability(truth, ids, when, 0)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def test_write_funnel_round_trips(funnel: SimulatedFunnel, tmp_path: Path) -> None:
    paths = write_funnel(funnel, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    for path, frame in zip(paths, (funnel.leads, funnel.events, funnel.truth), strict=True):
        back = pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, frame, check_exact=True)
        assert back.attrs["observed_until"] == funnel.observed_until.isoformat()
        assert back.attrs["horizon_days"] == funnel.horizon_days


def test_write_funnel_failure_leaves_nothing_half_written(
    funnel: SimulatedFunnel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "leads.parquet").write_bytes(b"previous run")
    real_to_parquet = pd.DataFrame.to_parquet

    def failing_to_parquet(frame: pd.DataFrame, path: Path, **kwargs: object) -> None:
        if len(frame) == len(funnel.events):
            real_to_parquet(frame.head(10), path, **kwargs)  # a partial file, then the failure
            raise OSError("disk full")
        real_to_parquet(frame, path, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing_to_parquet)
    with pytest.raises(OSError, match="disk full"):
        write_funnel(funnel, out)
    assert [p.name for p in out.iterdir()] == ["leads.parquet"]
    assert (out / "leads.parquet").read_bytes() == b"previous run"


# --------------------------------------------------------------------------------------------
# CRM noise
# --------------------------------------------------------------------------------------------


def test_crm_noise_is_in_the_records_at_small_rates(medium: SimulatedFunnel) -> None:
    leads, truth = medium.leads, medium.truth
    for column in ("job_title", "industry", "company_size", "country"):
        assert 0.01 < leads[column].isna().mean() < 0.03, column
    for column, levels in (("industry", simulator.INDUSTRIES), ("country", simulator.COUNTRIES)):
        typed = leads[column].dropna().astype(str)
        messy = ~typed.isin(levels)
        assert 0.01 < messy.mean() < 0.03, column
        assert typed[messy].str.strip().str.lower().isin([v.lower() for v in levels]).all()
    # Late close dates: the record trails the process by one to fourteen days.
    recorded = (leads["closed_at"] - leads["created_at"]).dt.total_seconds() / 86_400
    late = (recorded - truth["closed_days"]).dropna()
    assert (late > -1e-4).all() and (late < 14).all()
    assert 0.01 < (late > 1).mean() < 0.03


def test_duplicate_records_share_a_person_and_never_convert(medium: SimulatedFunnel) -> None:
    leads, truth = medium.leads, medium.truth
    duplicate = leads["lead_id"] > MEDIUM.n_leads * (1 - MEDIUM.duplicate_share)
    assert duplicate.sum() == round(MEDIUM.n_leads * MEDIUM.duplicate_share)
    # Each has an earlier first record with the same email at the same account.
    key = ["email", "account_id"]
    pairs = leads[duplicate].merge(leads[~duplicate], on=key, suffixes=("", "_first"))
    earlier = pairs[pairs["created_at_first"] < pairs["created_at"]]
    assert set(earlier["lead_id"]) == set(leads.loc[duplicate, "lead_id"])
    assert not leads.loc[duplicate, "converted"].eq(1).any()
    assert (truth.loc[duplicate, ["p_convert_ever", "p_stage"]] == 0).all().all()
    events = medium.events[medium.events["lead_id"].isin(leads.loc[duplicate, "lead_id"])]
    assert set(events["event_type"].unique()) == {"form_fill"}


# --------------------------------------------------------------------------------------------
# Drift options
# --------------------------------------------------------------------------------------------


def _creation_share(funnel: SimulatedFunnel) -> np.ndarray:
    """Where in the creation period (0 start, 1 end) each lead was created."""
    start = pd.Timestamp(MEDIUM.start)
    period = funnel.observed_until - start
    return ((funnel.leads["created_at"] - start) / period).to_numpy()


def test_rate_growth_raises_the_chance_to_convert_by_its_factor(on_time: SimulatedFunnel) -> None:
    grown = simulate_funnel(ON_TIME.model_copy(update={"rate_growth": 6.0}))
    share = _creation_share(grown)
    # Same seed, same leads: only the chance to start a project moves, by 6^(share - 1).
    can_convert = on_time.truth["p_stage"].to_numpy() > 0  # not a duplicate record
    ratio = grown.truth["p_convert_ever"] / on_time.truth["p_convert_ever"]
    expected = 6.0 ** (share - 1.0)
    np.testing.assert_allclose(ratio[can_convert], expected[can_convert], rtol=1e-6)
    # In the data: leads seen for a full horizon convert within it far more often late.
    leads = grown.leads
    horizon = pd.Timedelta(days=MEDIUM.horizon_days)
    seen = (leads["created_at"] + horizon <= grown.observed_until).to_numpy()
    won = leads["converted"].eq(1).fillna(False) & (
        leads["closed_at"] - leads["created_at"] < horizon
    )
    early, late = seen & (share < 0.25), seen & (share >= 0.5)
    rise = won.to_numpy()[late].mean() / won.to_numpy()[early].mean()
    expected = 6.0 ** (share[late].mean() - share[early].mean())
    assert expected / 1.5 < rise < expected * 1.5, (rise, expected)
    _assert_calibrated_on_open_snapshots(grown)


def test_a_new_source_appears_after_its_launch_with_its_own_fit(medium: SimulatedFunnel) -> None:
    drifted = simulate_funnel(ON_TIME.model_copy(update={"new_source_from": 0.5}))
    source = drifted.leads["lead_source"]
    assert source.cat.categories.tolist() == [*simulator.LEAD_SOURCES, simulator.NEW_LEAD_SOURCE]
    assert medium.leads["lead_source"].cat.categories.tolist() == list(simulator.LEAD_SOURCES)
    new = (source == simulator.NEW_LEAD_SOURCE).to_numpy()
    share = _creation_share(drifted)
    assert new.sum() > 1_000
    assert not new[share < 0.5].any()
    assert 0.05 < new[share >= 0.5].mean() < 0.15
    # A better fit than the rest, and the truth follows it.
    truth = drifted.truth["p_convert_ever"].to_numpy()
    assert truth[new].mean() > 1.5 * truth[~new & (share >= 0.5)].mean()
    snapshots, p = _assert_calibrated_on_open_snapshots(drifted)
    from_new = snapshots["lead_id"].isin(drifted.leads.loc[new, "lead_id"]).to_numpy()
    realised = snapshots["realised"].to_numpy()[from_new]
    assert abs(realised.mean() - p[from_new].mean()) < _binomial_tolerance(p[from_new])


def test_a_changed_form_changes_the_record_not_the_leads(medium: SimulatedFunnel) -> None:
    changed = simulate_funnel(MEDIUM.model_copy(update={"form_change_at": 0.5}))
    size = changed.leads["company_size"]
    after = _creation_share(changed) >= 0.5
    new_bands = size.isin(simulator.NEW_FORM_COMPANY_SIZES).to_numpy()
    old_bands = size.isin(simulator.COMPANY_SIZES).to_numpy()
    assert (old_bands | size.isna().to_numpy())[~after].all()
    assert not old_bands[after].any() and new_bands[after].mean() > 0.6
    assert 0.25 < size[after].isna().mean() < 0.35
    # Everything but the record of company size is as without the change.
    assert changed.truth.equals(medium.truth)
    assert changed.events.equals(medium.events)
    assert changed.leads.drop(columns="company_size").equals(
        medium.leads.drop(columns="company_size")
    )


# --------------------------------------------------------------------------------------------
# The truth is an upper bound for the product's model
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_truth_ranks_the_models_holdout_at_least_as_well_as_the_model(seed: int) -> None:
    funnel = simulate_funnel(SimulatorConfig(n_leads=20_000, seed=seed))
    result = train_lead_scorer(
        funnel.leads,
        funnel.events,
        features=FeatureConfig(),
        snapshots=SnapshotConfig(observed_until=funnel.observed_until),
        rules=PointsRules.default(),
        config=TrainConfig(),
    )
    test = result.test
    labels = test[LABEL].to_numpy()
    truth = true_conversion_probability(
        funnel.truth, test["lead_id"], test["as_of"], funnel.horizon_days, given_open=True
    )
    oracle_auc = roc_auc_score(labels, truth)
    model_auc = result.evaluation.metrics["model_roc_auc"]
    assert oracle_auc >= model_auc, (oracle_auc, model_auc)
