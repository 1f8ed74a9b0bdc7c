"""The one scoring path: features -> LightGBM -> calibration -> MQL policy, rules, reasons.

Batch scoring, the pyfunc bundle, the API and the notebooks all call `LeadScorer`, so what is
served is exactly what was evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.build import build_features_at
from features.config import FeatureConfig
from features.pointintime import AS_OF
from features.vocabulary import CREATED_AT, LEAD_ID
from models.calibration import Calibrator
from models.explain import ReasonWriter
from models.points import RULE_MQL, RULE_SCORE, PointsRules
from models.policy import MQLPolicy
from models.treecontrib import ContributionTables, build_tables, lightgbm_matrix

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
_BOOSTER_FILE = "booster.txt"
_SCORER_FILE = "scorer.json"
_RULES_FILE = "points_rules.yaml"


@dataclass
class LeadScorer:
    """Everything needed to score a lead, saved and loaded as one folder."""

    booster: lgb.Booster
    calibrator: Calibrator
    policy: MQLPolicy
    rules: PointsRules
    features: FeatureConfig  # with the category levels seen in training
    horizon_days: int
    feature_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    model_version: str = "unregistered"
    num_threads: int = 1

    @cached_property
    def reason_writer(self) -> ReasonWriter:
        return ReasonWriter(self.feature_names, self.features, top_k=3)

    def feature_frame(
        self, spine: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame
    ) -> pd.DataFrame:
        return build_features_at(spine, leads, events, self.features)

    @cached_property
    def contribution_tables(self) -> ContributionTables:
        """LightGBM's pred_contrib, exactly, from tables built once per model (well under a
        second): many times faster than TreeSHAP per row (models.treecontrib)."""
        return build_tables(self.booster)

    def contributions(self, features: pd.DataFrame) -> np.ndarray:
        """Per row, each feature's raw log-odds contribution, then the bias (as pred_contrib)."""
        matrix = lightgbm_matrix(self.booster, features[self.feature_names])
        return np.asarray(self.contribution_tables.predict(matrix))

    def raw_scores(
        self, features: pd.DataFrame, contributions: np.ndarray | None = None
    ) -> np.ndarray:
        # The sum of the contributions (bias included): one definition of the score for every
        # path, and free once the reasons need the contributions anyway.
        if contributions is None:
            contributions = self.contributions(features)
        return np.asarray(contributions.sum(axis=1))

    def probabilities(
        self, features: pd.DataFrame, contributions: np.ndarray | None = None
    ) -> np.ndarray:
        return self.calibrator.apply(self.raw_scores(features, contributions))

    def reasons(
        self, features: pd.DataFrame, contributions: np.ndarray | None = None
    ) -> list[dict[str, list[dict[str, object]]]]:
        if contributions is None:
            contributions = self.contributions(features)
        return [
            {side: [reason.as_dict() for reason in found] for side, found in lead.items()}
            for lead in self.reason_writer.reasons_batch(
                contributions, features[self.feature_names]
            )
        ]

    def score_features(
        self,
        features: pd.DataFrame,
        rules: pd.DataFrame,
        *,
        with_reasons: bool = True,
        with_monitored: bool = False,
    ) -> pd.DataFrame:
        """Scores (columns SCORE_COLUMNS) of built feature rows and their rules' points, in
        order; with `with_monitored`, also `features`: the monitored feature values, for the
        log."""
        contributions = self.contributions(features)
        probability = self.probabilities(features, contributions)
        scored = pd.DataFrame(
            {
                LEAD_ID: features[LEAD_ID].to_numpy(),
                AS_OF: features[AS_OF].array,
                "probability": probability,
                "mql": self.policy.mql(probability),
                "tier": self.policy.tiers(probability),
                "threshold": self.policy.threshold,
                RULE_SCORE: rules[RULE_SCORE].to_numpy(),
                RULE_MQL: rules[RULE_MQL].to_numpy(),
                "reasons": self.reasons(features, contributions) if with_reasons else None,
                "model_version": self.model_version,
            }
        )
        if with_monitored:
            monitored = list(self.metadata.get("monitored_features", []))
            scored["features"] = pd.Series(
                features[monitored].to_dict("records"), index=scored.index, dtype=object
            )
        return scored

    def score_snapshots(
        self,
        spine: pd.DataFrame,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        *,
        with_reasons: bool = True,
        with_monitored: bool = False,
    ) -> pd.DataFrame:
        """Scores for each (lead_id, as_of) of `spine`, in spine order: see `score_features`."""
        return self.score_features(
            self.feature_frame(spine, leads, events),
            self.rules.score(spine, leads, events, self.features),
            with_reasons=with_reasons,
            with_monitored=with_monitored,
        )

    def score(
        self,
        leads: pd.DataFrame,
        events: pd.DataFrame,
        as_of: pd.Timestamp | None = None,
        *,
        with_reasons: bool = True,
        with_monitored: bool = False,
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
            spine,
            leads.drop(columns=[AS_OF], errors="ignore"),
            events,
            with_reasons=with_reasons,
            with_monitored=with_monitored,
        )

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / _BOOSTER_FILE))
        (folder / _RULES_FILE).write_text(self.rules.to_yaml())
        state = {
            "calibrator": self.calibrator.to_dict(),
            "policy": self.policy.to_dict(),
            "features": self.features.model_dump(mode="json"),
            "horizon_days": self.horizon_days,
            "feature_names": self.feature_names,
            "metadata": self.metadata,
        }
        (folder / _SCORER_FILE).write_text(json.dumps(state, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: Path, *, model_version: str = "unregistered") -> LeadScorer:
        state = json.loads((folder / _SCORER_FILE).read_text())
        return cls(
            booster=lgb.Booster(model_file=str(folder / _BOOSTER_FILE)),
            calibrator=Calibrator.from_dict(state["calibrator"]),
            policy=MQLPolicy.from_dict(state["policy"]),
            rules=PointsRules.from_yaml(folder / _RULES_FILE),
            features=FeatureConfig.model_validate(state["features"]),
            horizon_days=int(state["horizon_days"]),
            feature_names=list(state["feature_names"]),
            metadata=dict(state["metadata"]),
            model_version=model_version,
        )


def lead_columns_needed(scorer: LeadScorer) -> list[str]:
    """The lead attributes a caller must send (others are ignored)."""
    config = scorer.features
    return [
        LEAD_ID,
        *([CREATED_AT] if config.source == "events" else []),
        *(
            c
            for c in (config.title_column, config.email_column, config.account_column)
            if c is not None
        ),
        *config.categorical_columns,
        *config.numeric_columns,
    ]
