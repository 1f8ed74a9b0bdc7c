"""Rule-based points: the classic marketing-automation lead score, computed point in time.

It reads the same snapshots (lead, as_of) and the same point-in-time event join as the features,
so model and rules are compared on exactly the same information.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

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


class PointsRules(BaseModel):
    """A points table: per action (decayed), per attribute value, and the MQL threshold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mql_threshold: float
    half_life_days: float | None = Field(30.0, gt=0, description="None: points never decay")
    events: dict[str, EventPoints] = {}
    attributes: dict[str, dict[str, float]] = {}

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
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    def score(
        self,
        spine: pd.DataFrame,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        features: FeatureConfig,
    ) -> pd.DataFrame:
        """`rule_score` and `rule_mql` for every snapshot (lead_id, as_of) of `spine`, in order."""
        event_points = self._event_points(spine, events)
        attribute_points = self._attribute_points(spine, leads, features)
        total = event_points + attribute_points
        return pd.DataFrame(
            {
                LEAD_ID: spine[LEAD_ID].to_numpy(),
                AS_OF: spine[AS_OF].to_numpy(),
                "rule_event_points": event_points,
                "rule_attribute_points": attribute_points,
                RULE_SCORE: total,
                RULE_MQL: total >= self.mql_threshold,
            }
        )

    def _event_points(self, spine: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
        kinds = list(self.events)
        n = len(spine)
        if not kinds or n == 0:
            return np.zeros(n)
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
        totals: np.ndarray = per_type.reshape(n, len(kinds)).sum(axis=1)
        return totals

    def _attribute_points(
        self, spine: pd.DataFrame, leads: pd.DataFrame, features: FeatureConfig
    ) -> np.ndarray:
        n = len(spine)
        if not self.attributes or n == 0:
            return np.zeros(n)
        values = rule_attributes(leads, features)
        unknown = [a for a in self.attributes if a not in values.columns]
        if unknown:
            raise DataContractError(
                f"the rules give points for attribute '{unknown[0]}', which the leads do not have",
                hint=f"known attributes: {', '.join(values.columns)}",
            )
        pos = pd.Index(leads[LEAD_ID].to_numpy()).get_indexer(spine[LEAD_ID].to_numpy())
        total = np.zeros(n)
        for attribute, table in self.attributes.items():
            text = values[attribute].astype("str").to_numpy()[pos]
            total += pd.Series(text).map(table).fillna(0.0).to_numpy(dtype=np.float64)
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
