"""Fit ("explicit") features: what the lead tells us about themselves, known at creation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.config import FeatureConfig
from features.contract import DataContractError

SENIORITY_LEVELS: tuple[str, ...] = (
    "c_level",
    "vp",
    "director",
    "manager",
    "individual",
    "student",
    "other",
)

# First matching rule wins, so "Assistant to the CEO" must be caught before "ceo".
_SENIORITY_RULES: tuple[tuple[str, str], ...] = (
    ("student", r"\b(?:student|intern|internship|trainee|phd candidate)\b"),
    ("individual", r"\b(?:assistant|associate|coordinator)\b"),
    ("vp", r"\b(?:vp|svp|evp|vice[ -]president)\b"),
    (
        "c_level",
        r"\b(?:chief|ceo|cto|cfo|cmo|coo|cio|ciso|cro|founder|co-founder|owner|president|"
        r"managing director|general manager|partner)\b",
    ),
    ("director", r"\b(?:director|head of|head,)\b"),
    ("manager", r"\b(?:manager|mgr|lead|team lead|supervisor|principal)\b"),
    (
        "individual",
        r"\b(?:engineer|developer|analyst|specialist|consultant|administrator|architect|"
        r"scientist|designer|representative|executive|officer|accountant|marketer|"
        r"programmer|technician|writer|strategist)\b",
    ),
)


def seniority_from_title(titles: pd.Series) -> pd.Categorical:
    """Seniority level parsed from a free-text job title; missing titles stay missing."""
    text = titles.astype("str").str.lower().where(titles.notna())
    level = np.full(len(titles), "other", dtype=object)
    decided = text.isna().to_numpy().copy()
    level[decided] = None
    for name, pattern in _SENIORITY_RULES:
        hit = text.str.contains(pattern, regex=True, na=False).to_numpy() & ~decided
        level[hit] = name
        decided |= hit
    return pd.Categorical(level, categories=list(SENIORITY_LEVELS))


def company_email_flag(emails: pd.Series, free_mail_domains: list[str]) -> np.ndarray:
    """1.0 for a company domain, 0.0 for free mail, NaN when unknown. The address is not kept."""
    domain = emails.astype("str").str.strip().str.lower().str.rpartition("@")[2]
    valid = emails.notna() & emails.astype("str").str.contains("@", regex=False, na=False)
    flag = np.where(domain.isin(free_mail_domains), 0.0, 1.0)
    return np.where(valid.to_numpy(), flag, np.nan)


def categorical_levels(values: pd.Series) -> list[str]:
    """The sorted distinct non-missing values, as text: the default category levels."""
    return sorted(values.dropna().astype("str").unique().tolist())


def fit_features(leads: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """One row per lead (same index as `leads`) with the fit features of `config`."""
    out = pd.DataFrame(index=leads.index)
    if config.title_column is not None:
        out["seniority"] = seniority_from_title(leads[config.title_column])
    if config.email_column is not None:
        out["is_company_email"] = company_email_flag(
            leads[config.email_column], config.free_mail_domains
        )
    levels = config.category_levels or {}
    for column in config.categorical_columns:
        values = leads[column]
        text = values.astype("str").where(values.notna())
        out[column] = pd.Categorical(
            text, categories=levels.get(column) or categorical_levels(values)
        )
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
