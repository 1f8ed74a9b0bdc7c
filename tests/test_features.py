"""Point-in-time features: the vectorised builder against a naive loop; no look into the future."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.build import ACCOUNT_FEATURES, build_features, build_features_at, feature_names
from features.config import FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.fit import company_email_flags, parse_title
from features.pointintime import AS_OF
from features.training import LABEL, label_snapshots, make_training_set, snapshot_spine
from tests.conftest import START, random_funnel

CONFIG = FeatureConfig(account_column="account_id")


def naive_account_features(
    lead: pd.Series, leads: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp
) -> dict[str, float]:
    """Account features by their definition: everyone at the lead's company, before as_of."""
    if pd.isna(lead.account_id):
        return dict.fromkeys(ACCOUNT_FEATURES, math.nan)
    colleagues = leads[leads["account_id"] == lead.account_id]
    seen = events[
        events["lead_id"].isin(colleagues["lead_id"])
        & (events["ts"] < as_of)
        & ~events["event_type"].isin(CONFIG.outbound_event_types)
    ]
    ages = (as_of - seen["ts"]) / pd.Timedelta(days=1)
    return {
        "account_leads": float((colleagues["created_at"] < as_of).sum()),
        "account_engagement_decayed": float((0.5 ** (ages / CONFIG.decay_half_life_days)).sum()),
        "account_events_30d": float((ages < 30).sum()),
    }


def naive_features(
    lead: pd.Series, lead_events: pd.DataFrame, as_of: pd.Timestamp, config: FeatureConfig
) -> dict[str, float]:
    """The definition of every behaviour feature, one snapshot at a time, in plain Python."""
    seen = [
        (e.ts, str(e.event_type))
        for e in lead_events.itertuples()
        if e.ts < as_of and str(e.event_type) in config.event_types
    ]
    out: dict[str, float] = {"lead_age_days": (as_of - lead.created_at) / pd.Timedelta(days=1)}
    for kind in config.event_types:
        ages = [(as_of - ts) / pd.Timedelta(days=1) for ts, k in seen if k == kind]
        for window in config.windows_days:
            out[f"{kind}_count_{window}d"] = sum(a < window for a in ages)
        out[f"{kind}_count_all"] = len(ages)
        out[f"{kind}_days_since_last"] = min(ages) if ages else math.nan
    inbound = [(ts, k) for ts, k in seen if k not in config.outbound_event_types]
    ages = [(as_of - ts) / pd.Timedelta(days=1) for ts, _ in inbound]
    out["engagement_decayed"] = sum(0.5 ** (a / config.decay_half_life_days) for a in ages)
    out["active_days"] = len({ts.floor("D") for ts, _ in inbound})
    n7, n30 = sum(a < 7 for a in ages), sum(a < 30 for a in ages)
    out["velocity_7d_vs_30d"] = (n7 / 7) / (n30 / 30) if n30 else 0.0
    out["days_since_last_activity"] = min(ages) if ages else math.nan
    sent = out["email_sent_count_all"]
    out["email_open_rate"] = out["email_open_count_all"] / sent if sent else math.nan
    return out


def test_vectorised_builder_equals_naive_loop_at_many_snapshots() -> None:
    funnel = random_funnel(n_leads=40, n_events=1_200, seed=3)
    spine = snapshot_spine(
        funnel.leads,
        SnapshotConfig(offsets_days=[0, 3, 10, 45], weekly=True, horizon_days=30),
        until=START + pd.Timedelta(days=400),
    )
    assert spine[AS_OF].nunique() > 20 and spine["lead_id"].duplicated().any()
    built = build_features_at(spine, funnel.leads, funnel.events, CONFIG)

    leads = funnel.leads.set_index("lead_id", drop=False)
    expected = pd.DataFrame(
        [
            naive_features(
                leads.loc[row.lead_id],
                funnel.events[funnel.events["lead_id"] == row.lead_id],
                row.as_of,
                CONFIG,
            )
            | naive_account_features(leads.loc[row.lead_id], funnel.leads, funnel.events, row.as_of)
            for row in spine.itertuples()
        ]
    )
    assert expected["account_leads"].isna().any() and (expected["account_leads"] > 1).any()
    pd.testing.assert_frame_equal(
        built[expected.columns].reset_index(drop=True),
        expected.astype("float64"),
        check_exact=False,
        rtol=1e-9,
    )


