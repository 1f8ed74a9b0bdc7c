"""Fit ("explicit") features: what the lead tells us about themselves, known at creation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import DataContractError

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


def _factorize_text(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes (-1 for missing) and the distinct values as text: work on few values, not rows."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(), pd.Index(values.cat.categories.astype("str"))
    codes, uniques = pd.factorize(values)
    return codes, pd.Index(pd.Index(uniques).astype("str"))


def _first_matching_rule(
    titles: pd.Index, rules: tuple[tuple[str, str], ...], fallback: str
) -> np.ndarray:
    text = pd.Series(titles).str.lower()
    level = np.full(len(titles), fallback, dtype=object)
    decided = np.zeros(len(titles), dtype=bool)
    for name, pattern in rules:
        hit = text.str.contains(pattern, regex=True, na=False).to_numpy() & ~decided
        level[hit] = name
        decided |= hit
    return level


def _parse_titles(
    titles: pd.Series, rules: tuple[tuple[str, str], ...], levels: tuple[str, ...]
) -> pd.Categorical:
    """A category parsed from free-text titles, on distinct titles only; missing stays missing."""
    codes, distinct = _factorize_text(titles)
    parsed = _first_matching_rule(distinct, rules, fallback="other")
    lookup = pd.Index(levels).get_indexer(pd.Index(parsed))
    return _from_codes(np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1), levels)


def seniority_from_title(titles: pd.Series) -> pd.Categorical:
    """Seniority level parsed from a free-text job title; missing titles stay missing."""
    return _parse_titles(titles, _SENIORITY_RULES, SENIORITY_LEVELS)


def job_function_from_title(titles: pd.Series) -> pd.Categorical:
    """Job function (marketing, sales, IT, ...) parsed from a free-text job title."""
    return _parse_titles(titles, _FUNCTION_RULES, JOB_FUNCTIONS)


def company_email_flag(emails: pd.Series, free_mail_domains: list[str]) -> np.ndarray:
    """1.0 for a company domain, 0.0 for free mail, NaN when unknown. The address is not kept."""
    domain = emails.astype("str").str.strip().str.lower().str.extract(r"@([^@]+)$", expand=False)
    flag = np.where(domain.isin(free_mail_domains).to_numpy(), 0.0, 1.0)
    return np.where((domain.notna() & emails.notna()).to_numpy(), flag, np.nan)


def as_category(values: pd.Series, levels: list[str] | None) -> pd.Categorical:
    """Values as text categories with fixed `levels`, or the sorted values present when None.

    Values outside fixed levels become missing: a category unseen in training scores as unknown.
    """
    codes, distinct = _factorize_text(values)
    if levels is None:
        levels = sorted(set(distinct[np.unique(codes[codes >= 0])]))
    lookup = pd.Index(levels).get_indexer(distinct)
    new_codes = np.where(codes >= 0, lookup[np.maximum(codes, 0)], -1) if len(distinct) else codes
    return _from_codes(new_codes, levels)


def _from_codes(codes: np.ndarray, levels: Sequence[str]) -> pd.Categorical:
    categorical: pd.Categorical = pd.Categorical.from_codes(
        np.asarray(codes, dtype=np.int64), categories=pd.Index(list(levels), dtype="str")
    )
    return categorical


def fit_features(leads: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """One row per lead (same index as `leads`) with the fit features of `config`."""
    out = pd.DataFrame(index=leads.index)
    if config.title_column is not None:
        out["seniority"] = seniority_from_title(leads[config.title_column])
        out["job_function"] = job_function_from_title(leads[config.title_column])
    if config.email_column is not None:
        out["is_company_email"] = company_email_flag(
            leads[config.email_column], config.free_mail_domains
        )
    levels = config.category_levels or {}
    for column in config.categorical_columns:
        out[column] = as_category(leads[column], levels.get(column))
    for column in config.numeric_columns:
        numbers = pd.to_numeric(leads[column], errors="coerce").astype("float64")
        not_numbers = numbers.isna() & leads[column].notna()
        if not_numbers.any():
            raise DataContractError(
                f"value {leads.loc[not_numbers, column].iloc[0]!r} is not a number",
                column=column,
                rows=np.flatnonzero(not_numbers.to_numpy()),
            )
        out[column] = numbers
    return out
