"""A synthetic B2B marketing/sales funnel with a known ground truth.

Leads are drawn with fit attributes (industry, size, country, title, source, free-mail or company
domain) and latent intent; each lead's chance to convert, and when, follows from those latents
through a deliberately non-linear model (a points table is a fair baseline, a tree model can beat
it). Their behaviour over months is an event log: nurture emails and what follows them, web
sessions whose rate fades, webinars, downloads, forms, demo and trial requests, a burst of buying
signals before a conversion, and the noise real logs carry (security scanners that open every
email within seconds, random visits, bounced addresses, unsubscribes).

Everything is vectorised with numpy and deterministic by seed. Times are kept as float days since
`config.start` while simulating and floored to whole seconds when the frames are built.

The truth table holds, per lead, the probabilities and distribution parameters the outcome was
drawn from, so `true_conversion_probability` is the exact conversion hazard given the latents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.special import ndtr

from features.storage import write_tables_atomic
from features.vocabulary import EVENT_TYPES

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
# One time or one per lead: a Timestamp/datetime, a datetime Series/Index, or an array of times.
TimesLike = datetime | Sequence[datetime] | pd.Series | pd.Index | npt.ArrayLike

SECONDS_PER_DAY: Final = 86_400
_NS_PER_SECOND: Final = 1_000_000_000


class SimulatorConfig(BaseModel):
    """Size, period and a few realism knobs of a simulated funnel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_leads: int = Field(20_000, gt=0)
    seed: int = Field(0, ge=0)
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    # Leads are created over this many months; observation ends at start + months.
    months: int = Field(18, gt=0, le=240)
    # Horizon of the truth column p_convert_within_horizon.
    horizon_days: int = Field(90, gt=0)
    leads_per_account: float = Field(2.5, ge=1.0)
    # Added to every lead's conversion log-odds: moves the overall won rate.
    base_logit: float = -2.75
    conversion_delay_median_days: float = Field(40.0, gt=0)
    # Multiplies every engagement rate (web, downloads, webinars, forms): events per lead.
    activity_scale: float = Field(1.0, gt=0)
    # Share of company accounts whose mail gateway opens and clicks every email.
    scanner_share: float = Field(0.05, ge=0, le=1)
    invalid_email_share: float = Field(0.03, ge=0, le=1)

    @field_validator("start")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start must be timezone-aware (e.g. datetime(2024, 1, 1, tzinfo=UTC))")
        return value.astimezone(UTC)


@dataclass(frozen=True, eq=False)
class SimulatedFunnel:
    """The three tables of a simulated funnel; nothing in them is after `observed_until`.

    leads: the contract's lead columns plus email, job_title, industry, company_size, country,
    lead_source and account_id; `converted` is 1 won / 0 lost / <NA> open at observed_until.
    events: lead_id, ts, event_type (categories EVENT_TYPES), channel, campaign, url (pages,
    clicks, forms, downloads) and value (seconds on a page or in a webinar, else NaN).
    truth: per lead, what the outcome was drawn from: p_convert_ever, the lognormal conversion
    delay (delay_mu, delay_sigma, in log-days), p_close_lost with its delay (lost_delay_mu,
    lost_delay_sigma), p_convert_within_horizon (of `horizon_days` from created_at) and the
    latents fit, intent, activity, security_scanner, invalid_email.
    """

    leads: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame
    observed_until: pd.Timestamp
    horizon_days: int = 90


# --------------------------------------------------------------------------------------------
# Vocabularies. Effects are log-odds contributions to converting ever.
# --------------------------------------------------------------------------------------------

COMPANY_SIZES: Final = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+")
_SIZE_ACCOUNT_P: Final = np.array([0.30, 0.25, 0.20, 0.13, 0.07, 0.05])
# Bigger companies send more leads per account.
_SIZE_LEAD_WEIGHT: Final = np.array([1.0, 1.4, 2.0, 3.0, 4.5, 7.0])
_SIZE_FIT: Final = np.array([-1.0, -0.4, 0.1, 0.4, 0.4, 0.1])
_SIZE_FREE_MAIL_P: Final = np.array([0.45, 0.30, 0.18, 0.12, 0.08, 0.06])
# Free mail is normal for a one-person business, a bad sign from a bigger company's staff.
_FREE_MAIL_FIT_BY_SIZE: Final = np.array([0.3, -0.4, -1.8, -1.8, -1.8, -1.8])
# Enterprises sit behind mail security gateways far more often.
_SIZE_SCANNER_WEIGHT: Final = np.array([0.2, 0.4, 0.8, 1.3, 2.2, 3.0])
# Bigger deals take longer to close.
_SIZE_DELAY_SHIFT: Final = np.array([-0.3, -0.2, 0.0, 0.1, 0.2, 0.35])
_MID_OR_LARGE: Final = np.array([False, False, True, True, True, True])
_ENTERPRISE: Final = np.array([False, False, False, False, True, True])

INDUSTRIES: Final = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Education",
    "Government",
    "Logistics",
    "Media",
    "Telecommunications",
    "Professional Services",
    "Nonprofit",
)
_INDUSTRY_P: Final = np.array(
    [0.18, 0.10, 0.09, 0.11, 0.08, 0.08, 0.04, 0.06, 0.06, 0.04, 0.10, 0.06]
)
_INDUSTRY_FIT: Final = np.array([0.6, 0.5, 0.0, 0.0, -0.1, -0.7, -0.6, 0.1, -0.1, 0.3, 0.3, -0.8])
# Conversion log-odds by how many of the four profile conditions a lead meets (0-4).
_ICP_EFFECT: Final = np.array([-1.0, -1.0, -0.9, -0.1, 2.4])
_TARGET_INDUSTRY: Final = np.array(
    [True, True, False, False, False, False, False, False, False, True, True, False]
)
_TECH_BUYER_INDUSTRY: Final = np.array(
    [True, False, False, False, False, False, False, False, False, True, False, False]
)
_INDUSTRY_DOMAIN_SUFFIXES: Final = (
    ("software", "labs", "tech", "cloud", "systems"),
    ("capital", "bank", "finance", "invest", "insurance"),
    ("health", "care", "medical", "pharma", "clinic"),
    ("manufacturing", "industries", "works", "steel", "motors"),
    ("retail", "stores", "shop", "goods", "market"),
    ("academy", "learning", "school", "edu", "institute"),
    ("gov", "agency", "council", "authority", "department"),
    ("logistics", "freight", "shipping", "transport", "cargo"),
    ("media", "studios", "news", "press", "digital"),
    ("telecom", "networks", "mobile", "fiber", "connect"),
    ("consulting", "partners", "advisory", "group", "solutions"),
    ("foundation", "trust", "charity", "alliance", "society"),
)

COUNTRIES: Final = (
    "United States",
    "United Kingdom",
    "Germany",
    "Canada",
    "France",
    "Australia",
    "Netherlands",
    "India",
    "Brazil",
    "Spain",
    "Singapore",
    "Sweden",
)
_COUNTRY_P: Final = np.array(
    [0.38, 0.10, 0.08, 0.06, 0.05, 0.05, 0.04, 0.10, 0.05, 0.03, 0.03, 0.03]
)
_COUNTRY_FIT: Final = np.array([0.2, 0.2, 0.0, 0.1, -0.1, 0.1, 0.1, -0.6, -0.5, -0.2, 0.0, 0.1])
_CORE_MARKET: Final = np.array(
    [True, True, True, True, False, True, True, False, False, False, False, True]
)
_COUNTRY_TLD: Final = (
    ".com", ".co.uk", ".de", ".ca", ".fr", ".com.au", ".nl", ".in", ".com.br", ".es", ".sg", ".se"
)  # fmt: skip

LEAD_SOURCES: Final = (
    "organic_search",
    "paid_search",
    "paid_social",
    "webinar",
    "content_syndication",
    "referral",
    "partner",
    "event",
    "outbound",
    "direct",
)
_SOURCE_P: Final = np.array([0.20, 0.12, 0.10, 0.08, 0.12, 0.05, 0.05, 0.07, 0.11, 0.10])
_SOURCE_FIT: Final = np.array([0.0, 0.0, -0.5, 0.0, -0.6, 0.4, 0.3, 0.1, 0.0, 0.2])
_SOURCE_INTENT: Final = np.array([0.1, 0.3, -0.4, 0.0, -0.6, 0.4, 0.2, 0.0, -0.5, 0.5])
_SOURCE_FREE_MAIL_WEIGHT: Final = np.array([1.0, 1.0, 1.6, 1.0, 0.7, 0.8, 0.5, 0.6, 0.1, 1.1])
# Sales works outbound, event and partner leads, so those get closed (lost) more often.
_SOURCE_CLOSE_LOST_P: Final = np.array([0.60, 0.65, 0.55, 0.65, 0.55, 0.80, 0.80, 0.85, 0.90, 0.65])
_SOURCE_DELAY_SHIFT: Final = np.array([0.0, -0.05, 0.05, 0.0, 0.1, -0.2, -0.1, 0.0, 0.1, -0.1])
_SRC = {name: code for code, name in enumerate(LEAD_SOURCES)}

