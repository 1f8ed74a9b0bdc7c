"""One lead at a time without pandas: the API's hot path, the same numbers as `LeadScorer`.

A pandas DataFrame for one row costs milliseconds; this path computes the same features with
small numpy arrays and dictionaries prepared once per model, predicts on a numpy row, and
applies the same calibration, policy, rules and reasons. A parity test holds it to the batch
path on many simulated leads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from features.fit import job_function_from_title, seniority_from_title
from features.pointintime import NS_PER_DAY
from models.points import EMAIL_DOMAIN
from models.scorer import LeadScorer

_EMAIL_DOMAIN_BY_FLAG = {1.0: "company", 0.0: "free_mail"}


@dataclass(frozen=True)
class LeadEvents:
    """One lead's events: times in ns since epoch (UTC) and event type names."""

    ts: np.ndarray
    kinds: Sequence[str]


@lru_cache(maxsize=65_536)
def _title_levels(title: str) -> tuple[str | None, str | None]:
    """(seniority, job function) of a title, parsed by the batch rules and cached per title."""
    one = pd.Series([title], dtype=object)
    seniority = seniority_from_title(one).astype(object)[0]
    function = job_function_from_title(one).astype(object)[0]
    return (
        None if _missing(seniority) else str(seniority),
        None if _missing(function) else str(function),
    )


