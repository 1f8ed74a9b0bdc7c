"""Request and response bodies of the API; they generate the OpenAPI docs, with examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import InitErrorDetails

from features.batch import (
    EARLIEST,
    LATEST,
    MAX_EVENT_TYPE_LENGTH,
    NO_EVENTS,
    NOT_A_TIME,
    OUT_OF_RANGE,
    EventList,
    EventsUnreadable,
    read_events,
    read_time_text,
)

# No NUL: no database's text column stores one, and the answer must be recorded as given.
LeadId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]


def _iso_time(value: object) -> datetime:
    """ISO 8601 text with a timezone, in the supported range. Numbers are refused: read as Unix
    times, "0" would be 1970."""
    if isinstance(value, datetime):  # from Python callers; JSON bodies hold text
        moment = value
    elif isinstance(value, str):
        read = read_time_text(value)  # the kernel's own reading of time text
        if read is None:
            raise ValueError(NOT_A_TIME)
        moment = read
    else:
        raise ValueError(NOT_A_TIME)
    if moment.utcoffset() is None:
        raise ValueError(NOT_A_TIME)
    if not EARLIEST <= moment < LATEST:
        raise ValueError(OUT_OF_RANGE)
    return moment


# The JSON schema of a time: the supported years (EARLIEST to LATEST, in UTC) as a pattern, so
# that clients and API fuzzers see the range the API enforces.
_TIME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^(16(7[89]|[89][0-9])|1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[01])-",
}
Time = Annotated[
    AwareDatetime,
    PlainValidator(_iso_time, json_schema_input_type=str),
    WithJsonSchema(_TIME_SCHEMA),
]
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


# The JSON schema of `events`, as the docs and API fuzzers read it; `read_events` checks it.
_EVENTS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "ts": {**_TIME_SCHEMA, "description": "ISO 8601 with a timezone, years 1678 to 2261."},
            "event_type": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_EVENT_TYPE_LENGTH,
            },
        },
        "required": ["ts", "event_type"],
    },
}


# Per lead: a body of bad events would otherwise be answered with every one of them.
_PROBLEMS_SHOWN = 20


def _read_events(value: object) -> EventList:
    """The events through the kernel's own reader (`features.batch.read_events`): each problem
    answered with its path, e.g. `events.3.ts`."""
    if value is None:  # JSON null is no events, as every other path reads it
        return NO_EVENTS
    if not isinstance(value, list):
        raise ValueError('expected a list of {"ts", "event_type"} objects')
    try:
        return read_events(value)
    except EventsUnreadable as exc:
        raise ValidationError.from_exception_data(
            "events",
            [
                InitErrorDetails(
                    type="missing" if message == "Field required" else "value_error",
                    loc=tuple(part for part in (position, field) if part is not None),
                    input=value,
                    ctx={} if message == "Field required" else {"error": ValueError(message)},
                )
                for position, field, message in exc.problems[:_PROBLEMS_SHOWN]
            ],
        ) from None


def _written_events(events: EventList) -> list[dict[str, str]]:
    return [
        {"ts": pd.Timestamp(ns, tz="UTC").isoformat(), "event_type": kind}
        for ns, kind in zip(events.ts_ns, events.kinds, strict=True)
    ]


# A lead's events, read once when the body is validated and handed to the kernel as they are.
Events = Annotated[
    EventList,
    PlainValidator(_read_events, json_schema_input_type=list[dict[str, Any]]),
    PlainSerializer(_written_events),
    WithJsonSchema(_EVENTS_SCHEMA),
]


class LeadIn(BaseModel):
    """A lead as the app knows it: its attributes (any extra field is an attribute too) and
    its recent events. Unknown categories and missing optional fields are scored, not refused.
    A lead scored before it was created is refused by the kernel's own check, as on every path
    (`features.batch.unscorable_rows`), with the path of `created_at`."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={
            "examples": [EXAMPLE_LEAD, EXAMPLE_SNAPSHOT_LEAD],
            # What the route accepts as an extra attribute (it refuses objects and lists).
            "additionalProperties": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "number"},
                    {"type": "boolean"},
                    {"type": "null"},
                ]
            },
        },
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
    events: Events = Field(NO_EVENTS, json_schema_extra={"default": []})


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


# How far ahead of the service's clock a close may be stamped (clocks of CRMs drift).
CLOSE_CLOCK_SKEW = timedelta(days=1)


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lead_id: LeadId
    outcome: Literal["won", "lost"]
    closed_at: Time

    @field_validator("closed_at")
    @classmethod
    def _closed_already(cls, closed_at: datetime) -> datetime:
        """An outcome is reported once the sale has closed: a close in the future is a typo
        (a year off, a placeholder), and would be joined to predictions as if it had happened."""
        if closed_at > datetime.now(UTC) + CLOSE_CLOCK_SKEW:
            raise ValueError("is in the future: report an outcome once the sale has closed")
        return closed_at


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


class ErrorOut(BaseModel):
    detail: Any = Field(description="What was wrong: a message, or the fields and their problems.")


class Health(BaseModel):
    status: str
    model_version: str | None = None
    detail: str | None = None