SENIORITIES: Final = (
    "c_level",
    "founder",
    "vp",
    "director",
    "manager",
    "senior_ic",
    "ic",
    "student",
    "consultant",
    "other",
)
_SENIORITY_P: Final = np.array([0.05, 0.04, 0.07, 0.12, 0.22, 0.16, 0.20, 0.06, 0.05, 0.03])
# Founders cluster in tiny companies, and there are few of them at enterprises.
_FOUNDER_BY_SIZE: Final = np.array([6.0, 2.0, 0.6, 0.2, 0.1, 0.05])
_SENIORITY_FIT: Final = np.array([0.5, 0.3, 0.8, 0.7, 0.3, -0.1, -0.4, -2.5, -0.8, -1.0])
# Seniority effect by company size: a chief or founder signs at a small company, while at an
# enterprise they delegate and their form fills rarely turn into a deal.
_SENIORITY_FIT_BY_SIZE: Final = np.tile(0.4 * _SENIORITY_FIT[:, None], (1, 6))
_SENIORITY_FIT_BY_SIZE[0] = [0.9, 0.9, 0.3, 0.0, -0.6, -1.0]  # c_level
_SENIORITY_FIT_BY_SIZE[1] = [0.8, 0.6, 0.0, -0.5, -1.0, -1.0]  # founder
_SENIORITY_FIT_BY_SIZE[7] = -2.5  # student
_SENIORITY_FREE_MAIL_WEIGHT: Final = np.array([0.6, 1.3, 0.6, 0.6, 0.9, 1.0, 1.1, 2.2, 1.8, 1.5])
_SEN = {name: code for code, name in enumerate(SENIORITIES)}

FUNCTIONS: Final = (
    "marketing",
    "sales",
    "it",
    "engineering",
    "operations",
    "finance",
    "hr",
    "product",
    "data",
)
_FUNCTION_P: Final = np.array([0.25, 0.15, 0.12, 0.14, 0.08, 0.06, 0.05, 0.07, 0.08])
_FUNCTION_FIT: Final = np.array([0.5, 0.4, 0.0, -0.2, 0.2, -0.3, -0.6, 0.0, 0.2])
# Managers in these functions own the budget for a marketing/revenue analytics product.
_BUYER_FUNCTION: Final = np.array([True, True, False, False, True, False, False, False, True])
_TECHNICAL_FUNCTION: Final = np.array([False, False, True, True, False, False, False, False, True])

_FUNCTION_NAMES: Final = (
    ("Marketing", "Demand Generation", "Marketing Operations", "Growth", "Digital Marketing"),
    ("Sales", "Sales Operations", "Revenue Operations", "Business Development"),
    ("IT", "Information Technology", "IT Infrastructure"),
    ("Engineering", "Software Engineering", "Platform Engineering"),
    ("Operations", "Business Operations"),
    ("Finance", "FP&A"),
    ("Human Resources", "People", "Talent Acquisition"),
    ("Product", "Product Management"),
    ("Data", "Analytics", "Data Science", "Business Intelligence"),
)
_FUNCTION_ROLES: Final = (
    ("Marketing Specialist", "Content Marketer", "Marketing Coordinator", "SEO Specialist"),
    ("Account Executive", "Sales Development Representative", "Account Manager"),
    ("Systems Administrator", "IT Specialist", "Network Engineer", "IT Support Specialist"),
    ("Software Engineer", "Software Developer", "DevOps Engineer", "Full Stack Developer"),
    ("Operations Analyst", "Operations Specialist"),
    ("Financial Analyst", "Accountant"),
    ("HR Generalist", "Recruiter", "HR Business Partner"),
    ("Product Manager", "Product Owner", "UX Designer"),
    ("Data Analyst", "Data Scientist", "Data Engineer", "BI Analyst"),
)
_CHIEF_TITLES: Final = (
    ("Chief Marketing Officer", "CMO"),
    ("Chief Revenue Officer", "CRO", "Chief Sales Officer"),
    ("Chief Information Officer", "CIO"),
    ("Chief Technology Officer", "CTO"),
    ("Chief Operating Officer", "COO"),
    ("Chief Financial Officer", "CFO"),
    ("Chief People Officer", "CHRO"),
    ("Chief Product Officer", "CPO"),
    ("Chief Data Officer", "CDO"),
)
_FOUNDER_TITLES: Final = (
    "Founder & CEO", "Founder", "Co-Founder", "CEO", "Owner", "President", "Managing Director"
)  # fmt: skip
_VP_TEMPLATES: Final = ("VP of {f}", "VP, {f}", "VP {f}", "Vice President of {f}", "SVP {f}")
_DIRECTOR_TEMPLATES: Final = (
    "Director of {f}", "Director, {f}", "{f} Director", "Head of {f}", "Senior Director, {f}"
)  # fmt: skip
_MANAGER_TEMPLATES: Final = ("{f} Manager", "Manager, {f}", "Senior {f} Manager", "{f} Team Lead")
_LEADER_TEMPLATES: Final = {
    "vp": _VP_TEMPLATES,
    "director": _DIRECTOR_TEMPLATES,
    "manager": _MANAGER_TEMPLATES,
}
_SENIOR_PREFIXES: Final = ("Senior ", "Sr. ", "Lead ")
_STUDENT_TITLES: Final = (
    "Student", "Intern", "{f} Intern", "MBA Student", "PhD Student", "Graduate Student"
)  # fmt: skip
_CONSULTANT_TITLES: Final = (
    "Consultant", "Freelance Consultant", "Independent Consultant", "{f} Consultant", "Freelancer"
)  # fmt: skip
_OTHER_TITLES: Final = ("Other", "Retired", "Teacher", "Professor", "Researcher", "Self-employed")
# As typed, all lower case, all upper case.
_TITLE_CASE_P: Final = np.array([0.86, 0.10, 0.04])

_FIRST_NAMES: Final = (
    "jane", "john", "maria", "james", "li", "wei", "ahmed", "fatima", "carlos", "sofia", "david",
    "emma", "lukas", "anna", "priya", "raj", "yuki", "kenji", "olga", "ivan", "chloe", "lucas",
    "mia", "noah", "olivia", "liam", "ava", "ethan", "isabella", "mason", "amelia", "arjun",
    "sara", "omar", "lea", "felix", "nina", "paul", "laura", "marco", "giulia", "pedro", "ana",
    "thomas", "julia", "daniel", "hannah", "michael", "sarah", "kevin",
)  # fmt: skip
_LAST_NAMES: Final = (
    "doe", "smith", "johnson", "garcia", "chen", "wang", "khan", "patel", "mueller", "schmidt",
    "rossi", "silva", "santos", "kim", "lee", "nguyen", "brown", "jones", "miller", "davis",
    "martin", "bernard", "dubois", "tanaka", "sato", "ivanov", "kowalski", "nowak", "jensen",
    "larsen", "andersson", "johansson", "fischer", "weber", "meyer", "wagner", "becker",
    "lopez", "gonzalez", "hernandez", "moore", "taylor", "anderson", "thomas", "jackson", "white",
    "harris", "clark", "lewis", "walker", "hall", "young", "allen", "wright", "scott", "green",
    "baker", "adams", "nelson", "carter",
)  # fmt: skip
# Local-part formats: (first piece, separator, second piece, digit suffix?), where a piece is
# "first" (name), "initial" (of the first name), "last" (name) or "" (nothing).
_EMAIL_FORMATS: Final = (
    ("first", ".", "last", False),
    ("initial", "", "last", False),
    ("first", "", "last", False),
    ("first", "_", "last", False),
    ("first", "", "", False),
    ("last", ".", "first", False),
    ("first", ".", "last", True),
    ("first", "", "", True),
)
_EMAIL_FORMAT_P_COMPANY: Final = np.array([0.45, 0.22, 0.10, 0.05, 0.08, 0.06, 0.03, 0.01])
_EMAIL_FORMAT_P_FREE: Final = np.array([0.20, 0.08, 0.12, 0.08, 0.04, 0.03, 0.30, 0.15])
# A subset of features.config.FREE_MAIL_DOMAINS, weighted roughly by market share.
_FREE_MAIL: Final = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com",
                     "aol.com", "gmx.de", "web.de", "protonmail.com", "live.com")  # fmt: skip
_FREE_MAIL_P: Final = np.array([0.50, 0.13, 0.10, 0.10, 0.05, 0.03, 0.03, 0.02, 0.02, 0.02])
_DOMAIN_WORDS_A: Final = (
    "north", "blue", "bright", "summit", "river", "silver", "green", "iron", "red", "clear",
    "true", "star", "oak", "pine", "cedar", "stone", "golden", "swift", "prime", "nova",
    "apex", "vertex", "terra", "atlas", "zen", "orbit", "polar", "delta", "harbor", "maple",
)  # fmt: skip
_DOMAIN_WORDS_B: Final = (
    "wind", "peak", "field", "bridge", "point", "wave", "gate", "line", "path", "rock",
    "light", "crest", "view", "forge", "works", "dale", "ridge", "bay", "spring", "stack",
)  # fmt: skip

