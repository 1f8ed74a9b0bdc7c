"""The kernel's two doors agree: leads as records (API bodies, pyfunc rows) and as frames (files,
training sets) become the same features and the same points, whatever the leads hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.batch import (
    EventsUnreadable,
    LeadsUnscorable,
    batch_from_frames,
    batch_from_records,
    read_events,
)
from features.build import feature_matrix
from features.config import FeatureConfig
from features.contract import DataContractError
from features.fit import LeadValues
from features.vocabulary import EVENT_TYPES
from models.rules.points import PointsRules
from serve.schemas import LeadIn

START = datetime(2024, 1, 1, tzinfo=UTC)
# A trained model's view: fixed category levels, and a number column.
CONFIG = FeatureConfig(
    numeric_columns=["employees"],
    category_levels={
        "industry": ["finance", "software"],
        "company_size": ["1-10", "11-50"],
        "country": ["DE", "US"],
        "lead_source": ["referral", "webinar"],
    },
)
RULES = PointsRules.model_validate(
    {
        **PointsRules.default().model_dump(),
        "attributes": {**PointsRules.default().attributes, "country": {"US": 3, "FR": 2}},
        "numbers": {"employees": [{"at_least": 50, "points": 5}]},
    }
)
_text = st.one_of(
    st.none(),
    st.sampled_from(["software", " retail ", "US", "FR", "5000+", "11-50", "VP Sales", "CEO"]),
    st.text(max_size=12),
)
_lead = st.fixed_dictionaries(
    {
        "created": st.integers(0, 300 * 86_400),
        "after": st.integers(0, 200 * 86_400),
        "job_title": _text,
        "email": st.one_of(_text, st.sampled_from(["a@gmail.com", "b@acme.io", " X@Y.COM "])),
        "industry": _text,
        "company_size": _text,
        "country": _text,
        "lead_source": _text,
        "employees": st.one_of(
            st.none(), st.integers(0, 10_000), st.sampled_from(["12", " 7.5 ", "1e3", "many"])
        ),
        "events": st.lists(
            st.tuples(st.integers(-86_400, 250 * 86_400), st.sampled_from([*EVENT_TYPES, "chat"])),
            max_size=20,
        ),
    }
)
FIELDS = ("job_title", "email", "industry", "company_size", "country", "lead_source", "employees")


def _records(leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, lead in enumerate(leads):
        created = START + timedelta(seconds=lead["created"])
        out.append(
            {
                "lead_id": f"L{i}",
                "created_at": created,
                "as_of": created + timedelta(seconds=lead["after"]),
                **{field: lead[field] for field in FIELDS},
                "events": [
                    {"ts": created + timedelta(seconds=s), "event_type": kind}
                    for s, kind in lead["events"]
                ],
            }
        )
    return out


def _frames(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    leads = pd.DataFrame(
        {
            "lead_id": [r["lead_id"] for r in records],
            "created_at": pd.to_datetime([r["created_at"] for r in records], utc=True),
            **{f: pd.Series([r[f] for r in records], dtype=object) for f in FIELDS},
        }
    )
    spine = pd.DataFrame(
        {
            "lead_id": leads["lead_id"],
            "as_of": pd.to_datetime([r["as_of"] for r in records], utc=True).as_unit("ns"),
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": [r["lead_id"] for r in records for _ in r["events"]],
            "ts": pd.to_datetime([e["ts"] for r in records for e in r["events"]], utc=True),
            "event_type": [e["event_type"] for r in records for e in r["events"]],
        }
    )
    return leads, spine, events


@settings(max_examples=150, deadline=None)
@given(leads=st.lists(_lead, min_size=1, max_size=8))
def test_records_and_frames_give_the_same_features_and_points(
    leads: list[dict[str, Any]],
) -> None:
    records = _records(leads)
    try:
        by_records = batch_from_records(records, now_ns=0)
        records_values = LeadValues(by_records, CONFIG)
        records_matrix = feature_matrix(by_records, CONFIG, records_values).values
    except DataContractError:
        # A number that is no number is refused through the other door too.
        with pytest.raises(DataContractError, match="employees"):
            leads_frame, spine, events = _frames(records)
            batch = batch_from_frames(spine, leads_frame, events)
            feature_matrix(batch, CONFIG, LeadValues(batch, CONFIG))
        return
    leads_frame, spine, events = _frames(records)
    by_frames = batch_from_frames(spine, leads_frame, events)
    frames_values = LeadValues(by_frames, CONFIG)
    frames_matrix = feature_matrix(by_frames, CONFIG, frames_values).values
    np.testing.assert_array_equal(records_matrix, frames_matrix)
    np.testing.assert_array_equal(
        RULES.points_by_rule(by_records, records_values).points,
        RULES.points_by_rule(by_frames, frames_values).points,
    )


def test_events_are_read_the_same_from_text_lists_and_datetimes() -> None:
    sent = [
        {"ts": "2025-03-02T10:00:00.123456Z", "event_type": "email_open", "extra": 1},
        {"ts": "2025-03-02T12:00:00+02:00", "event_type": "demo_request"},
    ]
    as_datetimes = [{**e, "ts": datetime.fromisoformat(e["ts"])} for e in sent]
    expected = [
        pd.Timestamp("2025-03-02T10:00:00.123456Z").value,
        pd.Timestamp("2025-03-02T10:00:00Z").value,
    ]
    for cell in (sent, json.dumps(sent), as_datetimes, tuple(sent)):
        read = read_events(cell)
        assert read.ts_ns == expected
        assert read.kinds == ["email_open", "demo_request"]
    assert len(read_events(None)) == 0 and len(read_events([])) == 0


@pytest.mark.parametrize(
    "spelling",
    [
        "2025-03-02T10:00:00Z",
        " 2025-03-02T10:00:00Z\t",
        "2025-03-02t10:00:00z",  # RFC 3339 allows lower case
        "2025-03-02 12:00:00+02:00",
    ],
)
def test_every_time_field_reads_a_spelling_alike(spelling: str) -> None:
    """`created_at`, `as_of` and event times, as records and in the API's schema: one reading."""
    expected = pd.Timestamp("2025-03-02T10:00:00Z").value
    record = {
        "lead_id": "1",
        "created_at": spelling,
        "as_of": spelling,
        "events": [{"ts": spelling, "event_type": "email_open"}],
    }
    batch = batch_from_records([record], now_ns=0)
    assert batch.created_ns is not None and batch.created_ns.tolist() == [expected]
    assert batch.as_of_ns.tolist() == [expected]
    assert batch.event_ts.tolist() == [expected]
    lead = LeadIn.model_validate(record)
    assert lead.created_at is not None and lead.as_of is not None
    assert pd.Timestamp(lead.created_at).value == pd.Timestamp(lead.as_of).value == expected