def test_output_has_the_declared_columns_and_one_row_per_lead() -> None:
    funnel = random_funnel(seed=1)
    as_of = START + pd.Timedelta(days=120)
    built = build_features(funnel.leads, funnel.events, as_of, CONFIG)
    assert list(built.columns) == ["lead_id", "as_of", *feature_names(CONFIG)]
    expected_ids = sorted(funnel.leads.loc[funnel.leads["created_at"] <= as_of, "lead_id"])
    assert built["lead_id"].tolist() == expected_ids
    for column in ["seniority", *CONFIG.categorical_columns]:
        assert isinstance(built[column].dtype, pd.CategoricalDtype)
    assert "email" not in built.columns and "converted" not in built.columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_events_at_or_after_as_of_change_no_feature(seed: int) -> None:
    funnel = random_funnel(seed=seed)
    as_of = START + pd.Timedelta(days=100)
    before = build_features(funnel.leads, funnel.events, as_of, CONFIG)

    rng = np.random.default_rng(seed)
    n = 3_000
    seconds_after = np.where(rng.random(n) < 0.2, 0, rng.integers(0, 10**7, n))
    future = pd.DataFrame(
        {
            "lead_id": rng.choice(funnel.leads["lead_id"].to_numpy(), n),
            # Exactly at as_of, and anywhere after it.
            "ts": as_of + pd.to_timedelta(seconds_after, unit="s"),
            "event_type": pd.Categorical(
                rng.choice(CONFIG.event_types, n), categories=CONFIG.event_types
            ),
        }
    )
    after = build_features(
        funnel.leads, pd.concat([funnel.events, future], ignore_index=True), as_of, CONFIG
    )
    pd.testing.assert_frame_equal(before, after)


def test_leads_created_after_as_of_are_not_scored_and_change_nothing() -> None:
    funnel = random_funnel(seed=4)
    as_of = START + pd.Timedelta(days=90)
    before = build_features(funnel.leads, funnel.events, as_of, CONFIG)
    assert (funnel.leads["created_at"] > as_of).any()
    assert not set(before["lead_id"]) & set(
        funnel.leads.loc[funnel.leads["created_at"] > as_of, "lead_id"]
    )


def test_shuffling_input_rows_changes_nothing() -> None:
    funnel = random_funnel(seed=5)
    config = SnapshotConfig(offsets_days=[0, 7, 30], horizon_days=30)
    ordered = make_training_set(funnel.leads, funnel.events, config, CONFIG)
    shuffled = make_training_set(
        funnel.leads.sample(frac=1, random_state=1),
        funnel.events.sample(frac=1, random_state=2),
        config,
        CONFIG,
    )
    pd.testing.assert_frame_equal(ordered, shuffled)


def test_label_never_sees_events() -> None:
    funnel = random_funnel(seed=6)
    config = SnapshotConfig(offsets_days=[0, 14], horizon_days=60)
    full = make_training_set(funnel.leads, funnel.events, config, CONFIG)
    # Only the observation end may come from events; pin it so that dropping events is fair.
    pinned = config.model_copy(update={"observed_until": START + pd.Timedelta(days=400)})
    with_events = make_training_set(funnel.leads, funnel.events, pinned, CONFIG)
    without = make_training_set(funnel.leads, funnel.events.iloc[:0], pinned, CONFIG)
    pd.testing.assert_series_equal(with_events[LABEL], without[LABEL])
    assert full[LABEL].sum() > 0


def test_training_set_keeps_open_leads_and_observed_horizons_only() -> None:
    funnel = random_funnel(n_leads=200, seed=7)
    until = START + pd.Timedelta(days=250)
    config = SnapshotConfig(offsets_days=[0, 7, 30, 60], horizon_days=45, observed_until=until)
    frame = make_training_set(funnel.leads, funnel.events, config, CONFIG)
    leads = funnel.leads.set_index("lead_id").loc[frame["lead_id"]].reset_index()
    closed, as_of = leads["closed_at"], frame[AS_OF]
    assert not (closed < as_of).any(), "a lead closed before as_of is kept"
    assert (as_of + pd.Timedelta(days=45) <= until).all()
    offsets = (as_of - leads["created_at"]) / pd.Timedelta(days=1)
    assert set(offsets.round(6)) <= {0, 7, 30, 60}
    # The label is exactly "won, with a close date in [as_of, as_of + horizon)".
    won = leads["converted"].fillna(0) == 1
    in_window = (closed >= as_of) & (closed < as_of + pd.Timedelta(days=45))
    np.testing.assert_array_equal(frame[LABEL].to_numpy(), (won & in_window).astype("int8"))


