"""A synthetic B2B marketing/sales funnel with a known ground truth.

Leads are drawn with fit attributes (industry, size, country, title, source, free-mail or company
domain) and latent intent. Events and outcomes come from one latent process per lead: a lead may
start a buying project (the buying stage) after a lognormal delay, with a chance and timing set
by its fit and intent through a deliberately non-linear model (a points table is a fair
baseline, a tree model can beat it); while the project is alive, buying signals (pricing and
docs pages, demo and trial requests, forms) come at raised rates, and the project converts or
dies at constant rates. Sales may close a lead as lost before a project starts or after one
dies. Conversion only happens through the stage. Around that, the event log holds nurture
emails and what follows them, web sessions whose rate fades, webinars, downloads, and the noise
real logs carry (security scanners, random visits, bounced addresses, unsubscribes); the lead
table holds the noise real CRMs have (duplicate records, blanks, inconsistent spelling, late
close dates). Drift options move the conversion rate, add a lead source or change a form.

Everything is vectorised with numpy and deterministic by seed. Times are kept as float days since
`config.start` while simulating and floored to whole seconds when the frames are built. No event
is placed using a draw from after its own time (such as the conversion time).

The truth table holds, per lead, the process parameters and the path of its latent state, so
`true_conversion_probability` is the exact probability given the state at any as_of.
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

from features.storage import write_tables_atomic
from features.vocabulary import EVENT_TYPES
from simulator.truth import (
    NS_PER_SECOND,
    SECONDS_PER_DAY,
    FloatArray,
    IntArray,
    StageParameters,
    enter_and_convert,
)
from simulator.truth import TimesLike as TimesLike
from simulator.truth import true_conversion_probability as true_conversion_probability

logger = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]


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

    # Drift, off by default. Shares are of the creation period (0 its start, 1 its end).
    # The chance to convert grows by this factor from the first to the last creation time,
    # reaching the default level at the end.
    rate_growth: float = Field(1.0, gt=0)
    # From this share on, a new lead source ("marketplace", a good fit) brings a share of leads.
    new_source_from: float | None = Field(None, ge=0, lt=1)
    new_source_share: float = Field(0.15, ge=0, le=1)
    # From this share on, the web form asks for company size in other bands and leaves it blank
    # more often. Only the record changes, not the leads.
    form_change_at: float | None = Field(None, ge=0, lt=1)

    # CRM noise: in the recorded tables only, never in the process the truth describes.
    # Share of the n_leads records that are a second record of a person who filled in a form
    # again weeks later (same email and company); sales converts the first record, so the
    # second never converts.
    duplicate_share: float = Field(0.01, ge=0, le=0.5)
    # Share of each of job_title, industry, company_size and country left blank.
    blank_share: float = Field(0.02, ge=0, le=1)
    # Share of industry and country values typed in lower case or with a trailing space.
    messy_text_share: float = Field(0.02, ge=0, le=1)
    # Share of close dates recorded one to fourteen days late (still open if that is after the
    # end of the period).
    late_close_share: float = Field(0.02, ge=0, le=1)

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
    truth: per lead record, the process it follows: the buying stage's chance p_stage and
    lognormal start (stage_mu, stage_sigma, in log-days after creation), the rates at which a
    project converts or dies (convert_rate, drop_rate, per day), the early close as lost
    (p_close_lost, lost_delay_mu, lost_delay_sigma); the path it took, in days after created_at
    (stage_days, stage_end_days, closed_days; inf for never, and past observed_until too); as
    of creation, p_convert_ever and p_convert_within_horizon (of `horizon_days`); and the
    latents fit, intent, activity, security_scanner, invalid_email. Duplicate records have
    p_stage 0. The noise of the lead table (blanks, spelling, late close dates) is not in it.
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
# Per source, then (last) the NEW_LEAD_SOURCE of the drift option.
_SOURCE_FIT: Final = np.array([0.0, 0.0, -0.5, 0.0, -0.6, 0.4, 0.3, 0.1, 0.0, 0.2, 0.8])
_SOURCE_INTENT: Final = np.array([0.1, 0.3, -0.4, 0.0, -0.6, 0.4, 0.2, 0.0, -0.5, 0.5, 0.4])
_SOURCE_FREE_MAIL_WEIGHT: Final = np.array([1.0, 1.0, 1.6, 1.0, 0.7, 0.8, 0.5, 0.6, 0.1, 1.1, 0.6])
# Sales works outbound, event and partner leads, so those get closed (lost) more often.
_SOURCE_CLOSE_LOST_P: Final = np.array(
    [0.60, 0.65, 0.55, 0.65, 0.55, 0.80, 0.80, 0.85, 0.90, 0.65, 0.60]
)
_SOURCE_DELAY_SHIFT: Final = np.array(
    [0.0, -0.05, 0.05, 0.0, 0.1, -0.2, -0.1, 0.0, 0.1, -0.1, -0.2]
)
# With `new_source_from`, leads start coming from an app marketplace listing: people who
# already use an integration, a better fit than most, who convert sooner.
NEW_LEAD_SOURCE: Final = "marketplace"
_SRC = {name: code for code, name in enumerate((*LEAD_SOURCES, NEW_LEAD_SOURCE))}

# The buying stage (see _Latents). Entry odds are e times the odds of converting, 85% at most of
# projects land, and the median delay to a conversion is split 60/40 between the time to start
# a project and its time in the stage.
_STAGE_LOGIT_SHIFT: Final = 1.0
_LANDING_SHARE: Final = 0.85
_STAGE_MEDIAN_SHARE: Final = 0.6
# After a project dies, sales closes the lead (with p_close_lost) after this many days on average.
_DROPPED_CLOSE_MEAN_DAYS: Final = 20.0

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
    rng: np.random.Generator,
    drift_rng: np.random.Generator,
    config: SimulatorConfig,
    accounts: _Accounts,
    calendar: _Calendar,
) -> _Leads:
    n = _n_people(config)
    source = rng.choice(len(LEAD_SOURCES), size=n, p=_SOURCE_P)
    created = _draw_creation_times(rng, source, calendar)
    order = np.argsort(created, kind="stable")  # lead ids follow creation, as in a CRM
    created, source = created[order], source[order]
    if config.new_source_from is not None:
        # The new source takes a share of the web-born leads after its launch (its own stream,
        # so the other draws stay as they are without it).
        launched = created >= config.new_source_from * calendar.period_days
        web_born = ~np.isin(source, [_SRC["event"], _SRC["webinar"], _SRC["outbound"]])
        taken = launched & web_born & (drift_rng.random(n) < config.new_source_share)
        source = np.where(taken, _SRC[NEW_LEAD_SOURCE], source)

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
    # The buying stage: entered with probability p_stage, after a lognormal(stage_mu,
    # stage_sigma) number of days; inside it the project converts at rate convert_rate and dies
    # at rate drop_rate (per day), whichever comes first. Before the stage, sales closes the
    # lead as lost with probability p_close_lost after a lognormal(lost_delay_mu,
    # lost_delay_sigma) number of days, unless the stage comes first. As the truth stores it.
    process: StageParameters


def _draw_latents(
    rng: np.random.Generator,
    config: SimulatorConfig,
    leads: _Leads,
    accounts: _Accounts,
    period_days: float,
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

    # A buying project starts more often than it lands: stage entry has higher odds than a
    # conversion, and good fits land a larger share of their projects (q = converted share).
    p_convert = _sigmoid(logit)
    p_stage = _sigmoid(logit + _STAGE_LOGIT_SHIFT)
    q = _LANDING_SHARE * p_convert / p_stage
    # Drift: fewer projects start early in the period, rate_growth times fewer at its start than
    # at its end. The chance to convert is linear in p_stage, so it grows by the same factor.
    p_stage = p_stage * config.rate_growth ** (leads.created / period_days - 1.0)
    # Bigger deals take longer; high intent starts the project sooner.
    size_shift = _SIZE_DELAY_SHIFT[leads.size] + _SOURCE_DELAY_SHIFT[leads.source]
    stage_mu = (
        np.log(_STAGE_MEDIAN_SHARE * config.conversion_delay_median_days)
        - 0.3 * np.clip(intent, -2.0, 2.0)
        + size_shift
    )
    median_in_stage = (1.0 - _STAGE_MEDIAN_SHARE) * config.conversion_delay_median_days
    rate = np.log(2.0) / (median_in_stage * np.exp(size_shift))
    return _Latents(
        fit=fit,
        intent=intent,
        activity=activity,
        technical=technical,
        job_seeker=job_seeker,
        process=StageParameters(
            p_stage=p_stage,
            stage_mu=stage_mu,
            stage_sigma=np.full(n, 0.8),
            convert_rate=q * rate,
            drop_rate=(1.0 - q) * rate,
            p_close_lost=_SOURCE_CLOSE_LOST_P[leads.source],
            lost_delay_mu=np.log(45.0) + 0.3 * (leads.size >= 4) - 0.1 * np.clip(intent, -2.0, 2.0),
            lost_delay_sigma=np.full(n, 0.9),
        ),
    )


# --------------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcomes:
    """One path of each lead's latent process; times in days since start, inf when never."""

    stage_at: FloatArray  # entry into the buying stage
    stage_end: FloatArray  # the project converts or dies
    won: BoolArray  # within the period
    lost: BoolArray
    closed_at: FloatArray  # won or lost, NaN while open at the end of the period
    closes_at: FloatArray  # the same on the unbounded path (inf if never closed)
    mail_end: FloatArray  # last moment emails may be sent or opened
    engagement_end: FloatArray  # last moment the lead itself does anything


