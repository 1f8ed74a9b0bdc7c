"""Fit ("explicit") features: what the lead tells us about themselves, known at creation.

Pure functions on arrays, shared by every path: the text of an attribute value, numbers, the
seniority and job function parsed from a title, the kind of e-mail domain. Work is done per
distinct value (titles parsed once each and cached), so one lead costs microseconds and a
million leads costs what their distinct values cost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from features.batch import LeadBatch
from features.config import FeatureConfig
from features.contract import DataContractError, shown_value

SENIORITY_LEVELS: tuple[str, ...] = (
    "c_level",
    "founder",
    "vp",
    "director",
    "manager",
    "individual",
    "consultant",
    "student",
    "other",
)

# First matching rule wins, so "Assistant to the CEO" must be caught before "ceo".
_SENIORITY_RULES: tuple[tuple[str, str], ...] = (
    ("student", r"\b(?:student|intern|internship|trainee|phd candidate)\b"),
    ("individual", r"\b(?:assistant|associate|coordinator)\b"),
    ("founder", r"\b(?:founder|co-founder|cofounder|owner)\b"),
    ("vp", r"\b(?:vp|svp|evp|vice[ -]president)\b"),
    (
        "c_level",
        r"\b(?:chief|ceo|cto|cfo|cmo|coo|cio|ciso|cro|cdo|cpo|chro|president|"
        r"managing director|general manager|partner)\b",
    ),
    ("director", r"\b(?:director|head of|head,)\b"),
    ("manager", r"\b(?:manager|mgr|team lead|supervisor|principal)\b"),
    ("consultant", r"\b(?:consultant|freelance|freelancer|contractor|advisor)\b"),
    (
        "individual",
        r"\b(?:engineer|developer|analyst|specialist|administrator|architect|lead|"
        r"scientist|designer|representative|executive|officer|accountant|marketer|"
        r"programmer|technician|writer|strategist|recruiter|generalist|owner|partner)\b",
    ),
)

JOB_FUNCTIONS: tuple[str, ...] = (
    "general_management",
    "marketing",
    "sales",
    "data",
    "it",
    "engineering",
    "product",
    "operations",
    "finance",
    "hr",
    "other",
)

# First match wins: "Marketing Operations" is marketing, "Data Engineer" is data,
# "Network Engineer" is IT.
_FUNCTION_RULES: tuple[tuple[str, str], ...] = (
    ("marketing", r"\b(?:marketing|marketer|demand gen\w*|growth|seo|content|brand|cmo)\b"),
    (
        "sales",
        r"\b(?:sales|revenue|business development|account executive|account manager|"
        r"sdr|bdr|cro)\b",
    ),
    ("data", r"\b(?:data|analytics|business intelligence|bi|cdo)\b"),
    (
        "it",
        r"\b(?:it|information technology|information officer|systems administrator|network|"
        r"infrastructure|helpdesk|cio|ciso)\b",
    ),
    (
        "engineering",
        r"\b(?:engineer\w*|developer|devops|software|technology officer|cto|platform|"
        r"full stack|programmer)\b",
    ),
    ("product", r"\b(?:product|ux|cpo)\b"),
    ("operations", r"\b(?:operations|operating|ops|coo)\b"),
    ("finance", r"\b(?:finance|financial|fp&a|accountant|accounting|controller|cfo)\b"),
    ("hr", r"\b(?:hr|human resources|people|talent|recruit\w*|chro)\b"),
    (
        "general_management",
        r"\b(?:ceo|founder|co-founder|owner|president|managing director|general manager)\b",
    ),
)


_SENIORITY_PATTERNS = tuple((name, re.compile(pattern)) for name, pattern in _SENIORITY_RULES)
_FUNCTION_PATTERNS = tuple((name, re.compile(pattern)) for name, pattern in _FUNCTION_RULES)
# Fewer values than this are read one by one; more are factorised by pandas first.
_FACTORIZE_FROM = 512


def is_missing(value: object) -> bool:
    """None, NaN, pandas' NA and NaT: a value the lead did not give."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    # NaN is the one value unequal to itself (cheaper than np.isnan on a scalar).
    return isinstance(value, float | np.floating) and bool(value != value)


def attribute_text(value: object) -> str | None:
    """An attribute value as text, the same on every path: trimmed, whole numbers without a
    decimal point (5, 5.0 and "5" alike), empty or missing as None."""
    if type(value) is str:  # most values: none of the checks below applies to text
        return value.strip() or None
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    text = str(value).strip()
    return text or None


