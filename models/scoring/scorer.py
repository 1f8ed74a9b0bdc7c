"""The one scoring path: features -> learner (LightGBM or logistic) -> calibration -> MQL policy,
rules, reasons.

`LeadScorer.score_batch` scores a `LeadBatch` (features.batch), the kernel's one input, for one
lead or a million: the API and the pyfunc bundle reach it from records, batch scoring, training
and the notebooks from frames. So what is served is exactly what was evaluated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.batch import LeadBatch, batch_from_frames, batch_from_records
from features.build import (
    FeatureMatrix,
    category_features,
    check_lead_columns,
    feature_matrix,
    lead_columns,
)
from features.config import FeatureConfig
from features.fit import TITLE_FEATURES, LeadValues
from features.pointintime import AS_OF
from features.vocabulary import LEAD_ID
from models.rules.points import RULE_MQL, RULE_SCORE, PointsRules, check_rule_columns
from models.scoring.learners import Learner, LearnerMismatch, load_learner
from models.scoring.reasons import ReasonWriter
from models.training.calibration import Calibrator
from models.training.policy import MQLPolicy

logger = logging.getLogger(__name__)

SCORE_COLUMNS: tuple[str, ...] = (
    LEAD_ID,
    AS_OF,
    "probability",
    "mql",
    "tier",
    "threshold",
    RULE_SCORE,
    RULE_MQL,
    "reasons",
    "model_version",
)
_SCORER_FILE = "scorer.json"
_RULES_FILE = "points_rules.yaml"
_CHECK_FILE = "check_rows.npz"
# Feature rows kept with a bundle to check, when it loads, that its learner still gives the raw
# scores it gave at training and that the reason tables add up to them.
CHECK_ROWS = 256
CHECK_TOLERANCE = 1e-9


class ScoresDisagree(ValueError):
    """A loaded model does not score its stored rows as it did when saved: refuse to serve."""


@dataclass(frozen=True)
class ScoredBatch:
    """One entry per scored row of a batch: the fields of `SCORE_COLUMNS`, and with
    `monitored` the monitored feature values (for the prediction log)."""

    columns: dict[str, Any]
    monitored: list[dict[str, float]] | None = None

    def frame(self) -> pd.DataFrame:
        moments = pd.DatetimeIndex(np.asarray(self.columns[AS_OF]).view("datetime64[ns]"))
        return pd.DataFrame({**self.columns, AS_OF: moments.tz_localize("UTC")})

    def records(self) -> list[dict[str, Any]]:
        """One dict per row, Python values (cheaper than a frame's to_dict); `as_of` as a
        pandas Timestamp."""
        # One Timestamp per distinct moment: a request's leads mostly share theirs.
        as_of = np.asarray(self.columns[AS_OF]).tolist()
        made = {ns: pd.Timestamp(ns, tz="UTC") for ns in set(as_of)}
        moments = [made[ns] for ns in as_of]
        columns = {**self.columns, AS_OF: moments}
        names = list(columns)
        rows = zip(
            *(
                value.tolist() if isinstance(value, np.ndarray) else value
                for value in columns.values()
            ),
            strict=True,
        )
        out = [dict(zip(names, row, strict=True)) for row in rows]
        if self.monitored is not None:
            for record, values in zip(out, self.monitored, strict=True):
                record["features"] = values
        return out


@dataclass
class LeadScorer:
    """Everything needed to score a lead, saved and loaded as one folder."""

    learner: Learner  # LightGBM or the binned logistic model: whichever won at training
    calibrator: Calibrator
    policy: MQLPolicy
    rules: PointsRules
    features: FeatureConfig  # with the category levels seen in training
    horizon_days: int
    feature_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    model_version: str = "unregistered"
    # Feature rows saved with the bundle and checked against its learner when it loads.
    check_rows: np.ndarray | None = None

    @cached_property
    def reason_writer(self) -> ReasonWriter:
        return ReasonWriter(self.feature_names, self.features, top_k=3)

    # --- the kernel's model side ---

    def feature_matrix(self, batch: LeadBatch, values: LeadValues | None = None) -> FeatureMatrix:
        return feature_matrix(batch, self.features, values, self.feature_names)

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        """The served raw score (log-odds) of feature rows: the sum of the learner's
        contributions (`explained`)."""
        return self.explained(matrix)[0]

    def explained(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores and the contributions that make them, from one pass: each raw score is
        its row of contributions summed. For LightGBM those are `treecontrib`'s tables, which
        `check` holds to LightGBM's own prediction (within CHECK_TOLERANCE) before a model is
        served; computing them once also spares a second pass over the trees per request."""
        contributions = self.learner.contributions(matrix)
        raw: np.ndarray = contributions.sum(axis=1)
        return raw, contributions

    def score_batch(
        self, batch: LeadBatch, *, with_reasons: bool = True, with_monitored: bool = False
    ) -> ScoredBatch:
        """Scores of every row of `batch`, in order."""
        values = LeadValues(batch, self.features)
        matrix = self.feature_matrix(batch, values)
        raw, contributions = self.explained(matrix.values)
        probability = self.calibrator.apply(raw)
        rule_score = self.rules.score_batch(batch, values)
        reasons: list[Any] = [None] * batch.n_rows
        if with_reasons:
            reasons = self._reasons(matrix, contributions)
        columns: dict[str, Any] = {
            LEAD_ID: batch.lead_ids[batch.row_lead],
            AS_OF: batch.as_of_ns,
            "probability": probability,
            "mql": self.policy.mql(probability),
            "tier": self.policy.tiers(probability),
            "threshold": np.full(batch.n_rows, self.policy.threshold),
            RULE_SCORE: rule_score,
            RULE_MQL: rule_score >= self.rules.mql_threshold,
            "reasons": reasons,
            "model_version": [self.model_version] * batch.n_rows,
        }
        monitored = None
        if with_monitored:
            names = list(self.metadata.get("monitored_features", []))
            picked = matrix.values[:, [matrix.position[n] for n in names]].tolist()
            monitored = [dict(zip(names, row, strict=True)) for row in picked]
        return ScoredBatch(columns, monitored)

    def _reasons(
        self, matrix: FeatureMatrix, contributions: np.ndarray
    ) -> list[dict[str, list[dict[str, object]]]]:
        shown = _Shown(matrix)
        return [
            {side: [reason.as_dict() for reason in found] for side, found in lead.items()}
            for lead in self.reason_writer.reasons_batch(contributions, shown)
        ]

    # --- adapters: records and frames into the kernel ---

    def score_records(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        now: pd.Timestamp | None = None,
        with_reasons: bool = True,
        with_monitored: bool = False,
    ) -> ScoredBatch:
        """One lead per record (API bodies, pyfunc rows): attributes, `created_at`, optional
        `as_of` (default `now`) and `events`."""
        moment = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        batch = batch_from_records(
            records, int(moment.value), with_created=self.features.source == "events"
        )
        return self.score_batch(batch, with_reasons=with_reasons, with_monitored=with_monitored)

    def score_snapshots(
        self,
        spine: pd.DataFrame,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        *,
        with_reasons: bool = True,
    ) -> pd.DataFrame:
        """Scores (columns SCORE_COLUMNS) for each (lead_id, as_of) of `spine`, in spine order,
        from a leads table and an event log."""
        scored = self.score_batch(self.batch_at(spine, leads, events), with_reasons=with_reasons)
        return scored.frame()

    def batch_at(self, spine: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame) -> LeadBatch:
        """The kernel's input for snapshots of a leads table (columns checked, clear errors)."""
        check_lead_columns(leads, self.features)
        check_rule_columns(self.rules, leads, self.features)
        return batch_from_frames(spine[[LEAD_ID, AS_OF]].reset_index(drop=True), leads, events)

    def score(
        self,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        as_of: pd.Timestamp | None = None,
        *,
        with_reasons: bool = True,
    ) -> pd.DataFrame:
        """Score every lead at `as_of` (default: now), or at its own `as_of` column if present."""
        if AS_OF in leads.columns:
            moments = pd.to_datetime(leads[AS_OF], utc=True)
        else:
            moment = pd.Timestamp.now(tz="UTC") if as_of is None else pd.Timestamp(as_of)
            moments = pd.Series(moment, index=leads.index)
        spine = pd.DataFrame(
            {LEAD_ID: leads[LEAD_ID].to_numpy(), AS_OF: moments.dt.tz_convert("UTC").array}
        )
        spine[AS_OF] = spine[AS_OF].dt.as_unit("ns")
        return self.score_snapshots(
            spine, leads.drop(columns=[AS_OF], errors="ignore"), events, with_reasons=with_reasons
        )

    # --- the bundle's folder ---

    def check(self) -> None:
        """The learner scores the stored rows as it did at training, and its contributions (the
        reasons) add up to those scores, within CHECK_TOLERANCE; otherwise `ScoresDisagree`."""
        levels = self.features.category_levels or {}
        expected_levels = [
            list(TITLE_FEATURES[name]) if name in TITLE_FEATURES else levels.get(name)
            for name in category_features(self.features)
        ]
        try:
            self.learner.check_levels(expected_levels)
        except LearnerMismatch as exc:
            raise ScoresDisagree(f"{exc}: refusing to serve it") from exc
        if self.check_rows is None or not len(self.check_rows):
            logger.warning("model %s has no stored rows to check its scores", self.model_version)
            return
        rows, expected = self.check_rows[:, :-1], self.check_rows[:, -1]
        learner = self.learner.raw_scores(rows)
        served = self.raw_scores(rows)
        for what, got in ((self.learner.kind, learner), ("the served contributions", served)):
            gap = float(np.max(np.abs(got - expected)))
            if not gap <= CHECK_TOLERANCE:
                raise ScoresDisagree(
                    f"{what} score the model's stored rows up to {gap:.3g} away from the scores "
                    "at training: refusing to serve it (was a library upgraded?)"
                )

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.learner.save(folder)
        (folder / _RULES_FILE).write_text(self.rules.to_yaml())
        state = {
            "learner": self.learner.kind,
            "calibrator": self.calibrator.to_dict(),
            "policy": self.policy.to_dict(),
            "features": self.features.model_dump(mode="json"),
            "horizon_days": self.horizon_days,
            "feature_names": self.feature_names,
            "metadata": self.metadata,
        }
        (folder / _SCORER_FILE).write_text(json.dumps(state, indent=2, default=str))
        if self.check_rows is not None:
            np.savez(folder / _CHECK_FILE, rows=self.check_rows)
        return folder

    def with_check_rows(self, rows: np.ndarray) -> None:
        """Keep (up to CHECK_ROWS of) these feature rows and the learner's own raw scores of
        them (LightGBM's prediction, not the tables)."""
        rows = np.asarray(rows, dtype=np.float64)[:CHECK_ROWS]
        self.check_rows = np.column_stack([rows, self.learner.raw_scores(rows)])

    @classmethod
    def load(cls, folder: Path, *, model_version: str = "unregistered") -> LeadScorer:
        """The saved scorer, checked (`check`) before it is handed out."""
        state = json.loads((folder / _SCORER_FILE).read_text())
        check = folder / _CHECK_FILE
        scorer = cls(
            learner=load_learner(folder, state.get("learner", "lightgbm")),
            calibrator=Calibrator.from_dict(state["calibrator"]),
            policy=MQLPolicy.from_dict(state["policy"]),
            rules=PointsRules.from_yaml(folder / _RULES_FILE),
            features=FeatureConfig.model_validate(state["features"]),
            horizon_days=int(state["horizon_days"]),
            feature_names=list(state["feature_names"]),
            metadata=dict(state["metadata"]),
            model_version=model_version,
            check_rows=np.load(check)["rows"] if check.exists() else None,
        )
        scorer.check()
        return scorer


class _Shown(Mapping[str, np.ndarray]):
    """A matrix's features as the reasons read them, each made when first asked for: the
    reasons name only a few."""

    def __init__(self, matrix: FeatureMatrix) -> None:
        self._matrix = matrix

    def __getitem__(self, name: str) -> np.ndarray:
        return self._matrix.shown(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._matrix.names)

    def __len__(self) -> int:
        return len(self._matrix.names)

    def __contains__(self, name: object) -> bool:
        return name in self._matrix.position


def lead_columns_needed(scorer: LeadScorer) -> list[str]:
    """The lead attributes a caller must send (others are ignored)."""
    return lead_columns(scorer.features)
