"""The model being served, swapped atomically when the registry's alias moves."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient

from models.fastpath import FastLeadScorer
from models.registry import load_scorer
from models.scorer import LeadScorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    scorer: LeadScorer
    fast: FastLeadScorer | None  # None when the model needs the batch path (account features)
    version: str
    loaded_at: datetime


class ModelHolder:
    """Holds the current model; a new one is loaded beside it and swapped in one assignment,
    so a request always sees one whole model and never waits for a load."""

    def __init__(self, name: str, alias: str, predict_threads: int = 1) -> None:
        self.name = name
        self.alias = alias
        self.predict_threads = predict_threads
        self.current: LoadedModel | None = None
        self._loading = threading.Lock()

    def registered_version(self) -> str:
        return str(MlflowClient().get_model_version_by_alias(self.name, self.alias).version)

    def load_if_changed(self) -> bool:
        """Load the alias's version if it is not the one served; True when it swapped."""
        with self._loading:
            version = self.registered_version()
            if self.current is not None and self.current.version == version:
                return False
            scorer = load_scorer(f"models:/{self.name}/{version}")
            scorer.num_threads = self.predict_threads
            try:
                fast: FastLeadScorer | None = FastLeadScorer(scorer)
            except ValueError:
                fast = None
            previous = self.current.version if self.current else None
            self.current = LoadedModel(scorer, fast, version, datetime.now(UTC))
            logger.info("serving %s v%s (was %s)", self.name, version, previous)
            return True