def text_codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each value's position among the distinct `attribute_text`s (-1 when missing), and those
    texts: the work per distinct value, not per row."""
    code_of: dict[str, int] = {}
    if len(values) < _FACTORIZE_FROM or pd.api.types.infer_dtype(values, skipna=True) == "mixed":
        # Each value read in turn: its codes are the result. Objects come out of a list
        # faster than out of an array, and as themselves.
        each = values.tolist() if values.dtype == object else values
        codes = [
            -1 if text is None else code_of.setdefault(text, len(code_of))
            for text in map(attribute_text, each)
        ]
        return np.array(codes, dtype=np.int64), list(code_of)
    # One type per column: pandas' hashing cannot mix up 1 and True.
    first_codes, uniques = pd.factorize(values, use_na_sentinel=True)
    lookup = np.array(
        [
            -1 if text is None else code_of.setdefault(text, len(code_of))
            for text in map(attribute_text, uniques)
        ]
        + [-1],  # position -1: pandas' code for missing
        dtype=np.int64,
    )
    return lookup[np.asarray(first_codes, dtype=np.int64)], list(code_of)


def recode(codes: np.ndarray, texts: Sequence[str], levels: Sequence[str]) -> np.ndarray:
    """`text_codes` as positions in `levels` (float, NaN when missing or not a level): how the
    model reads a category."""
    index = _level_index(tuple(levels))
    lookup = np.array([index.get(t, math.nan) for t in texts] + [math.nan], dtype=np.float64)
    recoded: np.ndarray = lookup[codes]
    return recoded


@lru_cache(maxsize=8)
def _free_mail(domains: tuple[str, ...]) -> frozenset[str]:
    return frozenset(domains)


@lru_cache(maxsize=256)
def _level_index(levels: tuple[str, ...]) -> dict[str, int]:
    """Each level's position (shared read-only: a model's levels are asked for on every call)."""
    return {level: i for i, level in enumerate(levels)}


@lru_cache(maxsize=65_536)
def parse_title(title: str) -> tuple[str, str]:
    """(seniority, job function) of a free-text job title; the first matching rule wins."""
    lowered = title.lower()
    seniority = next((n for n, p in _SENIORITY_PATTERNS if p.search(lowered)), "other")
    function = next((n for n, p in _FUNCTION_PATTERNS if p.search(lowered)), "other")
    return seniority, function


def company_email_flags(values: np.ndarray, free_mail_domains: frozenset[str]) -> np.ndarray:
    """1.0 for a company domain, 0.0 for free mail, NaN when missing or without a domain (the
    text after the last "@" of the trimmed, lower-cased address). Read once per distinct
    address (`text_codes`), as every other text column is."""
    codes, texts = text_codes(values)
    flagged: np.ndarray = np.array(_flag_of_texts(texts, free_mail_domains))[codes]
    return flagged


def _flag_of_texts(texts: list[str], free_mail_domains: frozenset[str]) -> list[float]:
    """Each distinct address's flag, then NaN for code -1 (missing)."""
    flags = []
    for text in texts:
        domain = text.lower().rpartition("@")[2] if "@" in text else ""
        flags.append(math.nan if not domain else 0.0 if domain in free_mail_domains else 1.0)
    flags.append(math.nan)
    return flags


def numbers(values: np.ndarray, column: str) -> np.ndarray:
    """Values as float64 (NaN when missing): numbers, or text that reads as one; anything
    else is refused with the column and the rows."""
    if values.dtype.kind in "fiub":
        as_float: np.ndarray = values.astype(np.float64)
        return as_float
    out: list[float] = []
    wrong: list[int] = []
    # Objects come out of a list faster than out of an array, and as themselves.
    each = values.tolist() if values.dtype == object else values
    for i, value in enumerate(each):
        if is_missing(value):
            out.append(math.nan)
            continue
        try:
            out.append(float(value.strip() if isinstance(value, str) else value))
        except (TypeError, ValueError):
            out.append(math.nan)
            wrong.append(i)
    if wrong:
        raise DataContractError(
            f"value {shown_value(values[wrong[0]])} is not a number",
            column=column,
            rows=np.array(wrong),
        )
    return np.array(out, dtype=np.float64)


