"""Rule-based points: the classic marketing-automation lead score, computed point in time.

It reads the same snapshots (lead, as_of) and the same point-in-time event join as the features,
so model and rules are compared on exactly the same information.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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


# The problems of a rules file its one-line error names (a file may have many).
_PROBLEMS_SHOWN = 5


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
            # Every problem, in one line: a misspelt key is "required" and "not permitted" at once.
            errors = exc.errors()
            said = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'the table'}: {error['msg']}"
                for error in errors[:_PROBLEMS_SHOWN]
            )
            more = (
                f" (and {len(errors) - _PROBLEMS_SHOWN} more)"
                if len(errors) > _PROBLEMS_SHOWN
                else ""
            )
            raise DataContractError(said + more, file=path) from exc

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

    def actions_never_seen(self, seen: Iterable[str]) -> list[str]:
        """The actions this table scores that `seen` (an event log's types) never holds: most
        often a misspelt type, which would earn nothing, silently."""
        present = set(seen)
        return [kind for kind in self.events if kind not in present]

    def values_never_taken(self, levels: Mapping[str, Sequence[str]]) -> list[str]:
        """The attribute values this table scores that their attribute never takes, for the
        attributes whose values are fixed (`levels`, e.g. a title's seniority): a misspelt
        one would earn nothing, silently."""
        return [
            f"{attribute} {value!r} ({attribute} takes only {', '.join(taken)})"
            for attribute, taken in levels.items()
            for value in self.attributes.get(attribute, {})
            if value not in taken
        ]

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
        return RulePoints(keys=self.rule_keys(), points=self._points_matrix(batch, values))

    def score_batch(self, batch: LeadBatch, values: LeadValues) -> np.ndarray:
        """Each scored row's points: the sum of what its rules add."""
        # Summed over the whole (rows, rules) matrix, so the additions run in the same order
        # (and round the same) as the columns of `points_by_rule`.
        total: np.ndarray = self._points_matrix(batch, values).sum(axis=1)
        return total

    def _points_matrix(self, batch: LeadBatch, values: LeadValues) -> np.ndarray:
        """`points_by_rule`'s (rows, rules) matrix, each section written in place into one
        array: few numpy calls per batch, since one lead is scored per API request."""
        arrays = self._arrays
        n = batch.n_rows
        matrix = np.zeros((n, len(arrays.keys)))
        self._add_event_points(batch, matrix[:, : len(arrays.events.kinds)])
        _add_attribute_points(arrays.attributes, batch, values, matrix)
        for number in arrays.numbers:
            value = values.number(number.column)[batch.row_lead]
            # NaN compares false: a missing number adds nothing.
            np.copyto(
                matrix[:, number.start : number.start + len(number.points)],
                number.points,
                where=value[:, np.newaxis] >= number.at_least,
            )
        return matrix

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

    def _add_event_points(self, batch: LeadBatch, out: np.ndarray) -> None:
        """Write each event type's decayed, capped points into `out` (rows, event types),
        which holds zeros."""
        events = self._arrays.events
        kinds = events.kinds
        n = batch.n_rows
        if not kinds or n == 0:
            return
        joined = batch.events_before(kinds) or join_before(
            batch.row_lead, batch.as_of_ns, batch.events_of_types(kinds), batch.n_leads
        )
        key = joined.row * len(kinds)
        key += joined.type_code
        weight = events.points[joined.type_code]
        if events.minus_half_life is not None:
            # age / -half_life is exactly -age / half_life: division is sign-symmetric.
            weight *= np.exp2(np.divide(joined.age_days, events.minus_half_life))
        # Float even without pairs (bincount then counts in int64): a first-time-only type
        # never seen writes -0.0 for negative points.
        sums = np.bincount(key, weights=weight, minlength=n * len(kinds))
        by_type = sums.astype(np.float64, copy=False).reshape(n, -1)
        if len(events.once_columns):
            # "First time only": just the oldest event of the type counts, with its own decay.
            oldest_of_key = np.empty(n * len(kinds))
            oldest_of_key.fill(-np.inf)
            np.maximum.at(oldest_of_key, key, joined.age_days)
            oldest = oldest_of_key.reshape(n, -1)[:, events.once_columns]
            seen = np.isfinite(oldest)
            first_decay = (
                seen.astype(np.float64)
                if events.minus_half_life is None
                # exp2 of every entry, the unseen (inf) then dropped: each entry's decay is
                # the one exp2 gives that age alone.
                else np.where(seen, np.exp2(np.divide(oldest, events.minus_half_life)), 0.0)
            )
            by_type[:, events.once_columns] = events.once_points * first_decay
        # np.clip's bounds, as two ufuncs (np.clip's own checks cost more than the clipping):
        # the caps are never zero, so no signed zero tie can tell them apart.
        np.maximum(by_type, events.minus_caps, out=by_type)
        np.minimum(by_type, events.caps, out=out)

    @cached_property
    def _arrays(self) -> _RuleArrays:
        kinds = list(self.events)
        points = np.array([self.events[k].points for k in kinds], dtype=np.float64)
        once_columns = np.array(
            [j for j, k in enumerate(kinds) if not self.events[k].repeatable], dtype=np.int64
        )
        caps = np.array([self.events[k].cap or np.inf for k in kinds], dtype=np.float64)
        # Columns follow `_rule_keys`: event types, then attribute values, then number bands.
        start = len(kinds)
        # Attribute entries: each attribute's miss (a missing or unlisted value, which writes
        # 0.0 to the attribute's first column), then its values. An empty table has none.
        entry_columns: list[int] = []
        entry_points: list[float] = []
        attributes: list[_AttributeRules] = []
        for attribute, table in self.attributes.items():
            miss_entry = len(entry_columns)
            if table:
                entry_columns += [start, *range(start, start + len(table))]
                entry_points += [0.0, *table.values()]
            entry_of = {value: miss_entry + 1 + j for j, value in enumerate(table)}
            attributes.append(_AttributeRules(attribute, entry_of, miss_entry))
            start += len(table)
        numbers: list[_NumberBands] = []
        for column, bands in self.numbers.items():
            numbers.append(
                _NumberBands(
                    column,
                    start,
                    np.array([band.at_least for band in bands], dtype=np.float64),
                    np.array([band.points for band in bands], dtype=np.float64),
                )
            )
            start += len(bands)
        return _RuleArrays(
            keys=tuple(self._rule_keys()),
            events=_EventRules(
                kinds=kinds,
                points=points,
                once_columns=once_columns,
                once_points=points[once_columns],
                caps=caps,
                minus_caps=-caps,
                minus_half_life=None if self.half_life_days is None else -self.half_life_days,
            ),
            attributes=_AttributeTables(
                attributes,
                np.array(entry_columns, dtype=np.int64),
                np.array(entry_points, dtype=np.float64),
            ),
            numbers=numbers,
        )


def _add_attribute_points(
    tables: _AttributeTables, batch: LeadBatch, values: LeadValues, matrix: np.ndarray
) -> None:
    """Write each row's attribute points into `matrix` (rows, rules; C-contiguous, written
    through its flat view), which holds zeros.

    The batch's distinct texts of every attribute are looked up once, into one array of table
    entries; a row then takes one entry per attribute: a listed value's column and points, or
    the attribute's miss, which writes 0.0 to its first column. Each (row, attribute) so writes
    exactly one cell, of its own.
    """
    entry_of_code: list[int] = []
    codes_of_attributes: list[np.ndarray] = []
    offsets: list[int] = []
    for rule in tables.rules:
        codes, texts = values.text(rule.attribute)
        if not rule.entry_of:
            continue  # an empty table: no points, no entries
        offsets.append(len(entry_of_code) + 1)  # code -1 (missing) reads the miss before
        codes_of_attributes.append(codes)
        entry_of = rule.entry_of.get
        entry_of_code += [rule.miss_entry, *[entry_of(text, rule.miss_entry) for text in texts]]
    if not offsets:
        return
    codes = np.array(codes_of_attributes) + np.array(offsets)[:, np.newaxis]
    entry = np.array(entry_of_code, dtype=np.int64)[codes[:, batch.row_lead]]
    flat = tables.entry_columns[entry]  # (attributes, rows)
    flat += np.arange(0, matrix.size, matrix.shape[1])
    matrix.ravel()[flat] = tables.entry_points[entry]


class _EventRules(NamedTuple):
    kinds: list[str]
    points: np.ndarray  # float64 per event type
    once_columns: np.ndarray  # int64: the first-time-only types
    once_points: np.ndarray  # float64: their points
    caps: np.ndarray  # float64 per type, inf when uncapped
    minus_caps: np.ndarray
    minus_half_life: float | None  # None: points never decay


class _AttributeRules(NamedTuple):
    attribute: str
    entry_of: dict[str, int]  # listed value -> its entry
    miss_entry: int  # the entry of a value the table does not list (or a missing one)


class _AttributeTables(NamedTuple):
    rules: list[_AttributeRules]
    entry_columns: np.ndarray  # int64 per entry: its column of the rules matrix
    entry_points: np.ndarray  # float64 per entry: its points (0.0 for a miss)


class _NumberBands(NamedTuple):
    column: str
    start: int  # the first band's column of the rules matrix
    at_least: np.ndarray  # float64 per band
    points: np.ndarray  # float64 per band


@dataclass(frozen=True, eq=False)
class _RuleArrays:
    """A table's rules as arrays, made once per table. Compared by identity: a cached copy on a
    table must not take part in comparing tables."""

    keys: tuple[RuleKey, ...]
    events: _EventRules
    attributes: _AttributeTables
    numbers: list[_NumberBands]


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


def _whole_numbers_as_int(data: Any) -> Any:
    """`5` rather than `5.0` in the YAML marketers read; loading gives the same floats back."""
    if isinstance(data, dict):
        return {key: _whole_numbers_as_int(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_whole_numbers_as_int(value) for value in data]
    if isinstance(data, float) and data.is_integer():
        return int(data)
    return data