@pytest.mark.parametrize("spelling", ["2025-03-02t10:00:00", " 2025-03-02 ", "soon"])
def test_a_time_without_a_timezone_is_refused_by_every_time_field(spelling: str) -> None:
    with pytest.raises(EventsUnreadable):
        read_events([{"ts": spelling, "event_type": "email_open"}])
    with pytest.raises(DataContractError, match="created_at"):
        batch_from_records([{"lead_id": "1", "created_at": spelling}], now_ns=0)
    with pytest.raises(ValidationError, match="created_at"):
        LeadIn.model_validate({"lead_id": "1", "created_at": spelling})


@pytest.mark.parametrize(
    ("event", "where"),
    [
        ({"ts": 1_740_909_600, "event_type": "a"}, (0, "ts")),  # a number is not a time
        ({"ts": "1740909600", "event_type": "a"}, (0, "ts")),
        ({"ts": "2025-03-02T10:00:00", "event_type": "a"}, (0, "ts")),  # no timezone
        ({"ts": "0001-01-01T00:00:00Z", "event_type": "a"}, (0, "ts")),  # CRM placeholder
        ({"ts": "2025-03-02T10:00:00Z", "event_type": ""}, (0, "event_type")),
        ({"ts": "2025-03-02T10:00:00Z", "event_type": 7}, (0, "event_type")),
        ({"ts": "2025-03-02T10:00:00Z"}, (0, "event_type")),
        ("email_open", (0, None)),
    ],
)
def test_unreadable_events_name_their_position_and_field(
    event: object, where: tuple[int, str | None]
) -> None:
    good = {"ts": "2025-03-02T10:00:00Z", "event_type": "a"}
    with pytest.raises(EventsUnreadable) as caught:
        read_events([good, event, good])
    position, field = where
    assert [problem[:2] for problem in caught.value.problems] == [(position + 1, field)]
    # Through the records door too, as one clear message.
    record = {"lead_id": "1", "created_at": START, "events": [good, event]}
    with pytest.raises(DataContractError, match=r"events\.1"):
        batch_from_records([record], now_ns=0)


def test_a_lead_is_never_scored_before_it_exists_or_across_centuries() -> None:
    created = pd.Timestamp("2025-03-01", tz="UTC")
    leads = pd.DataFrame({"lead_id": ["a", "b"], "created_at": [created, created]})
    spine = pd.DataFrame(
        {
            "lead_id": ["a", "b"],
            "as_of": [created + pd.Timedelta(days=3), created - pd.Timedelta(1)],
        }
    )
    with pytest.raises(DataContractError, match=r"is scored before it was created.*\(row 3\)"):
        batch_from_frames(spine, leads, None)
    old = pd.DataFrame(
        {"lead_id": ["a"], "ts": [pd.Timestamp("1750-01-01", tz="UTC")], "event_type": ["x"]}
    )
    with pytest.raises(DataContractError, match="events over 200 years"):
        batch_from_frames(spine.iloc[:1], leads, old)
    record = {"lead_id": "c", "created_at": "2030-01-01T00:00:00Z", "as_of": "2029-01-01T00:00:00Z"}
    with pytest.raises(LeadsUnscorable) as refused:
        batch_from_records([{"lead_id": "ok", "created_at": START}, record], now_ns=created.value)
    assert (refused.value.positions, refused.value.field) == ([1], "created_at")