def _empty_column(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


class LeadValues:
    """What one batch's leads say about themselves, read once and shared by the features and
    the rules: attribute texts, numbers, and what the title and e-mail tell. One entry per
    lead; a column no lead has is missing for all."""

    def __init__(self, batch: LeadBatch, config: FeatureConfig) -> None:
        self.batch = batch
        self.config = config
        self._texts: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._numbers: dict[str, np.ndarray] = {}
        self._email_flags: np.ndarray | None = None
        self._flag_of_email: list[float] | None = None

    def raw(self, column: str) -> np.ndarray:
        found = self.batch.column(column)
        return _empty_column(self.batch.n_leads) if found is None else found

    def text(self, column: str) -> tuple[np.ndarray, list[str]]:
        """`text_codes` of a column's raw values; the derived `seniority`, `job_function` and
        `email_domain` (company / free_mail) when the config parses titles or e-mails."""
        if column not in self._texts:
            derived = self._derived_text(column) if column in _DERIVED else None
            self._texts[column] = derived if derived is not None else text_codes(self.raw(column))
        return self._texts[column]

    def number(self, column: str) -> np.ndarray:
        if column not in self._numbers:
            self._numbers[column] = numbers(self.raw(column), column)
        return self._numbers[column]

    def category(self, column: str, levels: Sequence[str]) -> np.ndarray:
        codes, texts = self.text(column)
        return recode(codes, texts, levels)

    def learned_levels(self, column: str) -> list[str]:
        """The sorted distinct texts of a column: a category's levels when training."""
        codes, texts = self.text(column)
        return sorted(texts[c] for c in np.unique(codes[codes >= 0]))

    def company_email_flag(self) -> np.ndarray:
        """1.0 company domain, 0.0 free mail, NaN unknown, per lead."""
        if self._email_flags is None:
            self._email_flags = np.array(self._email_flag_lookup())[self._email_codes()]
        return self._email_flags

    def _email_codes(self) -> np.ndarray:
        assert self.config.email_column is not None
        return self.text(self.config.email_column)[0]

    def _email_flag_lookup(self) -> list[float]:
        """The flag of each distinct address (`_flag_of_texts`), read once per batch."""
        if self._flag_of_email is None:
            assert self.config.email_column is not None
            texts = self.text(self.config.email_column)[1]
            free_mail = _free_mail(tuple(self.config.free_mail_domains))
            self._flag_of_email = _flag_of_texts(texts, free_mail)
        return self._flag_of_email

    def _derived_text(self, column: str) -> tuple[np.ndarray, list[str]] | None:
        config = self.config
        if column in TITLE_FEATURES and config.title_column is not None:
            codes, titles = self.text(config.title_column)
            part = 0 if column == "seniority" else 1
            parsed = [parse_title(title)[part] for title in titles]
            levels = SENIORITY_LEVELS if part == 0 else JOB_FUNCTIONS
            index = _level_index(levels)
            lookup = np.array([index[p] for p in parsed] + [-1], dtype=np.int64)
            return lookup[codes], list(levels)
        if column == EMAIL_DOMAIN and config.email_column is not None:
            # Per distinct address, as the flags are: company 0, free mail 1, unknown -1.
            kind = [
                -1 if math.isnan(flag) else 0 if flag == 1.0 else 1
                for flag in self._email_flag_lookup()
            ]
            return np.array(kind, dtype=np.int64)[self._email_codes()], list(EMAIL_DOMAINS)
        return None


# What the rules call the e-mail's kind of domain (the address itself is never kept), and its
# values.
EMAIL_DOMAIN = "email_domain"
EMAIL_DOMAINS: tuple[str, ...] = ("company", "free_mail")
# What the title and the e-mail tell, by the names rules and features give them.
_DERIVED = frozenset(("seniority", "job_function", EMAIL_DOMAIN))
# Features parsed from the title: categories with fixed levels.
TITLE_FEATURES: dict[str, tuple[str, ...]] = {
    "seniority": SENIORITY_LEVELS,
    "job_function": JOB_FUNCTIONS,
}


def derived_levels(config: FeatureConfig) -> dict[str, tuple[str, ...]]:
    """The attributes a config derives (from the title, from the e-mail) and the only values
    each can take."""
    levels: dict[str, tuple[str, ...]] = {}
    if config.title_column is not None:
        levels.update(TITLE_FEATURES)
    if config.email_column is not None:
        levels[EMAIL_DOMAIN] = EMAIL_DOMAINS
    return levels
