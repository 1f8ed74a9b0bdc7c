"""The words the data contract speaks: column names and the standard event types."""

from __future__ import annotations

LEAD_ID = "lead_id"
CREATED_AT = "created_at"
CONVERTED = "converted"
CLOSED_AT = "closed_at"
ACCOUNT_ID = "account_id"

TS = "ts"
EVENT_TYPE = "event_type"
EVENT_OPTIONAL_COLUMNS = ("channel", "campaign", "url", "value")

# Standard event types, in the order features are laid out. Exports with other names map onto
# these through the dataset config (`event_type_map`).
EVENT_TYPES: tuple[str, ...] = (
    "email_sent",
    "email_open",
    "email_click",
    "email_bounce",
    "unsubscribe",
    "page_view",
    "pricing_page_view",
    "docs_page_view",
    "content_download",
    "webinar_registered",
    "webinar_attended",
    "form_fill",
    "demo_request",
    "trial_request",
)

# Things we do to the lead, not things the lead does: left out of engagement totals.
OUTBOUND_EVENT_TYPES: tuple[str, ...] = ("email_sent",)