CHANNELS: Final = ("email", "web", "event", "sales")
_CH = {name: code for code, name in enumerate(CHANNELS)}
CAMPAIGNS: Final = (
    "welcome_series",
    "product_nurture",
    "monthly_newsletter",
    "webinar_invite",
    "case_study_promo",
    "product_update",
    "live_webinar",
    "trade_show",
)
_CMP = {name: code for code, name in enumerate(CAMPAIGNS)}
_NEWSLETTER_CAMPAIGNS: Final = np.array(
    [
        _CMP[c]
        for c in ("monthly_newsletter", "webinar_invite", "case_study_promo", "product_update")
    ]
)
URLS: Final = (
    "/",
    "/pricing",
    "/pricing/enterprise",
    "/docs/getting-started",
    "/docs/api",
    "/docs/integrations",
    "/docs/security",
    "/blog/lead-scoring-101",
    "/blog/attribution-models",
    "/blog/marketing-ops-checklist",
    "/product/overview",
    "/product/features",
    "/product/integrations",
    "/product/whats-new",
    "/customers/case-studies",
    "/resources/ebook-predictive-scoring",
    "/resources/benchmark-report",
    "/resources/roi-calculator",
    "/webinars",
    "/contact",
    "/demo",
    "/trial",
    "/about",
    "/careers",
)
_URL = {name: code for code, name in enumerate(URLS)}
_PAGE_URLS: Final = np.array(
    [_URL[u] for u in ("/", "/blog/lead-scoring-101", "/blog/attribution-models",
                       "/blog/marketing-ops-checklist", "/product/overview", "/product/features",
                       "/product/integrations", "/customers/case-studies", "/about", "/careers")]
)  # fmt: skip
_PAGE_URL_P: Final = np.array([0.18, 0.12, 0.10, 0.08, 0.15, 0.12, 0.08, 0.09, 0.05, 0.03])
# Job seekers and students read the blog and the careers page.
_PAGE_URL_P_JOB_SEEKER: Final = np.array(
    [0.12, 0.15, 0.12, 0.10, 0.06, 0.04, 0.02, 0.03, 0.08, 0.28]
)
_DOCS_URLS: Final = np.array(
    [
        _URL[u]
        for u in ("/docs/getting-started", "/docs/api", "/docs/integrations", "/docs/security")
    ]
)
_RESOURCE_URLS: Final = np.array(
    [_URL[u] for u in ("/resources/ebook-predictive-scoring", "/resources/benchmark-report",
                       "/resources/roi-calculator")]
)  # fmt: skip
# Where each campaign's email links to (indexed by campaign code).
_CAMPAIGN_LANDING_URL: Final = np.array(
    [_URL[u] for u in ("/product/overview", "/product/features", "/blog/lead-scoring-101",
                       "/webinars", "/customers/case-studies", "/product/whats-new", "/webinars",
                       "/")]
)  # fmt: skip

_KIND = {name: code for code, name in enumerate(EVENT_TYPES)}
# Email-side events may follow a lost lead after it is closed (nurture keeps mailing it).
_EMAIL_KINDS: Final = np.isin(
    np.arange(len(EVENT_TYPES)),
    [_KIND[k] for k in ("email_sent", "email_open", "email_click", "email_bounce", "unsubscribe")],
)
# Page event kinds and the median seconds spent on each: page view, pricing, docs.
_PAGE_KINDS: Final = np.array(
    [_KIND["page_view"], _KIND["pricing_page_view"], _KIND["docs_page_view"]], dtype=np.int8
)
_PAGE_MEDIAN_SECONDS: Final = np.array([35.0, 70.0, 110.0])


