"""Rule-based points: the vectorised score against a plain loop, point in time, YAML errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from features.config import FeatureConfig, SnapshotConfig
from features.contract import DataContractError
from features.fit import company_email_flags, parse_title
from features.pointintime import AS_OF
from features.training import snapshot_spine
from features.vocabulary import EVENT_TYPES
from models.rules.points import RULE_MQL, RULE_SCORE, EventPoints, NumberBand, PointsRules, RuleKey
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
    for column, bands in rules.numbers.items():
        value = attributes[column]
        if pd.notna(value):
            total += sum(band.points for band in bands if float(value) >= band.at_least)
    return total


def naive_attributes(leads: pd.DataFrame) -> pd.DataFrame:
    """What the rules read of each lead, one lead at a time: the raw values as text, and
    what the title and e-mail tell (indexed by lead id)."""
    free = frozenset(FEATURES.free_mail_domains)
    rows = []
    for lead in leads.to_dict("records"):
        row = {k: None if pd.isna(v) else str(v).strip() for k, v in lead.items() if k != "lead_id"}
        row["employees"] = lead.get("employees")
        title, email = lead["job_title"], lead["email"]
        row["seniority"], row["job_function"] = (
            (None, None) if pd.isna(title) else parse_title(str(title).strip())
        )
        flag = company_email_flags(np.array([email], dtype=object), free)[0]
        row["email_domain"] = {1.0: "company", 0.0: "free_mail"}.get(flag)
        rows.append(row)
    return pd.DataFrame(rows, index=leads["lead_id"].to_numpy())


NUMBERS = {"employees": [{"at_least": 50, "points": 5}, {"at_least": 500, "points": 10}]}


def _with_employees(leads: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A numeric lead column with some missing values, for number bands."""
    rng = np.random.default_rng(seed)
    employees = rng.choice([3.0, 50.0, 120.0, 499.0, 500.0, 9000.0, np.nan], len(leads))
    return leads.assign(employees=employees)


@pytest.mark.parametrize(("half_life", "numbers"), [(30.0, NUMBERS), (None, {})])
def test_vectorised_points_equal_a_plain_loop(
    half_life: float | None, numbers: dict[str, list[dict[str, float]]]
) -> None:
    funnel = random_funnel(n_leads=40, n_events=1_500, seed=21)
    leads = _with_employees(funnel.leads, seed=21)
    rules = PointsRules.model_validate(
        {**PointsRules.default().model_dump(), "half_life_days": half_life, "numbers": numbers}
    )
    spine = snapshot_spine(
        leads,
        SnapshotConfig(offsets_days=[0, 5, 20, 60], horizon_days=10),
        until=START + pd.Timedelta(days=400),
    )
    scored = rules.score(spine, leads, funnel.events, FEATURES)
    attributes = naive_attributes(leads)
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
    if numbers:
        assert scored["rule_number_points"].gt(0).any()


