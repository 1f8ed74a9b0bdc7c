"""Request and response bodies of the API; they generate the OpenAPI docs, with examples."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails
from typing_extensions import TypedDict

LeadId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# What pandas timestamps can hold (1677-09-21 to 2262-04-11); CRM placeholders such as
# 0001-01-01 are refused with the field's path rather than failing later.
_EARLIEST = datetime(1678, 1, 1, tzinfo=UTC)  # both on New Year, UTC
_LATEST = datetime(2262, 1, 1, tzinfo=UTC)


_OUT_OF_RANGE = "time outside the supported range (years 1678 to 2261)"


def _in_supported_range(value: datetime) -> datetime:
    if not _EARLIEST <= value < _LATEST:
        raise ValueError(_OUT_OF_RANGE)
    return value


Time = Annotated[AwareDatetime, AfterValidator(_in_supported_range)]
AttributeValue = str | float | int | bool | None

EXAMPLE_LEAD: dict[str, Any] = {
    "lead_id": "00Q5g00000AbCdE",
    "created_at": "2025-03-01T09:30:00Z",
    "job_title": "VP of Marketing",
    "email": "jane.doe@northwind-logistics.com",
    "industry": "logistics",
    "company_size": "201-1000",
    "country": "United States",
    "lead_source": "webinar",
    "events": [
        {"ts": "2025-03-02T10:00:00Z", "event_type": "email_open"},
        {"ts": "2025-03-04T16:20:00Z", "event_type": "pricing_page_view"},
        {"ts": "2025-03-05T08:05:00Z", "event_type": "demo_request"},
    ],
}


# For a model of a snapshot export: the export's columns, as named there; no events.
EXAMPLE_SNAPSHOT_LEAD: dict[str, Any] = {
    "lead_id": "7927b2df-8bba-4d29-b9a2-b6e0beafe620",
    "Lead Origin": "Landing Page Submission",
    "Lead Source": "Google",
    "What is your current occupation": "Working Professional",
    "TotalVisits": 5,
    "Total Time Spent on Website": 1532,
    "Last Activity": "Email Opened",
}


class EventIn(TypedDict):
    """One event; a TypedDict, not a model: a batch holds tens of thousands of them. The range
    of `ts` is checked by `LeadIn`, all of a lead's events at once."""

    ts: AwareDatetime
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class LeadIn(BaseModel):
    """A lead as the app knows it: its attributes (any extra field is an attribute too) and
    its recent events. Unknown categories and missing optional fields are scored, not refused."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={"examples": [EXAMPLE_LEAD, EXAMPLE_SNAPSHOT_LEAD]},
    )

    lead_id: LeadId
    created_at: Time | None = Field(
        None,
        description="When the lead was created; needed by event models, not by models of "
        "snapshot exports (whose lead row says all).",
    )
    as_of: Time | None = Field(None, description="Score time; default now.")
    job_title: str | None = None
    email: str | None = Field(None, description="Only its domain type is used; never stored.")
    industry: str | None = None
    company_size: str | None = None
    country: str | None = None
    lead_source: str | None = None
    events: list[EventIn] = []

    @field_validator("events")
    @classmethod
    def _events_in_utc_and_range(cls, events: list[EventIn]) -> list[EventIn]:
        """Event times in UTC, checked as `Time` checks a value: one call per lead rather than
        one per event. A parsed time holds its own tzinfo object, which the garbage collector
        tracks (tens of thousands per batch) and which is slow to ask for its offset."""
        try:
            for event in events:
                event["ts"] = event["ts"].astimezone(UTC)
        except OverflowError:
            pass  # before year 1 or after 9999 in UTC: out of range, reported below
        else:
            # The bounds are New Year in UTC, so a UTC time's year is enough.
            years = [event["ts"].year for event in events]
            if not years or (min(years) >= _EARLIEST.year and max(years) < _LATEST.year):
                return events
        wrong = [
            InitErrorDetails(
                type="value_error",
                loc=(i, "ts"),
                input=event["ts"],
                ctx={"error": ValueError(_OUT_OF_RANGE)},
            )
            for i, event in enumerate(events)
            if not _EARLIEST <= event["ts"] < _LATEST
        ]
        if wrong:
            raise ValidationError.from_exception_data("events", wrong)
        return events

    @model_validator(mode="after")
    def _scored_after_creation(self) -> LeadIn:
        if self.as_of is not None and self.created_at is not None and self.as_of < self.created_at:
            raise ValueError("as_of is before created_at: a lead cannot be scored before it exists")
        return self

    def attributes(self) -> dict[str, Any]:
        """Declared and extra attributes, without events and times."""
        values = self.model_dump(exclude={"events", "as_of"})
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, str | float | int | bool) and value is not None:
                raise ValueError(f"attribute '{key}' must be text, a number, true/false or null")
        return values


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    leads: list[LeadIn] = Field(..., min_length=1)


def _body_kind(value: Any) -> str:
    # Decide by shape instead of trying both models: a batch is validated once, not twice.
    return "BatchIn" if isinstance(value, dict | BatchIn) and "leads" in value else "LeadIn"


PredictBody = Annotated[
    Annotated[LeadIn, Tag("LeadIn")] | Annotated[BatchIn, Tag("BatchIn")],
    Discriminator(_body_kind),
]


class Reason(BaseModel):
    feature: str
    phrase: str
    contribution: float = Field(description="Raw log-odds contribution; positive is for.")


class Reasons(BaseModel):
    for_: list[Reason] = Field(alias="for")
    against: list[Reason]

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class LeadScore(BaseModel):
    lead_id: str
    as_of: AwareDatetime
    probability: float = Field(
        description="Calibrated probability of converting within the horizon."
    )
    mql: bool
    tier: Literal["A", "B", "C", "D"]
    threshold: float
    rule_score: float
    rule_mql: bool
    reasons: Reasons
    model_version: str


class PredictResponse(BaseModel):
    predictions: list[LeadScore]


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lead_id: LeadId
    outcome: Literal["won", "lost"]
    closed_at: Time


class OutcomesIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    outcomes: list[OutcomeIn] = Field(..., min_length=1, max_length=10_000)


class OutcomesOut(BaseModel):
    recorded: int


class ModelInfo(BaseModel):
    name: str
    version: str
    alias: str
    loaded_at: AwareDatetime
    horizon_days: int
    threshold: float
    policy: str
    tiers: dict[str, float]
    metrics: dict[str, float]
    features: list[str]
    lead_fields: list[str]


class Health(BaseModel):
    status: str
    model_version: str | None = None