# --------------------------------------------------------------------------------------------
# Small array helpers
# --------------------------------------------------------------------------------------------


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def _group_arange(counts: IntArray) -> IntArray:
    """0..count-1 for each group, concatenated: the position of each repeated row in its group."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def _draw_by_row(rng: np.random.Generator, probs: FloatArray, rows: IntArray) -> IntArray:
    """One categorical draw per element, from the probability row `probs[rows[i]]`."""
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(rows.size)
    out = np.empty(rows.size, dtype=np.int64)
    for row in range(probs.shape[0]):  # a loop over a handful of rows, not over leads
        mask = rows == row
        out[mask] = np.searchsorted(cdf[row], u[mask], side="right")
    return np.minimum(out, np.int64(probs.shape[1] - 1))


def _take_strings(vocabulary: Sequence[str], codes: IntArray) -> pa.Array:
    return pc.take(pa.array(vocabulary, type=pa.string()), pa.array(codes))


def _join_strings(*pieces: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*pieces, "")


def _decaying_process(
    rng: np.random.Generator,
    begin: FloatArray,
    end: FloatArray,
    amplitude: FloatArray,
    tau: FloatArray,
    baseline: FloatArray | float = 0.0,
) -> tuple[IntArray, FloatArray]:
    """Times of a Poisson process with rate amplitude·exp(-(t - begin)/tau) + baseline on [begin,
    end], per lead: interest that fades, plus a constant trickle. Returns (lead index, time)."""
    span = np.clip(end - begin, 0.0, None)
    fade_share = -np.expm1(-span / tau)  # share of the fading mass that falls inside the span
    n_fade = rng.poisson(amplitude * tau * fade_share)
    n_base = rng.poisson(np.broadcast_to(baseline, span.shape) * span)
    leads = np.arange(begin.size, dtype=np.int64)
    i_fade = np.repeat(leads, n_fade)
    # Inverse CDF of the truncated exponential.
    t_fade = begin[i_fade] - tau[i_fade] * np.log1p(-rng.random(i_fade.size) * fade_share[i_fade])
    i_base = np.repeat(leads, n_base)
    t_base = begin[i_base] + rng.random(i_base.size) * span[i_base]
    lead = np.concatenate([i_fade, i_base])
    return lead, np.minimum(np.concatenate([t_fade, t_base]), end[lead])


# --------------------------------------------------------------------------------------------
# Calendar: the period and the company-wide dates (newsletters, webinars, trade shows)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Calendar:
    start: pd.Timestamp
    end: pd.Timestamp
    period_days: float
    newsletters: FloatArray  # send days, every 4 weeks
    webinars: FloatArray  # live webinar days, every 3 weeks (some after the period)
    trade_shows: FloatArray


def _calendar(config: SimulatorConfig) -> _Calendar:
    start = pd.Timestamp(config.start)
    end = start + pd.DateOffset(months=config.months)
    period = (end - start) / pd.Timedelta(days=1)
    weekday = start.day_of_week
    first_tuesday = (1 - weekday) % 7 + 9 / 24  # 09:00 UTC
    first_thursday = (3 - weekday) % 7 + 16 / 24  # 16:00 UTC
    return _Calendar(
        start=start,
        end=end,
        period_days=period,
        newsletters=np.arange(first_tuesday, period, 28.0),
        # Registrations near the end of the period are for webinars after it.
        webinars=np.arange(first_thursday, period + 60.0, 21.0),
        trade_shows=np.arange(35.0 + (3 - weekday) % 7, period, 61.0),
    )


# --------------------------------------------------------------------------------------------
# Fit attributes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Accounts:
    size: IntArray
    industry: IntArray
    country: IntArray
    scanner: BoolArray
    intent: FloatArray  # account-level buying initiative shared by its leads
    account_id: IntArray
    domain: pa.Array


@dataclass(frozen=True)
class _Leads:
    created: FloatArray  # days since start, ascending
    source: IntArray
    account: IntArray  # index into _Accounts
    size: IntArray
    industry: IntArray
    country: IntArray
    seniority: IntArray
    function: IntArray
    free_mail: BoolArray
    invalid_email: BoolArray
    scanner: BoolArray
    job_title: pa.Array
    email: pa.Array


def _draw_accounts(rng: np.random.Generator, config: SimulatorConfig) -> _Accounts:
    n = max(1, round(config.n_leads / config.leads_per_account))
    size = rng.choice(len(COMPANY_SIZES), size=n, p=_SIZE_ACCOUNT_P)
    industry = rng.choice(len(INDUSTRIES), size=n, p=_INDUSTRY_P)
    country = rng.choice(len(COUNTRIES), size=n, p=_COUNTRY_P)
    scanner = rng.random(n) < np.clip(config.scanner_share * _SIZE_SCANNER_WEIGHT[size], 0, 1)
    return _Accounts(
        size=size,
        industry=industry,
        country=country,
        scanner=scanner,
        intent=rng.standard_normal(n),
        account_id=rng.permutation(n).astype(np.int64) + 1,
        domain=_company_domains(rng, industry, country),
    )


def _company_domains(rng: np.random.Generator, industry: IntArray, country: IntArray) -> pa.Array:
    """Domains such as "north-logistics.com", "bluepeak.de" or "starforge-labs.co.uk"."""
    n = industry.size
    n_suffix = len(_INDUSTRY_DOMAIN_SUFFIXES[0])
    suffixes = [s for group in _INDUSTRY_DOMAIN_SUFFIXES for s in group]
    word_a = _take_strings(_DOMAIN_WORDS_A, rng.integers(0, len(_DOMAIN_WORDS_A), n))
    word_b = _take_strings(_DOMAIN_WORDS_B, rng.integers(0, len(_DOMAIN_WORDS_B), n))
    suffix = _take_strings(suffixes, industry * n_suffix + rng.integers(0, n_suffix, n))
    # Forms: a-suffix, ab, ab-suffix, a-b.
    form = rng.choice(4, size=n, p=[0.35, 0.30, 0.25, 0.10])
    middle = pc.if_else(pa.array(form == 0), "", word_b)
    middle = pc.if_else(pa.array(form == 3), _join_strings("-", word_b), middle)
    tail = pc.if_else(pa.array(np.isin(form, [0, 2])), _join_strings("-", suffix), "")
    local_tld = rng.random(n) < 0.5  # half use their country's TLD, the rest .com
    tld = _take_strings(_COUNTRY_TLD, np.where(local_tld, country, 0))
    return _join_strings(word_a, middle, tail, tld)


def _draw_creation_times(
    rng: np.random.Generator, source: IntArray, calendar: _Calendar
) -> FloatArray:
    """Creation days: growing volume, quiet weekends, business hours; event leads at trade shows."""
    n_days = int(np.ceil(calendar.period_days))
    days = np.arange(n_days)
    weekend = (calendar.start.day_of_week + days) % 7 >= 5
    weight = (1.0 + 0.5 * days / n_days) * np.where(weekend, 0.35, 1.0)
    day = rng.choice(n_days, size=source.size, p=weight / weight.sum()).astype(np.float64)
    at_show = source == _SRC["event"]
    if calendar.trade_shows.size:
        shows = rng.choice(calendar.trade_shows, size=int(at_show.sum()))
        # Badge scans are uploaded over the show and the days after.
        day[at_show] = np.floor(shows + rng.uniform(0, 4, shows.size))
    hour = np.mod(rng.normal(14.5, 3.5, source.size), 24.0)
    return np.minimum(day + hour / 24.0, calendar.period_days - 1.0 / SECONDS_PER_DAY)


def _draw_leads(
    rng: np.random.Generator, config: SimulatorConfig, accounts: _Accounts, calendar: _Calendar
) -> _Leads:
    n = config.n_leads
    source = rng.choice(len(LEAD_SOURCES), size=n, p=_SOURCE_P)
    created = _draw_creation_times(rng, source, calendar)
    order = np.argsort(created, kind="stable")  # lead ids follow creation, as in a CRM
    created, source = created[order], source[order]

    # Outbound prospecting aims at bigger accounts.
    weight = _SIZE_LEAD_WEIGHT[accounts.size] * rng.lognormal(0.0, 0.8, accounts.size.size)
    outbound_weight = weight * np.where(accounts.size >= 3, 3.0, 0.3)
    account = np.empty(n, dtype=np.int64)
    is_outbound = source == _SRC["outbound"]
    for mask, w in ((is_outbound, outbound_weight), (~is_outbound, weight)):
        account[mask] = rng.choice(w.size, size=int(mask.sum()), p=w / w.sum())
    size, industry = accounts.size[account], accounts.industry[account]

    seniority_p = np.tile(_SENIORITY_P, (len(COMPANY_SIZES), 1))
    seniority_p[:, _SEN["founder"]] *= _FOUNDER_BY_SIZE
    seniority = _draw_by_row(rng, seniority_p, size)
    function = rng.choice(len(FUNCTIONS), size=n, p=_FUNCTION_P)

    free_p = (
        _SIZE_FREE_MAIL_P[size]
        * _SOURCE_FREE_MAIL_WEIGHT[source]
        * _SENIORITY_FREE_MAIL_WEIGHT[seniority]
    )
    free_mail = rng.random(n) < np.clip(free_p, 0.0, 0.95)
    invalid_p = config.invalid_email_share * np.where(free_mail, 1.5, 0.8)
    # Bought lists and badge scans carry more dead addresses.
    scanned = np.isin(source, [_SRC["content_syndication"], _SRC["event"]])
    invalid_p = invalid_p * np.where(scanned, 2.0, 1.0)
    invalid_email = rng.random(n) < np.clip(invalid_p, 0.0, 1.0)
    return _Leads(
        created=created,
        source=source,
        account=account,
        size=size,
        industry=industry,
        country=accounts.country[account],
        seniority=seniority,
        function=function,
        free_mail=free_mail,
        invalid_email=invalid_email,
        # A gateway scans company mail only, and never sees mail that bounced.
        scanner=accounts.scanner[account] & ~free_mail & ~invalid_email,
        job_title=_job_titles(rng, seniority, function),
        email=_emails(rng, free_mail, accounts.domain, account),
    )


def _title_vocabulary() -> tuple[list[str], IntArray, IntArray]:
    """All titles, and for each (seniority, function) cell the offset and count of its titles."""
    titles: list[str] = []
    offsets = np.zeros((len(SENIORITIES), len(FUNCTIONS)), dtype=np.int64)
    counts = np.zeros_like(offsets)
    for s, seniority in enumerate(SENIORITIES):
        for f in range(len(FUNCTIONS)):
            names = _FUNCTION_NAMES[f]
            cell: list[str]
            if seniority == "c_level":
                cell = list(_CHIEF_TITLES[f])
            elif seniority == "founder":
                cell = list(_FOUNDER_TITLES)
            elif seniority in ("vp", "director", "manager"):
                templates = _LEADER_TEMPLATES[seniority]
                cell = [t.format(f=name) for t in templates for name in names]
            elif seniority == "senior_ic":
                cell = [p + role for p in _SENIOR_PREFIXES for role in _FUNCTION_ROLES[f]]
            elif seniority == "ic":
                cell = list(_FUNCTION_ROLES[f])
            elif seniority == "student":
                cell = [t.format(f=names[0]) for t in _STUDENT_TITLES]
            elif seniority == "consultant":
                cell = [t.format(f=names[0]) for t in _CONSULTANT_TITLES]
            else:
                cell = list(_OTHER_TITLES)
            offsets[s, f], counts[s, f] = len(titles), len(cell)
            titles.extend(cell)
    return titles, offsets, counts


def _job_titles(rng: np.random.Generator, seniority: IntArray, function: IntArray) -> pa.Array:
    titles, offsets, counts = _title_vocabulary()
    cell_count = counts[seniority, function]
    code = offsets[seniority, function] + (rng.random(seniority.size) * cell_count).astype(np.int64)
    variants = [titles, [t.lower() for t in titles], [t.upper() for t in titles]]
    case = rng.choice(len(variants), size=seniority.size, p=_TITLE_CASE_P)
    return _take_strings([t for v in variants for t in v], case * len(titles) + code)


def _emails(
    rng: np.random.Generator, free_mail: BoolArray, domains: pa.Array, account: IntArray
) -> pa.Array:
    """Addresses like "jane.doe@northwind-logistics.com" or "jdoe84@gmail.com"."""
    n = free_mail.size
    n_first = len(_FIRST_NAMES)
    # One vocabulary for both name pieces: first names, their initials, last names, "".
    names = [*_FIRST_NAMES, *(f[0] for f in _FIRST_NAMES), *_LAST_NAMES, ""]
    first = rng.integers(0, n_first, n)
    last = rng.integers(0, len(_LAST_NAMES), n)
    fmt = np.where(
        free_mail,
        rng.choice(len(_EMAIL_FORMATS), size=n, p=_EMAIL_FORMAT_P_FREE),
        rng.choice(len(_EMAIL_FORMATS), size=n, p=_EMAIL_FORMAT_P_COMPANY),
    )

    def piece(position: int) -> pa.Array:
        kind = np.array([f[position] for f in _EMAIL_FORMATS])[fmt]
        code = np.select(
            [kind == "first", kind == "initial", kind == "last"],
            [first, n_first + first, 2 * n_first + last],
            default=len(names) - 1,
        )
        return _take_strings(names, code)

    separators = [".", "_", ""]
    sep = np.array([separators.index(str(f[1])) for f in _EMAIL_FORMATS])[fmt]
    with_digits = np.array([bool(f[3]) for f in _EMAIL_FORMATS])[fmt]
    digits = np.where(with_digits, rng.integers(1, 100, n), 0)  # 0 stands for no digits
    digit_strings = ["", *(str(k) for k in range(1, 100))]

    free_domain = _take_strings(_FREE_MAIL, rng.choice(len(_FREE_MAIL), size=n, p=_FREE_MAIL_P))
    domain = pc.if_else(pa.array(free_mail), free_domain, pc.take(domains, pa.array(account)))
    return _join_strings(
        piece(0),
        _take_strings(separators, sep),
        piece(2),
        _take_strings(digit_strings, digits),
        "@",
        domain,
    )


# --------------------------------------------------------------------------------------------
# Latents and the conversion model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Latents:
    fit: FloatArray  # log-odds from who the lead is (attributes and their interactions)
    intent: FloatArray  # how much the lead's company wants to buy now
    activity: FloatArray  # how much the lead engages, buyer or not
    technical: BoolArray
    job_seeker: BoolArray
    p_convert_ever: FloatArray
    delay_mu: FloatArray  # conversion delay ~ lognormal(mu, sigma), in days
    delay_sigma: FloatArray
    p_close_lost: FloatArray  # chance a non-converter is eventually closed as lost
    lost_delay_mu: FloatArray
    lost_delay_sigma: FloatArray


def _draw_latents(
    rng: np.random.Generator, config: SimulatorConfig, leads: _Leads, accounts: _Accounts
) -> _Latents:
    n = leads.created.size
    sen = leads.seniority
    student = sen == _SEN["student"]
    unqualified = student | (sen == _SEN["consultant"]) | (sen == _SEN["other"])
    decider = np.isin(sen, [_SEN["c_level"], _SEN["vp"], _SEN["director"]])
    technical = _TECHNICAL_FUNCTION[leads.function]
    tiny = leads.size == 0

    intent = (
        0.55 * accounts.intent[leads.account]
        + 0.835 * rng.standard_normal(n)
        + _SOURCE_INTENT[leads.source]
    )
    # Students, consultants and free-mail users engage a lot and buy little: engagement alone
    # misleads a points table.
    # Behaviour shows intent, though not perfectly: what a lead does is most of what can be
    # known about its buying project.
    activity = (
        0.8 * intent
        + 0.6 * rng.standard_normal(n)
        + 0.9 * student
        + 0.4 * (sen == _SEN["consultant"])
        + 0.25 * leads.free_mail
    )
    job_seeker = student | ((sen == _SEN["ic"]) & (rng.random(n) < 0.15))

    # Ideal customer profile: target industry, a company big enough, someone who buys, a market
    # we sell in. The conditions compound (all four are worth far more than the sum of each).
    buyer_role = decider | ((sen == _SEN["manager"]) & _BUYER_FUNCTION[leads.function])
    icp_hits = (
        _TARGET_INDUSTRY[leads.industry].astype(np.int64)
        + _MID_OR_LARGE[leads.size]
        + buyer_role
        + _CORE_MARKET[leads.country]
    )
    outbound = leads.source == _SRC["outbound"]
    paid = np.isin(leads.source, [_SRC["paid_search"], _SRC["paid_social"]])
    core_market = _CORE_MARKET[leads.country]
    fit = (
        _ICP_EFFECT[icp_hits]
        # Mild main effects; most of the signal is in how attributes combine.
        + 0.3
        * (
            _INDUSTRY_FIT[leads.industry]
            + _SIZE_FIT[leads.size]
            + _COUNTRY_FIT[leads.country]
            + _FUNCTION_FIT[leads.function]
        )
        + _SENIORITY_FIT_BY_SIZE[sen, leads.size]
        + _SOURCE_FIT[leads.source]
        + _FREE_MAIL_FIT_BY_SIZE[leads.size] * leads.free_mail
        # Outbound works on enterprises and wastes time on small companies.
        + np.where(_ENTERPRISE[leads.size], 1.2, -0.8) * outbound
        # Paid clicks from outside the core markets are cheap and rarely buy.
        + np.where(core_market, 0.3, -1.0) * paid
        # Engineers evaluate tools in software companies; elsewhere they only read.
        + np.where(_TECH_BUYER_INDUSTRY[leads.industry], 0.6, -0.6) * technical
    )
    # Intent matters as a threshold (a buying project exists or not), and only for people who
    # can buy: students, free-mail users, tiny companies and poor fits convert interest rarely.
    intent_effect = 2.4 * _sigmoid(2.0 * (intent - 0.7)) - 0.6
    gate = np.where(unqualified, 0.2, 1.0) * np.where(leads.free_mail, 0.5, 1.0)
    gate = gate * np.where(tiny, 0.5, 1.0) * np.where(icp_hits <= 1, 0.5, 1.0)
    # No extra per-lead noise here: the truth is what the outcome is drawn from, and noise that
    # no data reveals would make it an oracle no model could approach. The Bernoulli draw of
    # the outcome is the irreducible randomness.
    logit = config.base_logit + fit + gate * intent_effect

    delay_mu = (
        np.log(config.conversion_delay_median_days)
        - 0.25 * np.clip(intent, -2.0, 2.0)
        + _SIZE_DELAY_SHIFT[leads.size]
        + _SOURCE_DELAY_SHIFT[leads.source]
    )
    return _Latents(
        fit=fit,
        intent=intent,
        activity=activity,
        technical=technical,
        job_seeker=job_seeker,
        p_convert_ever=_sigmoid(logit),
        delay_mu=delay_mu,
        delay_sigma=np.full(n, 0.7),
        p_close_lost=_SOURCE_CLOSE_LOST_P[leads.source],
        lost_delay_mu=np.log(45.0) + 0.3 * (leads.size >= 4) - 0.1 * np.clip(intent, -2.0, 2.0),
        lost_delay_sigma=np.full(n, 0.9),
    )


# --------------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcomes:
    will_convert: BoolArray  # the Bernoulli draw, whether or not it happens within the period
    convert_at: FloatArray  # created + conversion delay (may be after the period)
    won: BoolArray
    lost: BoolArray
    closed_at: FloatArray  # NaN while open
    mail_end: FloatArray  # last moment emails may be sent or opened
    engagement_end: FloatArray  # last moment the lead itself does anything


def _draw_outcomes(
    rng: np.random.Generator, leads: _Leads, latents: _Latents, period_days: float
) -> _Outcomes:
    n = leads.created.size
    will_convert = rng.random(n) < latents.p_convert_ever
    convert_at = leads.created + np.exp(
        latents.delay_mu + latents.delay_sigma * rng.standard_normal(n)
    )
    lost_at = leads.created + np.exp(
        latents.lost_delay_mu + latents.lost_delay_sigma * rng.standard_normal(n)
    )
    won = will_convert & (convert_at <= period_days)
    lost = ~will_convert & (rng.random(n) < latents.p_close_lost) & (lost_at <= period_days)
    closed_at = np.where(won, convert_at, np.where(lost, lost_at, np.nan))
    mail_end = np.where(won, convert_at, period_days)
    return _Outcomes(
        will_convert=will_convert,
        convert_at=convert_at,
        won=won,
        lost=lost,
        closed_at=closed_at,
        mail_end=mail_end,
        engagement_end=np.where(won | lost, closed_at, period_days),
    )


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Events:
    """A batch of events in columnar form; codes index EVENT_TYPES, CHANNELS, CAMPAIGNS, URLS."""

    lead: IntArray
    t: FloatArray
    kind: npt.NDArray[np.int8]
    channel: npt.NDArray[np.int8]
    campaign: npt.NDArray[np.int8]
    url: npt.NDArray[np.int16]
    value: FloatArray


def _events(
    lead: IntArray,
    t: FloatArray,
    kind: str | npt.NDArray[np.int8],
    channel: str | npt.NDArray[np.int8],
    campaign: str | IntArray | None = None,
    url: str | IntArray | None = None,
    value: FloatArray | None = None,
) -> _Events:
    n = lead.size

    def codes(x: str | npt.NDArray[np.integer] | None, table: dict[str, int]) -> IntArray:
        if x is None:
            return np.full(n, -1, dtype=np.int64)
        if isinstance(x, str):
            return np.full(n, table[x], dtype=np.int64)
        return np.asarray(x, dtype=np.int64)

    return _Events(
        lead=lead,
        t=t,
        kind=codes(kind, _KIND).astype(np.int8),
        channel=codes(channel, _CH).astype(np.int8),
        campaign=codes(campaign, _CMP).astype(np.int8),
        url=codes(url, _URL).astype(np.int16),
        value=np.full(n, np.nan) if value is None else value,
    )


def _seconds_as_days(rng: np.random.Generator, low: float, high: float, n: int) -> FloatArray:
    return rng.uniform(low, high, n) / SECONDS_PER_DAY


def _email_events(
    rng: np.random.Generator,
    leads: _Leads,
    latents: _Latents,
    outcomes: _Outcomes,
    calendar: _Calendar,
) -> list[_Events]:
    """Nurture sends and what follows them: opens, clicks, bounces, unsubscribes, scanners."""
    n = leads.created.size
    created = leads.created

    # A weekly nurture track of 3-6 mails, then the 4-weekly newsletter until the lead is sunset.
    track = rng.integers(3, 7, n)
    step = _group_arange(track)
    n_lead = np.repeat(np.arange(n, dtype=np.int64), track)
    n_t = created[n_lead] + np.where(
        step == 0, rng.uniform(0.002, 0.04, step.size), 7.0 * step + rng.normal(0, 0.15, step.size)
    )
    n_campaign = np.where(step < 2, _CMP["welcome_series"], _CMP["product_nurture"])
    first_send = step == 0

    sunset = created + rng.uniform(60.0, 300.0, n)
    lo = np.searchsorted(calendar.newsletters, created + 7.0 * track)
    hi = np.searchsorted(calendar.newsletters, np.minimum(sunset, outcomes.mail_end), "right")
    count = np.clip(hi - lo, 0, None)
    issue = np.repeat(lo, count) + _group_arange(count)
    l_lead = np.repeat(np.arange(n, dtype=np.int64), count)
    l_t = calendar.newsletters[issue] + rng.uniform(0.0, 0.02, issue.size)  # batch send spread
    l_campaign = _NEWSLETTER_CAMPAIGNS[issue % _NEWSLETTER_CAMPAIGNS.size]

    lead = np.concatenate([n_lead, l_lead])
    t = np.concatenate([n_t, l_t])
    campaign = np.concatenate([n_campaign, l_campaign])
    first_send = np.concatenate([first_send, np.zeros(issue.size, dtype=bool)])
    # A hard bounce takes the address off the list: invalid addresses get one send only.
    keep = (t <= outcomes.mail_end[lead]) & (first_send | ~leads.invalid_email[lead])
    lead, t, campaign = lead[keep], t[keep], campaign[keep]
    bounced = leads.invalid_email[lead]

    # Human opens: likelier for active leads, fading with the lead's age.
    age = t - created[lead]
    p_open = 0.02 + (0.04 + 0.45 * _sigmoid(latents.activity[lead] - 0.2)) * np.exp(-age / 150.0)
    opened = ~bounced & (rng.random(lead.size) < p_open)
    o_send = np.flatnonzero(opened)
    o_t = t[o_send] + np.exp(rng.normal(np.log(0.1), 1.4, o_send.size))  # ~2.4 h median
    o_lead = lead[o_send]
    p_click = 0.08 + 0.25 * _sigmoid(latents.intent[o_lead])
    clicked = rng.random(o_send.size) < p_click
    c_send, c_lead = o_send[clicked], o_lead[clicked]
    c_t = o_t[clicked] + np.exp(rng.normal(np.log(20.0), 1.0, c_send.size)) / SECONDS_PER_DAY
    p_unsub = 0.02 + 0.04 * (1.0 - _sigmoid(latents.intent[o_lead]))
    unsub = rng.random(o_send.size) < p_unsub
    u_lead = o_lead[unsub]
    u_t = o_t[unsub] + _seconds_as_days(rng, 5, 120, u_lead.size)

    # Only the first unsubscribe counts; no sends after it (and nothing that follows them).
    first_unsub = np.full(n, np.inf)
    np.minimum.at(first_unsub, u_lead, u_t)
    send_kept = t <= first_unsub[lead]
    o_keep = send_kept[o_send]
    c_keep = send_kept[c_send]
    u_keep = u_t == first_unsub[u_lead]

    # Security gateways open and follow every link within seconds of delivery.
    s_send = np.flatnonzero(send_kept & leads.scanner[lead])
    s_open = t[s_send] + _seconds_as_days(rng, 1, 15, s_send.size)
    s_click = s_open + _seconds_as_days(rng, 1, 10, s_send.size)

    # A click lands on the campaign's page a few seconds later.
    landing_t = c_t[c_keep] + _seconds_as_days(rng, 1, 5, int(c_keep.sum()))
    landing_value = 35.0 * rng.lognormal(0.0, 1.0, landing_t.size)
    b_send = np.flatnonzero(bounced)
    return [
        _events(lead[send_kept], t[send_kept], "email_sent", "email", campaign[send_kept]),
        _events(
            lead[b_send],
            t[b_send] + _seconds_as_days(rng, 2, 120, b_send.size),
            "email_bounce",
            "email",
            campaign[b_send],
        ),
        _events(o_lead[o_keep], o_t[o_keep], "email_open", "email", campaign[o_send[o_keep]]),
        _events(
            c_lead[c_keep],
            c_t[c_keep],
            "email_click",
            "email",
            campaign[c_send[c_keep]],
            _CAMPAIGN_LANDING_URL[campaign[c_send[c_keep]]],
        ),
        _events(
            c_lead[c_keep],
            landing_t,
            "page_view",
            "web",
            campaign[c_send[c_keep]],
            _CAMPAIGN_LANDING_URL[campaign[c_send[c_keep]]],
            landing_value,
        ),
        _events(
            u_lead[u_keep], u_t[u_keep], "unsubscribe", "email", campaign[o_send[unsub][u_keep]]
        ),
        _events(lead[s_send], s_open, "email_open", "email", campaign[s_send]),
        _events(
            lead[s_send],
            s_click,
            "email_click",
            "email",
            campaign[s_send],
            _CAMPAIGN_LANDING_URL[campaign[s_send]],
        ),
    ]


def _page_urls(
    rng: np.random.Generator,
    kind: npt.NDArray[np.int8],
    lead: IntArray,
    leads: _Leads,
    latents: _Latents,
) -> IntArray:
    """The page each page event is on, by kind and by who is reading."""
    n = kind.size
    seeker = latents.job_seeker[lead]
    general = np.where(
        seeker,
        _PAGE_URLS[rng.choice(_PAGE_URLS.size, size=n, p=_PAGE_URL_P_JOB_SEEKER)],
        _PAGE_URLS[rng.choice(_PAGE_URLS.size, size=n, p=_PAGE_URL_P)],
    )
    # Enterprises look at the enterprise plan.
    enterprise_plan = rng.random(n) < 0.15 + 0.35 * _ENTERPRISE[leads.size[lead]]
    pricing = np.where(enterprise_plan, _URL["/pricing/enterprise"], _URL["/pricing"])
    docs = _DOCS_URLS[rng.integers(0, _DOCS_URLS.size, n)]
    return np.where(
        kind == _KIND["pricing_page_view"],
        pricing,
        np.where(kind == _KIND["docs_page_view"], docs, general),
    ).astype(np.int64)


def _pages(
    rng: np.random.Generator,
    session_lead: IntArray,
    session_t: FloatArray,
    pages_per_session: IntArray,
    p_pricing: FloatArray,
    p_docs: FloatArray,
    leads: _Leads,
    latents: _Latents,
) -> _Events:
    """Expand sessions into page events one after another, `value` seconds on each page."""
    lead = np.repeat(session_lead, pages_per_session)
    u = rng.random(lead.size)
    which = np.where(u < p_pricing[lead], 1, np.where(u < p_pricing[lead] + p_docs[lead], 2, 0))
    kind = _PAGE_KINDS[which]
    seconds = _PAGE_MEDIAN_SECONDS[which] * rng.lognormal(0.0, 1.0, lead.size)
    # Each page starts when the previous one in its session ends.
    elapsed = np.cumsum(seconds) - seconds
    first = np.cumsum(pages_per_session) - pages_per_session
    elapsed = elapsed - np.repeat(elapsed[first], pages_per_session)
    t = np.repeat(session_t, pages_per_session) + elapsed / SECONDS_PER_DAY
    url = _page_urls(rng, kind, lead, leads, latents)
    return _events(lead, t, kind, "web", None, url, seconds)


def _engagement_events(
    rng: np.random.Generator,
    config: SimulatorConfig,
    leads: _Leads,
    latents: _Latents,
    outcomes: _Outcomes,
    calendar: _Calendar,
) -> list[_Events]:
    """What the lead does on its own: visits, downloads, forms, webinars, demo/trial requests."""
    n = leads.created.size
    created, end = leads.created, outcomes.engagement_end
    scale = config.activity_scale
    act, intent = latents.activity, latents.intent
    tau = rng.uniform(15.0, 75.0, n)  # how fast this lead's interest fades, in days
    out: list[_Events] = []

    # Web sessions; a constant trickle of visits too (noise: nothing to do with buying).
    s_lead, s_t = _decaying_process(
        rng, created, end, 0.07 * scale * np.exp(0.7 * act), tau, 0.004 * scale
    )
    p_pricing = 0.03 + 0.25 * _sigmoid(1.5 * (intent - 0.5))
    p_docs = 0.03 + 0.22 * latents.technical + 0.05 * _sigmoid(intent)
    pages = rng.geometric(0.45, s_lead.size)
    out.append(_pages(rng, s_lead, s_t, pages, p_pricing, p_docs, leads, latents))

    # Gated content: a form fill, then the download.
    d_lead, d_t = _decaying_process(rng, created, end, 0.012 * scale * np.exp(0.6 * act), tau)
    d_url = _RESOURCE_URLS[rng.integers(0, _RESOURCE_URLS.size, d_lead.size)]
    gated = rng.random(d_lead.size) < 0.6
    out.append(_events(d_lead, d_t, "content_download", "web", None, d_url))
    f_t = np.maximum(
        d_t[gated] - _seconds_as_days(rng, 5, 40, int(gated.sum())), created[d_lead[gated]]
    )
    out.append(_events(d_lead[gated], f_t, "form_fill", "web", None, d_url[gated]))

    # Contact forms now and then.
    f_lead, f_t = _decaying_process(
        rng, created, end, 0.003 * scale * np.exp(0.5 * act), tau, 0.0008 * scale
    )
    out.append(_events(f_lead, f_t, "form_fill", "web", None, "/contact"))

    # Demo and trial requests outside a buying burst: high intent, and students/developers who
    # want to try the product (they rarely buy).
    decider = np.isin(leads.seniority, [_SEN["c_level"], _SEN["vp"], _SEN["director"]])
    dm_lead, dm_t = _decaying_process(
        rng, created, end, 0.0012 * np.exp(0.9 * intent) * (1.0 + decider), tau
    )
    out.append(_demo_requests(dm_lead, dm_t, leads))
    tinkerer = (leads.seniority == _SEN["student"]) | (
        latents.technical & np.isin(leads.seniority, [_SEN["ic"], _SEN["senior_ic"]])
    )
    tr_lead, tr_t = _decaying_process(
        rng, created, end, 0.0008 * np.exp(0.5 * intent) + 0.004 * tinkerer, tau
    )
    out.append(_events(tr_lead, tr_t, "trial_request", "web", None, "/trial"))

    out.extend(_webinar_events(rng, config, leads, latents, outcomes, calendar, tau))
    out.extend(_creation_events(rng, leads))
    return out


def _demo_requests(lead: IntArray, t: FloatArray, leads: _Leads) -> _Events:
    # Outbound leads book their meeting through the SDR rather than the web form.
    by_sales = leads.source[lead] == _SRC["outbound"]
    channel = np.where(by_sales, _CH["sales"], _CH["web"]).astype(np.int8)
    url = np.where(by_sales, -1, _URL["/demo"])
    return _events(lead, t, "demo_request", channel, None, url)


def _webinar_events(
    rng: np.random.Generator,
    config: SimulatorConfig,
    leads: _Leads,
    latents: _Latents,
    outcomes: _Outcomes,
    calendar: _Calendar,
    tau: FloatArray,
) -> list[_Events]:
    created = leads.created
    r_lead, r_t = _decaying_process(
        rng,
        created,
        outcomes.engagement_end,
        0.005 * config.activity_scale * np.exp(0.6 * latents.activity),
        tau,
    )
    # Webinar-sourced leads were created by their registration.
    sourced = np.flatnonzero(leads.source == _SRC["webinar"])
    r_lead = np.concatenate([sourced, r_lead])
    r_t = np.concatenate([created[sourced], r_t])
    # Registration closes an hour before the live session.
    webinar = np.searchsorted(calendar.webinars, r_t + 1.0 / 24.0, "right")
    valid = webinar < calendar.webinars.size
    r_lead, r_t, webinar = r_lead[valid], r_t[valid], webinar[valid]
    # One registration per lead and webinar: keep the earliest.
    key = r_lead * calendar.webinars.size + webinar
    order = np.lexsort((r_t, key))
    first = np.ones(order.size, dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep = order[first]
    r_lead, r_t, webinar = r_lead[keep], r_t[keep], webinar[keep]

    attends = rng.random(r_lead.size) < 0.35 + 0.3 * _sigmoid(latents.intent[r_lead])
    a_lead = r_lead[attends]
    a_t = calendar.webinars[webinar[attends]] + _seconds_as_days(rng, 0, 600, a_lead.size)
    minutes = rng.uniform(10.0, 60.0, a_lead.size)
    return [
        _events(r_lead, r_t, "webinar_registered", "event", "live_webinar", "/webinars"),
        _events(a_lead, a_t, "webinar_attended", "event", "live_webinar", None, minutes * 60.0),
    ]


def _creation_events(rng: np.random.Generator, leads: _Leads) -> list[_Events]:
    """The touch that created the lead (webinar registrations are made in _webinar_events)."""
    src, created = leads.source, leads.created
    web_sources = ("organic_search", "paid_search", "paid_social", "referral", "partner", "direct")
    inbound = np.flatnonzero(np.isin(src, [_SRC[s] for s in web_sources]))
    url = np.where(
        rng.random(inbound.size) < 0.5,
        _URL["/contact"],
        _RESOURCE_URLS[rng.integers(0, _RESOURCE_URLS.size, inbound.size)],
    )
    syndicated = np.flatnonzero(src == _SRC["content_syndication"])
    badge = np.flatnonzero(src == _SRC["event"])
    return [
        _events(inbound, created[inbound], "form_fill", "web", None, url),
        _events(
            syndicated,
            created[syndicated],
            "content_download",
            "web",
            None,
            _RESOURCE_URLS[rng.integers(0, _RESOURCE_URLS.size, syndicated.size)],
        ),
        _events(badge, created[badge], "form_fill", "event", "trade_show"),
    ]


def _burst_events(
    rng: np.random.Generator, leads: _Leads, latents: _Latents, outcomes: _Outcomes
) -> list[_Events]:
    """Buying signals in the one to three weeks before a conversion: pricing, docs, demo, trial."""
    buyers = np.flatnonzero(outcomes.will_convert)
    window = rng.uniform(7.0, 21.0, buyers.size)
    convert_at = outcomes.convert_at[buyers]
    technical = latents.technical[buyers]

    def times(counts: IntArray) -> tuple[IntArray, FloatArray]:
        lead = np.repeat(buyers, counts)
        # u² puts most of the activity close to the conversion.
        t = np.repeat(convert_at, counts) - np.repeat(window, counts) * rng.random(lead.size) ** 2
        inside = t >= leads.created[lead]
        return lead[inside], t[inside]

    n = buyers.size
    sessions_lead, sessions_t = times(rng.poisson(2.0, n))
    pages = rng.geometric(0.4, sessions_lead.size)
    # Within the burst, pages are mostly pricing and docs.
    p_pricing = np.full(leads.created.size, 0.45)
    p_docs = np.where(latents.technical, 0.35, 0.15)
    out = [_pages(rng, sessions_lead, sessions_t, pages, p_pricing, p_docs, leads, latents)]
    demo_lead, demo_t = times((rng.random(n) < 0.6).astype(np.int64))
    out.append(_demo_requests(demo_lead, demo_t, leads))
    trial_lead, trial_t = times((rng.random(n) < 0.25 + 0.2 * technical).astype(np.int64))
    out.append(_events(trial_lead, trial_t, "trial_request", "web", None, "/trial"))
    form_lead, form_t = times((rng.random(n) < 0.25).astype(np.int64))
    out.append(_events(form_lead, form_t, "form_fill", "web", None, "/contact"))
    return out


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def _categorical(
    codes: npt.NDArray[np.integer], categories: Sequence[str], ordered: bool = False
) -> pd.Categorical[str]:
    """Codes to a categorical with every level present, so schemas match across seeds."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories), ordered=ordered)