def test_points_by_rule_add_up_to_the_score_rule_by_rule() -> None:
    funnel = random_funnel(n_leads=40, n_events=1_500, seed=24)
    leads = _with_employees(funnel.leads, seed=24)
    rules = PointsRules.model_validate({**PointsRules.default().model_dump(), "numbers": NUMBERS})
    spine = snapshot_spine(
        leads, SnapshotConfig(offsets_days=[0, 20], horizon_days=10), START + pd.Timedelta(days=400)
    )
    by_rule = rules.points_by_rule_at(spine, leads, funnel.events, FEATURES)
    assert by_rule.keys == rules.rule_keys()
    assert by_rule.points.shape == (len(spine), len(rules.rule_keys()))
    scored = rules.score(spine, leads, funnel.events, FEATURES)
    np.testing.assert_allclose(by_rule.points.sum(axis=1), scored[RULE_SCORE], atol=1e-9)
    # Each column is one rule alone: a table holding only that rule scores the same.
    key = RuleKey("attributes", "seniority", "student")
    alone = PointsRules(mql_threshold=0, attributes={"seniority": {"student": -25}})
    np.testing.assert_allclose(
        by_rule.points[:, by_rule.keys.index(key)],
        alone.score(spine, leads, funnel.events, FEATURES)[RULE_SCORE],
    )
    band = RuleKey("numbers", "employees", 500.0)
    assert set(np.unique(by_rule.points[:, by_rule.keys.index(band)])) == {0.0, 10.0}


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
    moment = START + pd.Timedelta(days=90)
    existing = funnel.leads[funnel.leads["created_at"] <= moment]  # no lead scored before it exists
    spine = pd.DataFrame({"lead_id": existing["lead_id"], AS_OF: moment})
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
    path.write_text("mql_threshold: 50\nnumbers:\n  TotalVisits: [{at_least: many, points: 5}]\n")
    with pytest.raises(DataContractError, match=r"rules.yaml: numbers.TotalVisits.0.at_least"):
        PointsRules.from_yaml(path)
    path.write_text("mql_threshold: [\n")
    with pytest.raises(DataContractError, match="cannot read the rules"):
        PointsRules.from_yaml(path)
    funnel = random_funnel(seed=23)
    rules = PointsRules(mql_threshold=1, attributes={"budget": {"high": 10}})
    spine = pd.DataFrame({"lead_id": funnel.leads["lead_id"], AS_OF: START})
    with pytest.raises(DataContractError, match="attribute 'budget'"):
        rules.score(spine, funnel.leads, funnel.events, FEATURES)


def _snapshot_table() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, FeatureConfig]:
    """Snapshot mode: one row per lead with behaviour already in columns, and no event log."""
    leads = pd.DataFrame(
        {
            "lead_id": [1, 2, 3, 4, 5],
            "TotalVisits": [12.0, 3.0, 2.0, np.nan, 10.0],
            "Lead Source": ["Google", None, "Olark Chat", "Google", np.nan],
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": pd.Series([], dtype="int64"),
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "event_type": pd.Series([], dtype="str"),
        }
    )
    spine = pd.DataFrame({"lead_id": leads["lead_id"], AS_OF: START})
    features = FeatureConfig(
        categorical_columns=["Lead Source"],
        numeric_columns=["TotalVisits"],
        title_column=None,
        email_column=None,
    )
    return spine, leads, events, features


NUMBER_RULES_YAML = """\
mql_threshold: 10
numbers:
  TotalVisits:
    - {at_least: 3, points: 5}
    - {at_least: 10, points: 5}   # cumulative: a lead with 12 visits gets 10
attributes:
  Lead Source: {Google: 2}
"""


def test_number_bands_add_up_and_missing_numbers_add_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(NUMBER_RULES_YAML)
    rules = PointsRules.from_yaml(path)
    spine, leads, events, features = _snapshot_table()
    scored = rules.score(spine, leads, events, features)
    # 12 visits: both bands; 3: the first (at_least includes the cut); 2: none; NaN: none.
    assert scored["rule_number_points"].tolist() == [10, 5, 0, 0, 10]
    assert scored[RULE_SCORE].tolist() == [12, 5, 0, 2, 10]
    assert scored[RULE_MQL].tolist() == [True, False, False, False, True]
    assert scored["rule_event_points"].eq(0).all()


def test_rules_with_numbers_round_trip_and_old_tables_stay_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(NUMBER_RULES_YAML)
    rules = PointsRules.from_yaml(path)
    assert [band.at_least for band in rules.numbers["TotalVisits"]] == [3, 10]
    path.write_text(rules.to_yaml())
    assert PointsRules.from_yaml(path) == rules
    assert "at_least: 3\n" in rules.to_yaml(), "whole numbers are written as marketers type them"
    default = PointsRules.default().to_yaml()
    assert "numbers" not in default, "tables without numbers load in versions without them"
    assert PointsRules.model_validate(yaml.safe_load(default)) == PointsRules.default()


def test_number_rules_on_a_missing_or_non_numeric_column_say_so() -> None:
    spine, leads, events, features = _snapshot_table()
    rules = PointsRules(mql_threshold=1, numbers={"Page Views": [{"at_least": 2, "points": 3}]})
    with pytest.raises(DataContractError, match=r"number 'Page Views'.*numeric lead columns: "):
        rules.score(spine, leads, events, features)
    rules = PointsRules(mql_threshold=1, numbers={"Lead Source": [{"at_least": 2, "points": 3}]})
    with pytest.raises(DataContractError, match=r"column 'Lead Source': value 'Google' is not"):
        rules.score(spine, leads, events, features)