class FastLeadScorer:
    """Scores single leads with the model, rules and reasons of a `LeadScorer`."""

    def __init__(self, scorer: LeadScorer) -> None:
        config = scorer.features
        if config.account_column is not None:
            raise ValueError("account features need the account's other leads: use LeadScorer")
        self.scorer = scorer
        # Built here, when the model loads, rather than on the first request.
        self.tables = scorer.contribution_tables
        self.names = list(scorer.feature_names)
        self.position = {name: i for i, name in enumerate(self.names)}
        self.types = {kind: i for i, kind in enumerate(config.event_types)}
        self.n_types = len(config.event_types)
        self.windows = list(config.windows_days)
        self.inbound = np.array([k not in config.outbound_event_types for k in config.event_types])
        self.half_life = config.decay_half_life_days
        self.sent = self.types.get("email_sent")
        self.opened = self.types.get("email_open")
        self.free_mail = frozenset(config.free_mail_domains)
        self.title_column = config.title_column
        self.email_column = config.email_column
        self.numeric = list(config.numeric_columns)
        # LightGBM codes a category by its position in the training categories, NaN if unseen.
        category_features = {*config.categorical_columns, "seniority", "job_function"}
        categorical = [name for name in self.names if name in category_features]
        levels = scorer.booster.pandas_categorical or []
        self.codes = {
            name: {str(value): float(code) for code, value in enumerate(levels[i])}
            for i, name in enumerate(categorical)
        }
        self.categorical_columns = list(config.categorical_columns)
        # Behaviour features sit in one block, laid out as in features.build.
        first = self.position[f"{config.event_types[0]}_count_{self.windows[0]}d"]
        self.block = slice(first, first + self.n_types * (len(self.windows) + 2))
        self.tail = [
            self.position[name]
            for name in (
                "engagement_decayed",
                "active_days",
                "velocity_7d_vs_30d",
                "days_since_last_activity",
                "email_open_rate",
            )
        ]
        rules = scorer.rules
        self.rule_types = {kind: i for i, kind in enumerate(rules.events)}
        self.rule_points = np.array([spec.points for spec in rules.events.values()])
        self.rule_once = np.array([not spec.repeatable for spec in rules.events.values()])
        self.rule_caps = np.array([spec.cap or np.inf for spec in rules.events.values()])

    def _fit(self, lead: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(model values by feature, rule attribute values as text) for the lead's attributes."""
        values: dict[str, Any] = {}
        if self.title_column is not None:
            title = lead.get(self.title_column)
            seniority, function = (None, None) if _missing(title) else _title_levels(str(title))
            values["seniority"], values["job_function"] = seniority, function
        if self.email_column is not None:
            values["is_company_email"] = self._company_email(lead.get(self.email_column))
        for column in self.categorical_columns:
            raw = lead.get(column)
            values[column] = None if _missing(raw) else str(raw)
        for column in self.numeric:
            raw = lead.get(column)
            values[column] = math.nan if raw is None or _missing(raw) else float(raw)
        attributes = {
            key: value for key, value in lead.items() if key not in values and key != EMAIL_DOMAIN
        }
        attributes.update({k: v for k, v in values.items() if k != "is_company_email"})
        if "is_company_email" in values:
            attributes[EMAIL_DOMAIN] = _EMAIL_DOMAIN_BY_FLAG.get(values["is_company_email"])
        return values, attributes

    def _company_email(self, email: object) -> float:
        if _missing(email) or "@" not in str(email):
            return math.nan
        domain = str(email).strip().lower().rsplit("@", 1)[1]
        if not domain:
            return math.nan
        return 0.0 if domain in self.free_mail else 1.0

    def features(
        self, fit: Mapping[str, Any], events: LeadEvents, as_of_ns: int, created_ns: int
    ) -> tuple[np.ndarray, list[Any]]:
        """The model's feature row from the lead's fit values (`_fit`) and events, and the same
        values in natural form for the reasons."""
        row = np.zeros((1, len(self.names)))
        shown: list[Any] = [None] * len(self.names)
        for name, value in fit.items():
            i = self.position[name]
            if name in self.codes:
                code = math.nan if value is None else self.codes[name].get(value, math.nan)
                row[0, i] = code
                # A category unseen in training is unknown to the model, and said so.
                shown[i] = None if math.isnan(code) else value
            else:
                row[0, i] = value
                shown[i] = value
        lead_age = (as_of_ns - created_ns) / NS_PER_DAY
        row[0, self.position["lead_age_days"]] = lead_age
        shown[self.position["lead_age_days"]] = lead_age

        codes = np.array([self.types.get(kind, -1) for kind in events.kinds], dtype=np.int64)
        age_ns = as_of_ns - np.asarray(events.ts, dtype=np.int64)
        keep = (age_ns > 0) & (codes >= 0)
        codes, age = codes[keep], age_ns[keep] / NS_PER_DAY
        block = np.empty((self.n_types, len(self.windows) + 2))
        for j, window in enumerate(self.windows):
            block[:, j] = np.bincount(codes[age < window], minlength=self.n_types)
        counts = np.bincount(codes, minlength=self.n_types)
        block[:, len(self.windows)] = counts
        newest = np.full(self.n_types, np.inf)
        np.minimum.at(newest, codes, age)
        newest[np.isinf(newest)] = np.nan
        block[:, len(self.windows) + 1] = newest
        row[0, self.block] = block.reshape(-1)

        inbound = self.inbound[codes]
        age_in = age[inbound]
        days = (np.asarray(events.ts, dtype=np.int64)[keep][inbound]) // NS_PER_DAY
        last_7, last_30 = int((age_in < 7).sum()), int((age_in < 30).sum())
        sent = counts[self.sent] if self.sent is not None else 0
        opened = counts[self.opened] if self.opened is not None else 0
        tail = (
            float(np.exp2(-age_in / self.half_life).sum()),
            float(len(np.unique(days))),
            (last_7 / 7) / (last_30 / 30) if last_30 > 0 else 0.0,
            float(age_in.min()) if len(age_in) else math.nan,
            opened / sent if sent > 0 and self.sent is not None and self.opened is not None
            else math.nan,
        )  # fmt: skip
        for i, value in zip(self.tail, tail, strict=True):
            row[0, i] = value
        for i in range(len(self.names)):
            if shown[i] is None and self.names[i] not in fit:
                shown[i] = row[0, i]
        return row, shown

    def rule_score(self, attributes: Mapping[str, Any], events: LeadEvents, as_of_ns: int) -> float:
        """PointsRules.score for one lead (same decay, caps and first-time-only rules)."""
        rules = self.scorer.rules
        total = 0.0
        if self.rule_types:
            codes = np.array([self.rule_types.get(k, -1) for k in events.kinds], dtype=np.int64)
            age_ns = as_of_ns - np.asarray(events.ts, dtype=np.int64)
            keep = (age_ns > 0) & (codes >= 0)
            codes, age = codes[keep], age_ns[keep] / NS_PER_DAY
            n = len(self.rule_types)
            decay = (
                np.ones_like(age)
                if rules.half_life_days is None
                else np.exp2(-age / rules.half_life_days)
            )
            per_type = np.bincount(codes, weights=self.rule_points[codes] * decay, minlength=n)
            oldest = np.full(n, -np.inf)
            np.maximum.at(oldest, codes, age)
            seen = np.isfinite(oldest)
            first = np.zeros(n)
            first[seen] = (
                1.0
                if rules.half_life_days is None
                else np.exp2(-oldest[seen] / rules.half_life_days)
            )
            per_type = np.where(self.rule_once, self.rule_points * first, per_type)
            total += float(np.clip(per_type, -self.rule_caps, self.rule_caps).sum())
        return total + rules.profile_points(attributes)

    def score(
        self,
        lead: Mapping[str, Any],
        events: LeadEvents,
        as_of: pd.Timestamp,
        *,
        with_reasons: bool = True,
    ) -> dict[str, Any]:
        """One lead's answer, with the fields of `SCORE_COLUMNS`."""
        scorer = self.scorer
        as_of_ns = int(as_of.value)
        created_ns = int(pd.Timestamp(lead["created_at"]).value)
        fit, attributes = self._fit(lead)
        row, shown = self.features(fit, events, as_of_ns, created_ns)
        # As LeadScorer.raw_scores: the score is the sum of the contributions, bit for bit.
        contributions = self.tables.predict(row)
        probability = float(scorer.calibrator.apply(contributions.sum(axis=1))[0])
        rule_score = self.rule_score(attributes, events, as_of_ns)
        reasons: dict[str, list[dict[str, object]]] = {"for": [], "against": []}
        if with_reasons:
            found = scorer.reason_writer.reasons(contributions[0], shown)
            reasons = {side: [r.as_dict() for r in items] for side, items in found.items()}
        monitored = scorer.metadata.get("monitored_features", [])
        return {
            "features": {name: float(row[0, self.position[name]]) for name in monitored},
            "lead_id": lead["lead_id"],
            "as_of": as_of,
            "probability": probability,
            "mql": probability >= scorer.policy.threshold,
            "tier": str(scorer.policy.tiers(np.array([probability]))[0]),
            "threshold": scorer.policy.threshold,
            "rule_score": rule_score,
            "rule_mql": rule_score >= scorer.rules.mql_threshold,
            "reasons": reasons,
            "model_version": scorer.model_version,
        }


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