def _to_seconds(days: FloatArray) -> IntArray:
    # Flooring is monotone, so "after" in float days stays "at or after" in seconds.
    return np.floor(days * SECONDS_PER_DAY).astype(np.int64)


def _timestamps(
    start: pd.Timestamp, seconds: IntArray, valid: BoolArray | None = None
) -> pd.Series:
    nanoseconds = start.as_unit("ns").value + seconds * _NS_PER_SECOND
    if valid is not None:
        nanoseconds = np.where(valid, nanoseconds, np.iinfo(np.int64).min)  # int64 min is NaT
    return pd.Series(nanoseconds.view("M8[ns]")).dt.tz_localize("UTC")


def _events_frame(
    batches: Sequence[_Events], leads: _Leads, outcomes: _Outcomes, calendar: _Calendar
) -> pd.DataFrame:
    lead = np.concatenate([b.lead for b in batches])
    seconds = _to_seconds(np.concatenate([b.t for b in batches]))
    kind = np.concatenate([b.kind for b in batches])
    # Won leads fall silent at conversion; lost leads stop acting at close but stay on the
    # mailing list; nothing is recorded after the end of the observed period.
    cap = np.where(
        _EMAIL_KINDS[kind],
        _to_seconds(outcomes.mail_end)[lead],
        _to_seconds(outcomes.engagement_end)[lead],
    )
    keep = (seconds <= cap) & (seconds >= _to_seconds(leads.created)[lead])
    order = np.flatnonzero(keep)
    order = order[np.lexsort((lead[order], seconds[order]))]

    def codes(name: str) -> npt.NDArray[np.integer]:
        return np.concatenate([getattr(b, name) for b in batches])[order]

    return pd.DataFrame(
        {
            "lead_id": lead[order] + 1,
            "ts": _timestamps(calendar.start, seconds[order]),
            "event_type": _categorical(kind[order], EVENT_TYPES),
            "channel": _categorical(codes("channel"), CHANNELS),
            "campaign": _categorical(codes("campaign"), CAMPAIGNS),
            "url": _categorical(codes("url"), URLS),
            "value": np.concatenate([b.value for b in batches])[order],
        }
    )


