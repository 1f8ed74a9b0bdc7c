"""Rule-based points: the classic marketing-automation lead score, computed point in time.

It reads the same snapshots (lead, as_of) and the same point-in-time event join as the features,
so model and rules are compared on exactly the same information.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.config import FeatureConfig
from features.contract import DataContractError
from features.fit import fit_features
from features.pointintime import AS_OF, events_before
from features.vocabulary import LEAD_ID

RULE_SCORE = "rule_score"
RULE_MQL = "rule_mql"
EMAIL_DOMAIN = "email_domain"


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
        data = self.model_dump(mode="json", exclude_none=True)
        if not self.numbers:
            # Tables without numbers stay readable by versions that do not know the section.
            del data["numbers"]
        return yaml.safe_dump(_whole_numbers_as_int(data), sort_keys=False)

    def rule_keys(self) -> list[RuleKey]:
        """Every rule of the table, in the order of `points_by_rule`'s columns."""
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

    def score(
        self,
        spine: pd.DataFrame,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        features: FeatureConfig,
    ) -> pd.DataFrame:
        """`rule_score` and `rule_mql` for every snapshot (lead_id, as_of) of `spine`, in order."""
        event_points = self._event_points_by_type(spine, events).sum(axis=1)
        attribute_points = self._attribute_points(spine, leads, features)
        number_points = self._number_points(spine, leads)
        total = event_points + attribute_points + number_points
        return pd.DataFrame(
            {
                LEAD_ID: spine[LEAD_ID].to_numpy(),
                AS_OF: spine[AS_OF].to_numpy(),
                "rule_event_points": event_points,
                "rule_attribute_points": attribute_points,
                "rule_number_points": number_points,
                RULE_SCORE: total,
                RULE_MQL: total >= self.mql_threshold,
            }
        )

    def points_by_rule(
        self,
        spine: pd.DataFrame,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        features: FeatureConfig,
    ) -> RulePoints:
        """The points each rule adds to each snapshot, by the same code as `score`.

        With every rule at one point this is a design matrix whose fitted weights score exactly
        as a table (event caps scale with the points: see `models.scorecard`).
        """
        n = len(spine)
        columns = [self._event_points_by_type(spine, events)]
        texts = attributes_at(spine, leads, features, list(self.attributes))
        for attribute, table in self.attributes.items():
            codes, uniques = pd.factorize(texts[attribute])
            code_of = {str(value): code for code, value in enumerate(uniques)}
            block = np.zeros((n, len(table)))
            for j, (value, points) in enumerate(table.items()):
                if value in code_of:
                    block[codes == code_of[value], j] = points
            columns.append(block)
        numbers = numbers_at(spine, leads, list(self.numbers))
        for column, bands in self.numbers.items():
            block = np.zeros((n, len(bands)))
            for j, band in enumerate(bands):
                block[:, j] = _band_points(numbers[column].to_numpy(), band)
            columns.append(block)
        return RulePoints(keys=self.rule_keys(), points=np.hstack(columns))

    def profile_points(self, values: Mapping[str, Any]) -> float:
        """Attribute and number points of one lead from its values by column, without pandas.

        The same points as `score` gives (for the API's one-lead path); absent or missing
        values add nothing.
        """
        total = 0.0
        for attribute, table in self.attributes.items():
            value = values.get(attribute)
            if not _is_missing(value):
                total += table.get(str(value), 0.0)
        for column, bands in self.numbers.items():
            raw = values.get(column)
            if raw is None or _is_missing(raw):
                continue
            try:
                number = float(raw)
            except (TypeError, ValueError) as exc:
                raise DataContractError(f"value {raw!r} is not a number", column=column) from exc
            total += sum(band.points for band in bands if number >= band.at_least)
        return total

    def _event_points_by_type(self, spine: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
        """(snapshots, event types of the table): each type's decayed, capped points."""
        kinds = list(self.events)
        n = len(spine)
        if not kinds or n == 0:
            return np.zeros((n, len(kinds)))
        joined = events_before(spine, events, kinds)
        key = joined.row * len(kinds) + joined.type_code
        decay = (
            np.ones_like(joined.age_days)
            if self.half_life_days is None
            else np.exp2(-joined.age_days / self.half_life_days)
        )
        points = np.array([self.events[k].points for k in kinds])
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
        once = np.tile([not self.events[k].repeatable for k in kinds], n)
        per_type = np.where(once, np.tile(points, n) * first_decay, per_type)
        caps = np.tile([self.events[k].cap or np.inf for k in kinds], n)
        per_type = np.clip(per_type, -caps, caps)
        by_type: np.ndarray = per_type.reshape(n, len(kinds))
        return by_type

    def _attribute_points(
        self, spine: pd.DataFrame, leads: pd.DataFrame, features: FeatureConfig
    ) -> np.ndarray:
        n = len(spine)
        if not self.attributes or n == 0:
            return np.zeros(n)
        texts = attributes_at(spine, leads, features, list(self.attributes))
        total = np.zeros(n)
        for attribute, table in self.attributes.items():
            total += texts[attribute].map(table).fillna(0.0).to_numpy(dtype=np.float64)
        return total

    def _number_points(self, spine: pd.DataFrame, leads: pd.DataFrame) -> np.ndarray:
        total = np.zeros(len(spine))
        numbers = numbers_at(spine, leads, list(self.numbers))
        for column, bands in self.numbers.items():
            for band in bands:
                total += _band_points(numbers[column].to_numpy(), band)
        return total


def rule_attributes(leads: pd.DataFrame, features: FeatureConfig) -> pd.DataFrame:
    """The lead attributes rules can give points for, as text: fit features plus the raw columns."""
    fit = fit_features(leads, features)
    if "is_company_email" in fit.columns:
        flag = fit.pop("is_company_email")
        domain = pd.Series(None, index=fit.index, dtype=object)
        domain[flag == 1] = "company"
        domain[flag == 0] = "free_mail"
        fit[EMAIL_DOMAIN] = domain
    raw = leads.drop(columns=[c for c in fit.columns if c in leads.columns])
    return pd.concat([raw, fit], axis=1).astype(object)


def attributes_at(
    spine: pd.DataFrame, leads: pd.DataFrame, features: FeatureConfig, names: Sequence[str]
) -> pd.DataFrame:
    """The rule attributes `names` of each snapshot's lead as text (missing stays missing), in
    spine order; a clear error for an attribute the leads do not have."""
    if not names or len(spine) == 0:
        return pd.DataFrame(index=pd.RangeIndex(len(spine)), columns=list(names), dtype="str")
    values = rule_attributes(leads, features)
    unknown = [a for a in names if a not in values.columns]
    if unknown:
        raise DataContractError(
            f"the rules give points for attribute '{unknown[0]}', which the leads do not have",
            hint=f"known attributes: {', '.join(values.columns)}",
        )
    pos = _lead_positions(spine, leads)
    return pd.DataFrame(
        {name: values[name].astype("str").to_numpy()[pos] for name in names}, dtype="str"
    )


def numbers_at(spine: pd.DataFrame, leads: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """The number columns `names` of each snapshot's lead as float64 (NaN when missing), in
    spine order; a clear error for a column the leads do not have or a value that is no number."""
    unknown = [c for c in names if c not in leads.columns]
    if unknown:
        known = [c for c in leads.columns if pd.api.types.is_numeric_dtype(leads[c])]
        raise DataContractError(
            f"the rules give points for number '{unknown[0]}', which the leads do not have",
            hint=f"numeric lead columns: {', '.join(map(str, known)) or 'none'}",
        )
    pos = _lead_positions(spine, leads) if names else np.zeros(0, dtype=np.int64)
    return pd.DataFrame(
        {name: _as_numbers(leads[name])[pos] for name in names},
        index=pd.RangeIndex(len(spine)),
        dtype=np.float64,
    )


def _lead_positions(spine: pd.DataFrame, leads: pd.DataFrame) -> np.ndarray:
    positions: np.ndarray = pd.Index(leads[LEAD_ID].to_numpy()).get_indexer(
        spine[LEAD_ID].to_numpy()
    )
    return positions


def _as_numbers(values: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce")
    not_numbers = numbers.isna() & values.notna()
    if not_numbers.any():
        raise DataContractError(
            f"value {values[not_numbers].iloc[0]!r} is not a number",
            column=str(values.name),
            rows=np.flatnonzero(not_numbers.to_numpy()),
        )
    array: np.ndarray = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return array


def _band_points(values: np.ndarray, band: NumberBand) -> np.ndarray:
    # NaN compares false: a missing number adds nothing.
    points: np.ndarray = np.where(values >= band.at_least, band.points, 0.0)
    return points


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _whole_numbers_as_int(data: Any) -> Any:
    """`5` rather than `5.0` in the YAML marketers read; loading gives the same floats back."""
    if isinstance(data, dict):
        return {key: _whole_numbers_as_int(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_whole_numbers_as_int(value) for value in data]
    if isinstance(data, float) and data.is_integer():
        return int(data)
    return data