def _draw_outcomes(
    rng: np.random.Generator, leads: _Leads, latents: _Latents, period_days: float
) -> _Outcomes:
    """Walk each lead's process forward: lost before a project starts, or a project that lands
    (won) or dies (then maybe closed lost later). Conversion only happens through the stage, and
    a lead has one project at most."""
    n = leads.created.size
    created = leads.created
    inf = np.full(n, np.inf)
    enters = rng.random(n) < latents.process.p_stage
    stage_delay = np.exp(
        latents.process.stage_mu + latents.process.stage_sigma * rng.standard_normal(n)
    )
    closes_early = rng.random(n) < latents.process.p_close_lost
    lost_delay = np.exp(
        latents.process.lost_delay_mu + latents.process.lost_delay_sigma * rng.standard_normal(n)
    )
    stage_at = np.where(enters, created + stage_delay, inf)
    early_lost_at = np.where(closes_early, created + lost_delay, inf)
    # A lead closed as lost never starts a project.
    stage_at = np.where(early_lost_at < stage_at, inf, stage_at)

    # Competing exponential risks: the first event comes after Exp(rate sum) and is a
    # conversion with probability convert_rate / rate sum, independently of when.
    total_rate = latents.process.convert_rate + latents.process.drop_rate
    duration = rng.exponential(1.0, n) / total_rate
    lands = rng.random(n) * total_rate < latents.process.convert_rate
    stage_end = stage_at + duration
    convert_at = np.where(lands, stage_end, inf)
    dropped_lost_at = np.where(
        ~lands & (rng.random(n) < latents.process.p_close_lost),
        stage_end + rng.exponential(_DROPPED_CLOSE_MEAN_DAYS, n),
        inf,
    )
    lost_at = np.where(np.isfinite(stage_at), dropped_lost_at, early_lost_at)
    closes_at = np.minimum(convert_at, lost_at)
    won = convert_at <= period_days
    lost = lost_at <= period_days
    closed_at = np.where(won | lost, closes_at, np.nan)
    return _Outcomes(
        stage_at=stage_at,
        stage_end=stage_end,
        won=won,
        lost=lost,
        closed_at=closed_at,
        closes_at=closes_at,
        mail_end=np.where(won, convert_at, period_days),
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
    web_sources = (
        "organic_search", "paid_search", "paid_social", "referral", "partner", "direct",
        NEW_LEAD_SOURCE,
    )  # fmt: skip
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


def _stage_events(
    rng: np.random.Generator, leads: _Leads, latents: _Latents, outcomes: _Outcomes
) -> list[_Events]:
    """Buying signals while a project is alive: pricing and docs pages, demo and trial requests,
    contact forms, at steady rates from stage entry until the project converts or dies (or the
    lead is closed). They depend on the path up to their own time only."""
    begin = outcomes.stage_at
    end = np.minimum(outcomes.stage_end, outcomes.engagement_end)
    live = np.flatnonzero(begin < end)
    begin, end = begin[live], end[live]
    technical = latents.technical[live]

    def times(rate: FloatArray | float) -> tuple[IntArray, FloatArray]:
        counts = rng.poisson(np.broadcast_to(rate, begin.shape) * (end - begin))
        index = np.repeat(np.arange(live.size), counts)
        t = begin[index] + rng.random(index.size) * (end - begin)[index]
        return live[index], t

    sessions_lead, sessions_t = times(0.15)
    pages = rng.geometric(0.4, sessions_lead.size)
    # Within the stage, pages are mostly pricing and docs.
    p_pricing = np.full(leads.created.size, 0.45)
    p_docs = np.where(latents.technical, 0.35, 0.15)
    out = [_pages(rng, sessions_lead, sessions_t, pages, p_pricing, p_docs, leads, latents)]
    demo_lead, demo_t = times(0.04)
    out.append(_demo_requests(demo_lead, demo_t, leads))
    trial_lead, trial_t = times(np.where(technical, 0.03, 0.015))
    out.append(_events(trial_lead, trial_t, "trial_request", "web", None, "/trial"))
    form_lead, form_t = times(0.015)
    out.append(_events(form_lead, form_t, "form_fill", "web", None, "/contact"))
    return out


# --------------------------------------------------------------------------------------------
# Duplicate records (CRM noise)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Records:
    """Lead records: the n leads, then duplicates; record n + j is a second record of lead
    original[j]. Times in days since start."""

    original: IntArray
    created: FloatArray  # per record
    mail_end: FloatArray
    engagement_end: FloatArray
    duplicate_lost_at: FloatArray  # per duplicate: closed as lost (a duplicate), inf if never


def _n_people(config: SimulatorConfig) -> int:
    """Leads (people); the lead table holds them and their duplicate records, n_leads rows."""
    duplicates = min(round(config.n_leads * config.duplicate_share), config.n_leads - 1)
    return config.n_leads - duplicates


def _draw_duplicates(
    rng: np.random.Generator,
    config: SimulatorConfig,
    leads: _Leads,
    outcomes: _Outcomes,
    period_days: float,
) -> tuple[_Records, list[_Events]]:
    """Second records of people who fill in a form again, weeks after their first; sales closes
    about half of them as lost a few weeks later. Their only event is that form fill."""
    n = leads.created.size
    original = np.sort(rng.choice(n, size=config.n_leads - n, replace=False))
    first = leads.created[original]
    created = first + rng.exponential(30.0, original.size)
    # Second records come in before the end of the period (the table has n_leads rows).
    late = created >= period_days
    created[late] = first[late] + rng.random(int(late.sum())) * (period_days - first[late])
    closes = rng.random(original.size) < 0.5
    lost_at = np.where(closes, created + rng.exponential(20.0, original.size), np.inf)
    end = np.where(lost_at <= period_days, lost_at, period_days)
    records = _Records(
        original=original,
        created=np.concatenate([leads.created, created]),
        mail_end=np.concatenate([outcomes.mail_end, end]),
        engagement_end=np.concatenate([outcomes.engagement_end, end]),
        duplicate_lost_at=lost_at,
    )
    form = _events(n + np.arange(original.size), created, "form_fill", "web", None, "/contact")
    return records, [form]


def _with_duplicates(
    frame: pd.DataFrame, records: _Records, columns: dict[str, float | FloatArray]
) -> pd.DataFrame:
    """`frame` (one row per lead, in lead order) with a row per duplicate appended: a copy of
    its original's row, with `columns` overridden."""
    copies = frame.iloc[records.original].reset_index(drop=True).assign(**columns)
    return pd.concat([frame, copies], ignore_index=True)


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
    nanoseconds = start.as_unit("ns").value + seconds * NS_PER_SECOND
    if valid is not None:
        nanoseconds = np.where(valid, nanoseconds, np.iinfo(np.int64).min)  # int64 min is NaT
    return pd.Series(nanoseconds.view("M8[ns]")).dt.tz_localize("UTC")


def _events_frame(
    batches: Sequence[_Events], records: _Records, calendar: _Calendar
) -> pd.DataFrame:
    lead = np.concatenate([b.lead for b in batches])
    seconds = _to_seconds(np.concatenate([b.t for b in batches]))
    kind = np.concatenate([b.kind for b in batches])
    # Won leads fall silent at conversion; lost leads stop acting at close but stay on the
    # mailing list; nothing is recorded after the end of the observed period.
    cap = np.where(
        _EMAIL_KINDS[kind],
        _to_seconds(records.mail_end)[lead],
        _to_seconds(records.engagement_end)[lead],
    )
    keep = (seconds <= cap) & (seconds >= _to_seconds(records.created)[lead])
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


# With `form_change_at`, the web form's size bands after the change, and for each old band the
# new one it falls in; the new form also leaves the field blank far more often.
NEW_FORM_COMPANY_SIZES: Final = ("1-49", "50-249", "250-999", "1000+")
_NEW_FORM_BAND: Final = np.array([0, 0, 1, 2, 3, 3])
_NEW_FORM_BLANK_P: Final = 0.3


def _recorded_company_size(
    rng: np.random.Generator,
    config: SimulatorConfig,
    size: IntArray,
    created: FloatArray,
    calendar: _Calendar,
) -> pd.Categorical[str]:
    """Company size as the form of the day recorded it, per record."""
    if config.form_change_at is None:
        return _categorical(size, COMPANY_SIZES, ordered=True)
    # Old and new bands overlap, so the column is no longer ordered.
    changed = created >= config.form_change_at * calendar.period_days
    blank = changed & (rng.random(size.size) < _NEW_FORM_BLANK_P)
    codes = np.where(changed, len(COMPANY_SIZES) + _NEW_FORM_BAND[size], size)
    return _categorical(np.where(blank, -1, codes), (*COMPANY_SIZES, *NEW_FORM_COMPANY_SIZES))


def _lead_sources(config: SimulatorConfig) -> tuple[str, ...]:
    """The source vocabulary: the new source is a level only when the option brings it."""
    return LEAD_SOURCES if config.new_source_from is None else (*LEAD_SOURCES, NEW_LEAD_SOURCE)


def _leads_frame(
    rng: np.random.Generator,
    noise_rng: np.random.Generator,
    config: SimulatorConfig,
    leads: _Leads,
    accounts: _Accounts,
    outcomes: _Outcomes,
    records: _Records,
    calendar: _Calendar,
) -> pd.DataFrame:
    # Recorded as lost, or won; per record (duplicates last), then some dates recorded late.
    n_dup = records.original.size
    won = np.concatenate([outcomes.won, np.zeros(n_dup, dtype=bool)])
    lost = np.concatenate([outcomes.lost, records.duplicate_lost_at <= calendar.period_days])
    closed_at = np.concatenate([outcomes.closed_at, records.duplicate_lost_at])
    closed = won | lost
    late = closed & (noise_rng.random(closed.size) < config.late_close_share)
    closed_at = closed_at + np.where(late, noise_rng.uniform(1.0, 14.0, closed.size), 0.0)
    closed &= closed_at <= calendar.period_days
    closed_seconds = _to_seconds(np.where(closed, closed_at, 0.0))
    frame = pd.DataFrame(
        {
            "email": leads.email.to_pandas(),
            "job_title": leads.job_title.to_pandas(),
            "industry": leads.industry,
            "company_size": leads.size,
            "country": leads.country,
            "lead_source": _categorical(leads.source, _lead_sources(config)),
            "account_id": accounts.account_id[leads.account],
        }
    )
    frame = _with_duplicates(frame, records, {})
    frame.insert(0, "lead_id", np.arange(1, len(frame) + 1, dtype=np.int64))
    frame.insert(1, "created_at", _timestamps(calendar.start, _to_seconds(records.created)))
    frame["company_size"] = _recorded_company_size(
        rng, config, frame["company_size"].to_numpy(), records.created, calendar
    )
    frame["industry"] = _messy_categorical(noise_rng, config, frame["industry"], INDUSTRIES)
    frame["country"] = _messy_categorical(noise_rng, config, frame["country"], COUNTRIES)
    for column in ("job_title", "industry", "company_size", "country"):
        blank = noise_rng.random(len(frame)) < config.blank_share
        frame[column] = frame[column].mask(blank)
    frame["converted"] = pd.arrays.IntegerArray(won.astype(np.int8), mask=~closed)
    frame["closed_at"] = _timestamps(calendar.start, closed_seconds, closed)
    return frame


def _messy_categorical(
    rng: np.random.Generator, config: SimulatorConfig, codes: pd.Series, levels: Sequence[str]
) -> pd.Categorical[str]:
    """Codes to a categorical where a share of values is typed in lower case or with a trailing
    space ("software", "Software "); every variant is a level, so schemas match across seeds."""
    if config.messy_text_share == 0:
        return _categorical(codes.to_numpy(), levels)
    variant = np.where(
        rng.random(len(codes)) < config.messy_text_share, rng.integers(1, 3, len(codes)), 0
    )
    variants = (*levels, *(v.lower() for v in levels), *(f"{v} " for v in levels))
    return _categorical(variant * len(levels) + codes.to_numpy(), variants)


def _truth_frame(
    leads_frame: pd.DataFrame,
    leads: _Leads,
    latents: _Latents,
    outcomes: _Outcomes,
    records: _Records,
    horizon_days: int,
) -> pd.DataFrame:
    n = leads.created.size
    stage = latents.process
    zero = np.zeros(n)
    # Days since the lead's created_at as recorded (whole seconds), so the path and as_of agree.
    created = _to_seconds(leads.created) / SECONDS_PER_DAY
    frame = pd.DataFrame(
        {
            "p_convert_ever": enter_and_convert(stage, zero, np.full(n, np.inf)),
            "p_convert_within_horizon": enter_and_convert(stage, zero, zero + horizon_days),
            **{name: getattr(stage, name) for name in StageParameters.__dataclass_fields__},
            "stage_days": outcomes.stage_at - created,
            "stage_end_days": outcomes.stage_end - created,
            "closed_days": outcomes.closes_at - created,
            "fit": latents.fit,
            "intent": latents.intent,
            "activity": latents.activity,
            "security_scanner": leads.scanner,
            "invalid_email": leads.invalid_email,
        }
    )
    # A duplicate record never converts: no buying stage, only its closing as a duplicate.
    dup_created = _to_seconds(records.created[n:]) / SECONDS_PER_DAY
    frame = _with_duplicates(
        frame,
        records,
        {
            "p_convert_ever": 0.0,
            "p_convert_within_horizon": 0.0,
            "p_stage": 0.0,
            "stage_days": np.inf,
            "stage_end_days": np.inf,
            "closed_days": records.duplicate_lost_at - dup_created,
        },
    )
    frame.insert(0, "lead_id", leads_frame["lead_id"])
    frame.insert(1, "created_at", leads_frame["created_at"])
    return frame


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
    "buying stages",
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
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(10)]
    calendar = _calendar(config)

    step("fit attributes")
    accounts = _draw_accounts(rngs[0], config)
    leads = _draw_leads(rngs[0], rngs[6], config, accounts, calendar)
    step("latents")
    latents = _draw_latents(rngs[1], config, leads, accounts, calendar.period_days)
    step("outcomes")
    outcomes = _draw_outcomes(rngs[2], leads, latents, calendar.period_days)
    step("email events")
    batches = _email_events(rngs[3], leads, latents, outcomes, calendar)
    step("engagement events")
    batches += _engagement_events(rngs[4], config, leads, latents, outcomes, calendar)
    step("buying stages")
    batches += _stage_events(rngs[5], leads, latents, outcomes)
    step("event table")
    records, duplicate_events = _draw_duplicates(
        rngs[8], config, leads, outcomes, calendar.period_days
    )
    events_frame = _events_frame([*batches, *duplicate_events], records, calendar)
    del batches
    step("lead and truth tables")
    leads_frame = _leads_frame(
        rngs[7], rngs[9], config, leads, accounts, outcomes, records, calendar
    )
    truth_frame = _truth_frame(leads_frame, leads, latents, outcomes, records, config.horizon_days)
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
