"""Rule-based points: the classic marketing-automation lead score, computed point in time.

It reads the same snapshots (lead, as_of) and the same point-in-time event join as the features,
so model and rules are compared on exactly the same information.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple, Self

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.batch import LeadBatch, batch_from_frames
from features.config import FeatureConfig
from features.contract import DataContractError
from features.fit import EMAIL_DOMAIN, TITLE_FEATURES, LeadValues, attribute_text
from features.pointintime import AS_OF, join_before
from features.vocabulary import LEAD_ID

RULE_SCORE = "rule_score"
RULE_MQL = "rule_mql"


class EventPoints(BaseModel):
    """Points for one action type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    points: float
    cap: float | None = Field(None, gt=0, description="most points (in size) this type can add")
    repeatable: bool = True


class NumberBand(BaseModel):
    """Points for a number at or above `at_least`; a column's bands add up (HubSpot, Marketo)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at_least: float
    points: float


class RuleKey(NamedTuple):
    """One rule of a table: an event type, an attribute value or a number band."""

    section: Literal["events", "attributes", "numbers"]
    name: str  # event type, attribute or number column
    value: str | float | None  # attribute value, band's at_least, None for events


@dataclass(frozen=True)
class RulePoints:
    """What each rule adds to each snapshot: `points[:, j]` is rule `keys[j]`; rows sum to the
    score."""

    keys: list[RuleKey]
    points: np.ndarray  # float64, (snapshots, rules)


class PointsRules(BaseModel):
    """A points table: per action (decayed), per attribute value, per number band, and the MQL
    threshold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mql_threshold: float
    half_life_days: float | None = Field(30.0, gt=0, description="None: points never decay")
    events: dict[str, EventPoints] = {}
    attributes: dict[str, dict[str, float]] = {}
    numbers: dict[str, list[NumberBand]] = {}

    @field_validator("attributes")
    @classmethod
    def _values_as_leads_are_read(
        cls, attributes: dict[str, dict[str, float]]
    ) -> dict[str, dict[str, float]]:
        """Values trimmed, as lead values are (`attribute_text`); case as written."""
        trimmed: dict[str, dict[str, float]] = {}
        for attribute, table in attributes.items():
            trimmed[attribute] = {}
            for value, points in table.items():
                text = attribute_text(value)
                if text is None:
                    raise ValueError(f"{attribute}: an empty value cannot earn points")
                if text in trimmed[attribute]:
                    raise ValueError(f"{attribute}: value {text!r} is listed twice")
                trimmed[attribute][text] = points
        return trimmed

    @classmethod
    def from_yaml(cls, path: Path) -> PointsRules:
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise DataContractError(f"cannot read the rules ({exc})", file=path) from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise DataContractError(f"{field}: {first['msg']}", file=path) from exc

    @classmethod
    def default(cls) -> PointsRules:
        text = resources.files("models").joinpath("rules/default_points.yaml").read_text()
        return cls.model_validate(yaml.safe_load(text))

    def to_yaml(self) -> str:
        # Every setting is written, `half_life_days: null` (never decay) included: loading gives
        # back this very table. Only an event's absent cap is left out, for readability.
        data = self.model_dump(mode="json")
        for spec in data["events"].values():
            if spec["cap"] is None:
                del spec["cap"]
        if not self.numbers:
            # Tables without numbers stay readable by versions that do not know the section.
            del data["numbers"]
        return yaml.safe_dump(_whole_numbers_as_int(data), sort_keys=False)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; a changed table recomputes its cached arrays (pydantic's copy would carry the
        original's over, and score the new table with the old points)."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("_arrays", None)
        if update:
            # Revalidate what `update` changed, as a table read from YAML is.
            return type(self).model_validate(copy.model_dump())
        return copy

    def rule_keys(self) -> list[RuleKey]:
        """Every rule of the table, in the order of `points_by_rule`'s columns."""
        return list(self._arrays.keys)

    def _rule_keys(self) -> list[RuleKey]:
        return [
            *(RuleKey("events", kind, None) for kind in self.events),
            *(
                RuleKey("attributes", attribute, value)
                for attribute, table in self.attributes.items()
                for value in table
            ),
            *(
                RuleKey("numbers", column, band.at_least)
                for column, bands in self.numbers.items()
                for band in bands
            ),
        ]

    def points_by_rule(self, batch: LeadBatch, values: LeadValues) -> RulePoints:
        """The one points kernel: what each rule adds to each scored row of `batch`.

        Attribute rules read the lead's own values as text (trimmed, case as written), never
        the model's categories: a value the model never saw still earns the table's points.
        With every rule at one point this is a design matrix whose fitted weights score exactly
        as a table (event caps scale with the points: see `models.rules.scorecard`).
        """
        n = batch.n_rows
        columns = [self._event_points_by_type(batch)]
        for attribute, rule_of, points in self._arrays.attributes:
            codes, texts = values.text(attribute)
            rule_of_text = np.array([*(rule_of.get(t, -1) for t in texts), -1], dtype=np.int64)
            rule = rule_of_text[codes][batch.row_lead]
            block = np.zeros((n, len(points)))
            hit = np.flatnonzero(rule >= 0)
            block[hit, rule[hit]] = points[rule[hit]]
            columns.append(block)
        for column, bands in self.numbers.items():
            number = values.number(column)[batch.row_lead]
            columns.append(
                np.column_stack([_band_points(number, band) for band in bands])
                if bands
                else np.zeros((n, 0))
            )
        return RulePoints(keys=self.rule_keys(), points=np.hstack(columns))

    def score_batch(self, batch: LeadBatch, values: LeadValues) -> np.ndarray:
        """Each scored row's points: the sum of what its rules add."""
        total: np.ndarray = self.points_by_rule(batch, values).points.sum(axis=1)
        return total

    def score(
        self,
        spine: pd.DataFrame,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        features: FeatureConfig,
    ) -> pd.DataFrame:
        """`rule_score` and `rule_mql` for every snapshot (lead_id, as_of) of `spine`, in order,
        with the points from events, attributes and numbers apart."""
        by_rule = self.points_by_rule_at(spine, leads, events, features)
        sections = np.array([key.section for key in by_rule.keys], dtype=object)

        def section(name: str) -> np.ndarray:
            return np.asarray(by_rule.points[:, sections == name].sum(axis=1))

        total = by_rule.points.sum(axis=1)
        return pd.DataFrame(
            {
                LEAD_ID: spine[LEAD_ID].to_numpy(),
                AS_OF: spine[AS_OF].to_numpy(),
                "rule_event_points": section("events"),
                "rule_attribute_points": section("attributes"),
                "rule_number_points": section("numbers"),
                RULE_SCORE: total,
                RULE_MQL: total >= self.mql_threshold,
            }
        )

    def points_by_rule_at(
        self,
        spine: pd.DataFrame,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        features: FeatureConfig,
    ) -> RulePoints:
        """`points_by_rule` for snapshots of a leads table and an event log; a clear error for
        a rule on a column the leads do not have."""
        check_rule_columns(self, leads, features)
        batch = batch_from_frames(spine, leads, events if self.events else None)
        return self.points_by_rule(batch, LeadValues(batch, features))

    def _event_points_by_type(self, batch: LeadBatch) -> np.ndarray:
        """(rows, event types of the table): each type's decayed, capped points."""
        kinds, points, once, caps = self._arrays.events
        n = batch.n_rows
        if not kinds or n == 0:
            return np.zeros((n, len(kinds)))
        joined = batch.events_before(kinds) or join_before(
            batch.row_lead, batch.as_of_ns, batch.events_of_types(kinds), batch.n_leads
        )
        key = joined.row * len(kinds) + joined.type_code
        decay = (
            np.ones_like(joined.age_days)
            if self.half_life_days is None
            else np.exp2(-joined.age_days / self.half_life_days)
        )
        per_type = np.bincount(
            key, weights=points[joined.type_code] * decay, minlength=n * len(kinds)
        )
        # "First time only": just the oldest event of the type counts, with its own decay.
        oldest = np.full(n * len(kinds), -np.inf)
        np.maximum.at(oldest, key, joined.age_days)
        seen = np.isfinite(oldest)
        first_decay = np.zeros_like(oldest)
        first_decay[seen] = (
            1.0 if self.half_life_days is None else np.exp2(-oldest[seen] / self.half_life_days)
        )
        by_type = per_type.reshape(n, len(kinds))
        by_type = np.where(once, points * first_decay.reshape(n, len(kinds)), by_type)
        clipped: np.ndarray = np.clip(by_type, -caps, caps)
        return clipped

    @cached_property
    def _arrays(self) -> _RuleArrays:
        kinds = list(self.events)
        return _RuleArrays(
            keys=tuple(self._rule_keys()),
            events=(
                kinds,
                np.array([self.events[k].points for k in kinds], dtype=np.float64),
                np.array([not self.events[k].repeatable for k in kinds], dtype=bool),
                np.array([self.events[k].cap or np.inf for k in kinds], dtype=np.float64),
            ),
            attributes=[
                (
                    attribute,
                    {value: j for j, value in enumerate(table)},
                    np.array(list(table.values()), dtype=np.float64),
                )
                for attribute, table in self.attributes.items()
            ],
        )


@dataclass(frozen=True, eq=False)
class _RuleArrays:
    """A table's rules as arrays, made once per table. Compared by identity: a cached copy on a
    table must not take part in comparing tables."""

    keys: tuple[RuleKey, ...]
    events: tuple[list[str], np.ndarray, np.ndarray, np.ndarray]
    attributes: list[tuple[str, dict[str, int], np.ndarray]]


def attribute_names(columns: Sequence[str], features: FeatureConfig) -> list[str]:
    """What rules can give points for: the leads' columns and what the title and e-mail tell."""
    derived = [
        *(TITLE_FEATURES if features.title_column is not None else ()),
        *([EMAIL_DOMAIN] if features.email_column is not None else []),
    ]
    return [*(c for c in columns if c not in derived), *derived]


def check_rule_columns(rules: PointsRules, leads: pd.DataFrame, features: FeatureConfig) -> None:
    """Every attribute and number the rules score is a column of the leads (or derived)."""
    _check_attributes(list(rules.attributes), leads, features)
    _check_numbers(list(rules.numbers), leads)


def _check_attributes(names: Sequence[str], leads: pd.DataFrame, features: FeatureConfig) -> None:
    known = attribute_names([str(c) for c in leads.columns], features)
    unknown = [a for a in names if a not in known]
    if unknown:
        raise DataContractError(
            f"the rules give points for attribute '{unknown[0]}', which the leads do not have",
            hint=f"known attributes: {', '.join(known)}",
        )


def _check_numbers(names: Sequence[str], leads: pd.DataFrame) -> None:
    missing = [c for c in names if c not in leads.columns]
    if missing:
        numeric = [c for c in leads.columns if pd.api.types.is_numeric_dtype(leads[c])]
        raise DataContractError(
            f"the rules give points for number '{missing[0]}', which the leads do not have",
            hint=f"numeric lead columns: {', '.join(map(str, numeric)) or 'none'}",
        )


def attributes_at(
    spine: pd.DataFrame, leads: pd.DataFrame, features: FeatureConfig, names: Sequence[str]
) -> pd.DataFrame:
    """The rule attributes `names` of each snapshot's lead as the rules read them (text,
    missing stays missing), in spine order."""
    _check_attributes(names, leads, features)
    batch = batch_from_frames(spine, leads, None)
    values = LeadValues(batch, features)
    out: dict[str, np.ndarray] = {}
    for name in names:
        codes, texts = values.text(name)
        lookup = np.array([*texts, None], dtype=object)
        out[name] = lookup[codes][batch.row_lead]
    return pd.DataFrame(out, index=pd.RangeIndex(len(spine)), columns=list(names), dtype="str")


def numbers_at(spine: pd.DataFrame, leads: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The number columns `names` of each snapshot's lead as float64 (NaN when missing), in
    spine order; a clear error for a column the leads do not have or a value that is no number."""
    _check_numbers(names, leads)
    batch = batch_from_frames(spine, leads, None)
    # Numbers are read as they are: no title or e-mail to parse.
    values = LeadValues(batch, FeatureConfig(title_column=None, email_column=None))
    return pd.DataFrame(
        {name: values.number(name)[batch.row_lead] for name in names},
        index=pd.RangeIndex(len(spine)),
        dtype=np.float64,
    )


def _band_points(values: np.ndarray, band: NumberBand) -> np.ndarray:
    # NaN compares false: a missing number adds nothing.
    points: np.ndarray = np.where(values >= band.at_least, band.points, 0.0)
    return points


def _whole_numbers_as_int(data: Any) -> Any:
    """`5` rather than `5.0` in the YAML marketers read; loading gives the same floats back."""
    if isinstance(data, dict):
        return {key: _whole_numbers_as_int(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_whole_numbers_as_int(value) for value in data]
    if isinstance(data, float) and data.is_integer():
        return int(data)
    return data