def test_attribute_points_read_the_value_as_written_not_the_models_categories() -> None:
    """A value no model has seen still earns the table's points; values are trimmed, case is
    kept as the table writes it."""
    rules = PointsRules(
        mql_threshold=0,
        half_life_days=None,
        attributes={"company_size": {"5000+": 10, " Enterprise ": 7}},
    )
    assert rules.attributes["company_size"] == {"5000+": 10, "Enterprise": 7}
    trained = FEATURES.model_copy(update={"category_levels": {"company_size": ["1-10"]}})
    scores = []
    for size in ["5000+", " 5000+ ", "Enterprise", "enterprise", None]:
        leads, events = _one_lead([], company_size=size)
        spine = pd.DataFrame({"lead_id": leads["lead_id"], AS_OF: START + pd.Timedelta(days=1)})
        scores.append(float(rules.score(spine, leads, events, trained)[RULE_SCORE].iloc[0]))
    assert scores == [10, 10, 7, 0, 0]


_points = st.floats(-50, 50, allow_nan=False).map(lambda x: round(x, 2))
_rules = st.builds(
    PointsRules,
    mql_threshold=_points,
    half_life_days=st.one_of(st.none(), st.floats(0.5, 400, allow_nan=False)),
    events=st.dictionaries(
        st.sampled_from(list(EVENT_TYPES)),
        st.builds(
            EventPoints,
            points=_points,
            cap=st.one_of(st.none(), st.floats(1, 100, allow_nan=False)),
            repeatable=st.booleans(),
        ),
        max_size=6,
    ),
    attributes=st.dictionaries(
        st.sampled_from(["seniority", "company_size", "email_domain", "country"]),
        st.dictionaries(st.sampled_from(["vp", "5000+", "US", "free_mail", "DE"]), _points),
        max_size=3,
    ),
    numbers=st.dictionaries(
        st.just("employees"),
        st.lists(st.builds(NumberBand, at_least=_points, points=_points), max_size=3),
        max_size=1,
    ),
)


@settings(max_examples=60, deadline=None)
@given(rules=_rules)
def test_a_saved_table_loads_as_the_same_table_and_scores_the_same(
    rules: PointsRules, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every setting survives the bundle's save and load: `half_life_days: null` (never decay)
    stays null, caps and first-time-only rules stay."""
    path = tmp_path_factory.mktemp("rules") / "points_rules.yaml"
    path.write_text(rules.to_yaml())
    loaded = PointsRules.from_yaml(path)
    assert loaded == rules
    funnel = random_funnel(n_leads=20, n_events=300, seed=3)
    leads = _with_employees(funnel.leads, seed=3)
    moment = START + pd.Timedelta(days=150)
    existing = leads[leads["created_at"] <= moment]  # no lead is scored before it exists
    spine = pd.DataFrame({"lead_id": existing["lead_id"], AS_OF: moment})
    np.testing.assert_array_equal(
        loaded.score(spine, leads, funnel.events, FEATURES)[RULE_SCORE],
        rules.score(spine, leads, funnel.events, FEATURES)[RULE_SCORE],
    )


def test_a_copied_table_scores_with_its_own_points() -> None:
    """A table changed by model_copy scores its new points, not the cached ones of the table
    it was copied from."""
    rules = PointsRules.default()
    leads, events = _one_lead([("2024-03-02T10:00:00Z", "demo_request")])
    before = _score(rules, leads, events, "2024-03-05T00:00:00Z")
    doubled = rules.model_copy(
        update={"events": {k: v.model_copy(update={"points": 2 * v.points})
                           for k, v in rules.events.items()}}
    )  # fmt: skip
    after = _score(doubled, leads, events, "2024-03-05T00:00:00Z")
    assert before > 0 and after > before
    assert _score(rules, leads, events, "2024-03-05T00:00:00Z") == before
