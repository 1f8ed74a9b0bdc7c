"""Configuration objects for the data contract, feature building and training snapshots.

Plain pydantic models: they are built once by an entry point (CLI, API, notebook) and passed in.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.vocabulary import EVENT_TYPES, OUTBOUND_EVENT_TYPES

FREE_MAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.ru",
    "yandex.ru",
    "protonmail.com",
    "proton.me",
    "qq.com",
    "163.com",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LeadColumns(_Frozen):
    """Names of the contract's lead columns in the user's export."""

    # None (snapshot mode): the export has no id column; leads are numbered by row, from 1.
    lead_id: str | None = "lead_id"
    created_at: str = "created_at"
    converted: str = "converted"
    closed_at: str = "closed_at"
    account_id: str = "account_id"


class EventColumns(_Frozen):
    """Names of the contract's event columns in the user's export."""

    lead_id: str = "lead_id"
    ts: str = "ts"
    event_type: str = "event_type"


class LabelValues(_Frozen):
    """How the export spells won, lost and still open (compared case-insensitively)."""

    won: list[str] = ["1", "1.0", "won", "yes", "true", "converted"]
    lost: list[str] = ["0", "0.0", "lost", "no", "false"]
    open: list[str] = ["", "open"]


Mode = Literal["events", "snapshot"]


class DatasetConfig(_Frozen):
    """Maps a user's export onto the data contract.

    `events` mode: a leads table and an event log; behaviour is aggregated point in time.
    `snapshot` mode: one row per lead whose behaviour the export already aggregated into columns
    (visits, time on site, last activity); no event log, and the rows are split by `order_column`.
    """

    mode: Mode = "events"
    leads_path: Path | None = None
    events_path: Path | None = None
    lead_columns: LeadColumns = LeadColumns()
    event_columns: EventColumns = EventColumns()
    labels: LabelValues = LabelValues()
    # CSV separator; None: sniffed from the file's first lines (comma, semicolon, tab, pipe).
    separator: str | None = Field(None, min_length=1, max_length=1)
    # Cells read as missing (each blanked value is logged with its count).
    missing_tokens: list[str] = ["Select", "select", "unknown", "Unknown", "N/A", "n/a", ""]
    # Snapshot mode: columns read as categories even when every value is a number (codes).
    categorical_columns: list[str] = []
    exclude_columns: list[str] = []
    timezone: Annotated[
        str | None,
        Field(
            description="IANA zone for naive timestamps; naive timestamps are refused without it"
        ),
    ] = None
    event_type_map: dict[str, str] = {}
    # Snapshot mode: a date or a number that follows creation time (newest rows are the test);
    # without it the file's row order is taken as time order.
    order_column: str | None = None
    # Snapshot mode: when the export was pulled, the moment its rows describe (unless the order
    # column holds their dates). Without either, rows are taken as of the moment they are read.
    exported_at: datetime | None = None
    # Snapshot mode: the columns to learn from, as fit (who the lead is) or behaviour (what the
    # lead did). Both empty: every column not excluded, as fit. The rules and reasons speak of
    # them this way.
    fit_columns: list[str] = []
    behaviour_columns: list[str] = []
    # Where leads come from (a lead column): results are broken down by it.
    source_column: str | None = "lead_source"
    # What one lead from each source costs (e.g. ad spend / leads): the model-vs-rules report
    # then gives the cost per MQL of each list.
    cost_per_lead: dict[str, Annotated[float, Field(ge=0)]] = {}

    @field_validator("exported_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2025-06-01T00:00:00Z")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo

            ZoneInfo(value)
        return value


class FeatureConfig(_Frozen):
    """What `build_features` computes."""

    # "snapshot": the lead row is the whole story (no event log, no creation time): features are
    # its categorical and numeric columns, and `behaviour_columns` says which of them are behaviour.
    source: Mode = "events"
    behaviour_columns: list[str] = []
    event_types: list[str] = list(EVENT_TYPES)
    outbound_event_types: list[str] = list(OUTBOUND_EVENT_TYPES)
    windows_days: list[int] = [7, 30, 90]
    decay_half_life_days: float = Field(14.0, gt=0)
    categorical_columns: list[str] = ["industry", "company_size", "country", "lead_source"]
    numeric_columns: list[str] = []
    title_column: str | None = "job_title"
    email_column: str | None = "email"
    # Leads of one company share it: their engagement becomes account-level features. Off by
    # default: the features need every lead of the account in the input, which a single-lead
    # API request does not have.
    account_column: str | None = None
    free_mail_domains: list[str] = list(FREE_MAIL_DOMAINS)
    # Fixed category levels (e.g. those seen in training); learned from the data when absent.
    category_levels: dict[str, list[str]] | None = None

    @field_validator("windows_days")
    @classmethod
    def _positive_windows(cls, value: list[int]) -> list[int]:
        if not value or any(w <= 0 for w in value):
            raise ValueError("windows_days must be a non-empty list of positive day counts")
        return sorted(set(value))


class SnapshotConfig(_Frozen):
    """How training examples are taken: the way production scores leads."""

    horizon_days: int = Field(90, gt=0)
    # Snapshots at creation + k days, for every k at which the lead is still open.
    offsets_days: list[int] = [1, 7, 14, 30, 60]
    # Also a snapshot every week (Monday 00:00 UTC) while the lead is open.
    weekly: bool = False
    # End of the observed period; outcomes after it are unknown. Defaults to the data's last time.
    observed_until: datetime | None = None
    # Lost leads without a close date: when were they lost? "refuse" (say which rows), "drop"
    # (leave them out of training), or "keep_open" (count them open until the end of the data,
    # so snapshots after the unknown loss are labelled not converted too: a known bias).
    undated_lost: Literal["refuse", "drop", "keep_open"] = "refuse"

    @field_validator("offsets_days")
    @classmethod
    def _non_negative(cls, value: list[int]) -> list[int]:
        if any(k < 0 for k in value):
            raise ValueError("offsets_days must be non-negative")
        return sorted(set(value))