def _leads_frame(
    leads: _Leads, accounts: _Accounts, outcomes: _Outcomes, calendar: _Calendar
) -> pd.DataFrame:
    closed = outcomes.won | outcomes.lost
    closed_seconds = _to_seconds(np.where(closed, outcomes.closed_at, 0.0))
    converted = pd.arrays.IntegerArray(outcomes.won.astype(np.int8), mask=~closed)
    return pd.DataFrame(
        {
            "lead_id": np.arange(1, leads.created.size + 1, dtype=np.int64),
            "created_at": _timestamps(calendar.start, _to_seconds(leads.created)),
            "email": leads.email.to_pandas(),
            "job_title": leads.job_title.to_pandas(),
            "industry": _categorical(leads.industry, INDUSTRIES),
            "company_size": _categorical(leads.size, COMPANY_SIZES, ordered=True),
            "country": _categorical(leads.country, COUNTRIES),
            "lead_source": _categorical(leads.source, LEAD_SOURCES),
            "account_id": accounts.account_id[leads.account],
            "converted": converted,
            "closed_at": _timestamps(calendar.start, closed_seconds, closed),
        }
    )


def _truth_frame(
    leads_frame: pd.DataFrame, leads: _Leads, latents: _Latents, horizon_days: int
) -> pd.DataFrame:
    n = leads.created.size
    within = _conversion_within(
        latents.p_convert_ever,
        latents.delay_mu,
        latents.delay_sigma,
        np.zeros(n),
        float(horizon_days),
    )
    return pd.DataFrame(
        {
            "lead_id": leads_frame["lead_id"],
            "created_at": leads_frame["created_at"],
            "p_convert_ever": latents.p_convert_ever,
            "delay_mu": latents.delay_mu,
            "delay_sigma": latents.delay_sigma,
            "p_close_lost": latents.p_close_lost,
            "lost_delay_mu": latents.lost_delay_mu,
            "lost_delay_sigma": latents.lost_delay_sigma,
            "p_convert_within_horizon": within,
            "fit": latents.fit,
            "intent": latents.intent,
            "activity": latents.activity,
            "security_scanner": leads.scanner,
            "invalid_email": leads.invalid_email,
        }
    )


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

