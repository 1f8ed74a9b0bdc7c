"""Rule-based points: the vectorised score against a plain loop, point in time, YAML errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.pointintime import AS_OF
from features.training import snapshot_spine
from models.points import RULE_MQL, RULE_SCORE, PointsRules, rule_attributes
from tests.conftest import START, random_funnel

FEATURES = FeatureConfig()


def naive_score(
    rules: PointsRules, attributes: pd.Series, lead_events: pd.DataFrame, as_of: pd.Timestamp
) -> float:
    total = 0.0
    for kind, spec in rules.events.items():
        ages = sorted(
            (
                (as_of - e.ts) / pd.Timedelta(days=1)
                for e in lead_events.itertuples()
                if str(e.event_type) == kind and e.ts < as_of
            ),
            reverse=True,
        )
        if not spec.repeatable:
            ages = ages[:1]
        hl = rules.half_life_days
        points = sum(spec.points * (1.0 if hl is None else 0.5 ** (a / hl)) for a in ages)
        if spec.cap is not None:
            points = max(-spec.cap, min(spec.cap, points))
        total += points
    for attribute, table in rules.attributes.items():
        total += table.get(str(attributes[attribute]), 0.0)
    return total


@pytest.mark.parametrize("half_life", [30.0, None])
def test_vectorised_points_equal_a_plain_loop(half_life: float | None) -> None:
    funnel = random_funnel(n_leads=40, n_events=1_500, seed=21)
    rules = PointsRules.default().model_copy(update={"half_life_days": half_life})
    spine = snapshot_spine(
        funnel.leads,
        SnapshotConfig(offsets_days=[0, 5, 20, 60], horizon_days=10),
        until=START + pd.Timedelta(days=400),
    )
    scored = rules.score(spine, funnel.leads, funnel.events, FEATURES)
    attributes = rule_attributes(funnel.leads, FEATURES).set_index(funnel.leads["lead_id"])
    expected = [
        naive_score(
            rules,
            attributes.loc[row.lead_id],
            funnel.events[funnel.events["lead_id"] == row.lead_id],
            row.as_of,
        )
        for row in spine.itertuples()
    ]
    np.testing.assert_allclose(scored[RULE_SCORE].to_numpy(), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(scored[RULE_MQL], np.array(expected) >= rules.mql_threshold)
    assert scored[RULE_MQL].any() and not scored[RULE_MQL].all()


def _one_lead(events: list[tuple[str, str]], **lead: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    leads = pd.DataFrame(
        [
            {
                "lead_id": 1,
                "created_at": START,
                "job_title": "Engineer",
                "email": "a@acme.io",
                "industry": "software",
                "company_size": "11-50",
                "country": "US",
                "lead_source": "referral",
                **lead,
            }
        ]
    )
    frame = pd.DataFrame(
        {
            "lead_id": 1,
            "ts": pd.to_datetime([ts for ts, _ in events], utc=True),
            "event_type": pd.Categorical([k for _, k in events]),
        }
    )
    return leads, frame


def _score(rules: PointsRules, leads: pd.DataFrame, events: pd.DataFrame, as_of: str) -> float:
    spine = pd.DataFrame({"lead_id": [1], AS_OF: [pd.Timestamp(as_of)]})
    return float(rules.score(spine, leads, events, FEATURES)[RULE_SCORE].iloc[0])


def test_decay_caps_first_time_only_and_negative_points() -> None:
    rules = PointsRules(
        mql_threshold=50,
        half_life_days=10,
        events={
            "email_open": {"points": 5, "cap": 12},
            "demo_request": {"points": 30, "repeatable": False},
            "unsubscribe": {"points": -20},
        },
    )
    day = "2024-01-{:02d}T00:00:00Z".format
    leads, events = _one_lead([(day(1), "demo_request"), (day(11), "demo_request")])
    # Only the first demo request counts, decayed over its 20 days: 30 * 0.5**2.
    assert _score(rules, leads, events, day(21)) == pytest.approx(7.5)

    leads, events = _one_lead([(day(20), "email_open")] * 5)
    assert _score(rules, leads, events, day(20)) == 0, "events at as_of are not seen"
    assert _score(rules, leads, events, day(30)) == pytest.approx(12), "capped after decay"

    leads, events = _one_lead([(day(5), "unsubscribe")])
    assert _score(rules, leads, events, "2024-01-05T00:01:00Z") == pytest.approx(-20, abs=0.01)


def test_attribute_points_use_the_parsed_fit_features() -> None:
    rules = PointsRules(
        mql_threshold=10,
        half_life_days=None,
        attributes={
            "seniority": {"vp": 15, "student": -25},
            "email_domain": {"free_mail": -10},
            "country": {"US": 3},
        },
    )
    leads, events = _one_lead([], job_title="VP, Marketing", email="x@gmail.com")
    assert _score(rules, leads, events, "2024-02-01T00:00:00Z") == 15 - 10 + 3


def test_future_events_do_not_change_points() -> None:
    funnel = random_funnel(seed=22)
    spine = pd.DataFrame({"lead_id": funnel.leads["lead_id"], AS_OF: START + pd.Timedelta(days=90)})
    rules = PointsRules.default()
    before = rules.score(spine, funnel.leads, funnel.events, FEATURES)
    late = funnel.events.assign(ts=START + pd.Timedelta(days=90) + pd.Timedelta(hours=1))
    after = rules.score(
        spine, funnel.leads, pd.concat([funnel.events, late], ignore_index=True), FEATURES
    )
    pd.testing.assert_frame_equal(before, after)


def test_default_rules_follow_common_practice_and_round_trip(tmp_path: Path) -> None:
    rules = PointsRules.default()
    assert rules.events["email_open"].points == 5
    assert rules.events["demo_request"].points == 30
    assert rules.events["unsubscribe"].points < 0
    assert rules.attributes["seniority"]["student"] < 0
    path = tmp_path / "rules.yaml"
    path.write_text(rules.to_yaml())
    assert PointsRules.from_yaml(path) == rules


def test_bad_rules_files_get_one_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("mql_threshold: 50\nevents:\n  email_open: {points: many}\n")
    with pytest.raises(DataContractError, match=r"rules.yaml: events.email_open.points"):
        PointsRules.from_yaml(path)
    path.write_text("mql_threshold: [\n")
    with pytest.raises(DataContractError, match="cannot read the rules"):
        PointsRules.from_yaml(path)
    funnel = random_funnel(seed=23)
    rules = PointsRules(mql_threshold=1, attributes={"budget": {"high": 10}})
    spine = pd.DataFrame({"lead_id": funnel.leads["lead_id"], AS_OF: START})
    with pytest.raises(DataContractError, match="attribute 'budget'"):
        rules.score(spine, funnel.leads, funnel.events, FEATURES)