def test_weekly_snapshots_fall_on_mondays_while_open() -> None:
    funnel = random_funnel(n_leads=30, seed=8)
    config = SnapshotConfig(offsets_days=[], weekly=True, horizon_days=30)
    spine = snapshot_spine(funnel.leads, config, until=START + pd.Timedelta(days=300))
    assert len(spine) > 30
    assert (spine[AS_OF].dt.day_of_week == 0).all()
    assert (spine[AS_OF] == spine[AS_OF].dt.normalize()).all()
    created = funnel.leads.set_index("lead_id").loc[spine["lead_id"], "created_at"].to_numpy()
    assert (spine[AS_OF].to_numpy() > created).all()


def test_won_lead_without_close_date_is_refused() -> None:
    funnel = random_funnel(seed=9)
    leads = funnel.leads.copy()
    won = leads.index[leads["converted"] == 1][0]
    leads.loc[won, "closed_at"] = pd.NaT
    with pytest.raises(DataContractError, match="won leads need 'closed_at'"):
        label_snapshots(leads[["lead_id"]].assign(as_of=START), leads, 30)


def test_horizon_longer_than_the_data_is_refused_with_advice() -> None:
    funnel = random_funnel(seed=10)
    config = SnapshotConfig(horizon_days=5_000)
    with pytest.raises(DataContractError, match="no snapshot has its whole horizon observed"):
        make_training_set(funnel.leads, funnel.events, config, CONFIG)


def test_feature_config_naming_unknown_column_is_refused() -> None:
    funnel = random_funnel(seed=11)
    config = FeatureConfig(categorical_columns=["industry", "budget"])
    with pytest.raises(DataContractError, match="'budget'"):
        build_features(funnel.leads, funnel.events, START + pd.Timedelta(days=50), config)


def test_seniority_function_and_company_email_from_free_text() -> None:
    expected = {
        "VP of Marketing": ("vp", "marketing"),
        "Chief Technology Officer": ("c_level", "engineering"),
        "Student": ("student", "other"),
        "IT Manager": ("manager", "it"),
        "Director, Sales Operations": ("director", "sales"),
        "Senior Software Engineer": ("individual", "engineering"),
        "Assistant to the CEO": ("individual", "general_management"),
        "Founder & CEO": ("founder", "general_management"),
        "Head of Growth": ("director", "marketing"),
        "Data Engineer": ("individual", "data"),
        "Network Engineer": ("individual", "it"),
        "Freelance Consultant": ("consultant", "other"),
        "chief people officer": ("c_level", "hr"),
        "Astronaut": ("other", "other"),
    }
    assert {title: parse_title(title) for title in expected} == expected
    free = frozenset(CONFIG.free_mail_domains)
    emails = np.array([" x@Gmail.com ", "y@acme.io", "a@", "no-at-sign", "a@b@acme.io", None])
    flags = company_email_flags(emails.astype(object), free)
    np.testing.assert_array_equal(flags, [0.0, 1.0, np.nan, np.nan, 1.0, np.nan])


def test_chunked_join_and_sliced_day_bitmap_give_the_same_features(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    funnel = random_funnel(n_leads=50, n_events=2_000, seed=12)
    config = SnapshotConfig(offsets_days=[0, 7, 30], weekly=True, horizon_days=20)
    whole = make_training_set(funnel.leads, funnel.events, config, CONFIG)
    monkeypatch.setattr("features.pointintime.MAX_PAIRS_PER_CHUNK", 500)
    monkeypatch.setattr("features.build._BITMAP_BYTES", 64)
    pieces = make_training_set(funnel.leads, funnel.events, config, CONFIG)
    pd.testing.assert_frame_equal(whole, pieces)


def test_no_lead_created_yet_gives_an_empty_frame_with_all_columns() -> None:
    funnel = random_funnel(seed=13)
    built = build_features(funnel.leads, funnel.events, START - pd.Timedelta(days=1), CONFIG)
    assert built.empty
    assert list(built.columns) == ["lead_id", "as_of", *feature_names(CONFIG)]