# The stages simulate_funnel reports through on_step, in order (e.g. for a progress bar).
SIMULATION_STEPS: Final = (
    "fit attributes",
    "latents",
    "outcomes",
    "email events",
    "engagement events",
    "buying bursts",
    "event table",
    "lead and truth tables",
)


def simulate_funnel(
    config: SimulatorConfig, on_step: Callable[[str], None] | None = None
) -> SimulatedFunnel:
    """Simulate leads, their events and the truth they were drawn from (deterministic by seed).

    `on_step` is called with each name in SIMULATION_STEPS, in order, as that stage starts.
    """

    def step(name: str) -> None:
        logger.debug("simulator: %s", name)
        if on_step is not None:
            on_step(name)

    # One independent stream per stage, so a change in one stage leaves the others' draws alone.
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(6)]
    calendar = _calendar(config)

    step("fit attributes")
    accounts = _draw_accounts(rngs[0], config)
    leads = _draw_leads(rngs[0], config, accounts, calendar)
    step("latents")
    latents = _draw_latents(rngs[1], config, leads, accounts)
    step("outcomes")
    outcomes = _draw_outcomes(rngs[2], leads, latents, calendar.period_days)
    step("email events")
    batches = _email_events(rngs[3], leads, latents, outcomes, calendar)
    step("engagement events")
    batches += _engagement_events(rngs[4], config, leads, latents, outcomes, calendar)
    step("buying bursts")
    batches += _burst_events(rngs[5], leads, latents, outcomes)
    step("event table")
    events_frame = _events_frame(batches, leads, outcomes, calendar)
    del batches
    step("lead and truth tables")
    leads_frame = _leads_frame(leads, accounts, outcomes, calendar)
    truth_frame = _truth_frame(leads_frame, leads, latents, config.horizon_days)
    logger.info(
        "simulated %d leads, %d events, %d won, %d lost, %d open",
        len(leads_frame),
        len(events_frame),
        int(outcomes.won.sum()),
        int(outcomes.lost.sum()),
        int((~outcomes.won & ~outcomes.lost).sum()),
    )
    return SimulatedFunnel(
        leads=leads_frame,
        events=events_frame,
        truth=truth_frame,
        observed_until=calendar.end,
        horizon_days=config.horizon_days,
    )


def _lognormal_cdf(days: FloatArray, mu: FloatArray, sigma: FloatArray) -> FloatArray:
    positive = days > 0
    z = (np.log(np.where(positive, days, 1.0)) - mu) / sigma
    return np.where(positive, ndtr(z), 0.0)


def _conversion_within(
    p_ever: FloatArray,
    mu: FloatArray,
    sigma: FloatArray,
    elapsed_days: FloatArray,
    horizon_days: float,
) -> FloatArray:
    """P(convert in [elapsed, elapsed + horizon) | not converted before elapsed)."""
    before = _lognormal_cdf(elapsed_days, mu, sigma)
    by_end = _lognormal_cdf(elapsed_days + horizon_days, mu, sigma)
    return p_ever * (by_end - before) / (1.0 - p_ever * before)


def true_conversion_probability(
    truth: pd.DataFrame,
    lead_ids: npt.ArrayLike,
    as_of: TimesLike,
    horizon_days: int,
    *,
    given_open: bool = False,
) -> FloatArray:
    """The true probability that each lead converts in [as_of, as_of + horizon_days), given it has
    not converted before as_of, from the latent parameters in `truth`.

    `as_of` is one time or one per lead; naive times are read as UTC. With `given_open`, also
    condition on the lead not having been closed as lost before as_of (i.e. it is still open),
    which is what a model scoring open leads estimates. NaN where as_of is missing.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    ids = np.asarray(lead_ids, dtype=np.int64).reshape(-1)
    position: IntArray = pd.Index(truth["lead_id"]).get_indexer(ids).astype(np.int64)
    if (position < 0).any():
        missing = ids[position < 0][:5].tolist()
        raise KeyError(f"lead_id not in truth: {missing}")

    as_of_ns = _utc_nanoseconds(as_of, ids.size)
    created_ns = _utc_nanoseconds(truth["created_at"], len(truth))[position]
    elapsed = (as_of_ns - created_ns) / (SECONDS_PER_DAY * _NS_PER_SECOND)

    def latent(name: str) -> FloatArray:
        values: FloatArray = truth[name].to_numpy(dtype=np.float64)
        return values[position]

    p, mu, sigma = latent("p_convert_ever"), latent("delay_mu"), latent("delay_sigma")
    if not given_open:
        result = _conversion_within(p, mu, sigma, elapsed, float(horizon_days))
    else:
        before = _lognormal_cdf(elapsed, mu, sigma)
        by_end = _lognormal_cdf(elapsed + horizon_days, mu, sigma)
        lost_before = latent("p_close_lost") * _lognormal_cdf(
            elapsed, latent("lost_delay_mu"), latent("lost_delay_sigma")
        )
        # Converters are never closed as lost; non-converters may have been.
        still_open = p * (1.0 - before) + (1.0 - p) * (1.0 - lost_before)
        result = p * (by_end - before) / still_open
    return np.where(as_of_ns == np.iinfo(np.int64).min, np.nan, result)


def _utc_nanoseconds(values: object, n: int) -> IntArray:
    """Nanoseconds since the epoch (UTC) of one time, broadcast to n, or of n times."""
    if isinstance(values, pd.Series | pd.Index):
        converted = pd.to_datetime(values, utc=True)
    else:
        converted = pd.to_datetime(values, utc=True)  # type: ignore[call-overload]
    if isinstance(converted, pd.Timestamp):
        return np.full(n, converted.as_unit("ns").value, dtype=np.int64)
    index = pd.DatetimeIndex(converted).as_unit("ns").tz_localize(None)
    nanoseconds = index.to_numpy().view(np.int64)
    if nanoseconds.size != n:
        raise ValueError(f"expected one as_of or {n}, got {nanoseconds.size}")
    return nanoseconds


def write_funnel(funnel: SimulatedFunnel, out_dir: Path) -> list[Path]:
    """Write leads.parquet, events.parquet and truth.parquet into out_dir, all or nothing.

    Same funnel, same bytes. `observed_until` and `horizon_days` travel in the files' pandas
    metadata and come back with pd.read_parquet(...).attrs.
    """
    out_dir = Path(out_dir)
    attrs: dict[Hashable, object] = {
        "observed_until": funnel.observed_until.isoformat(),
        "horizon_days": funnel.horizon_days,
    }
    tables = {"leads": funnel.leads, "events": funnel.events, "truth": funnel.truth}
    paths = write_tables_atomic(
        {out_dir / f"{name}.parquet": frame for name, frame in tables.items()}, attrs
    )
    logger.info("wrote %s", ", ".join(str(path) for path in paths))
    return paths
