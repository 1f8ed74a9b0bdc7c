"""The model being served, swapped atomically when the registry's alias moves."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient

from features.contract import DataContractError
from models.registry import load_holdout, load_scorer
from models.reports.comparison import comparison_html, holdout_comparison, leads_csv
from models.scoring.scorer import LeadScorer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    scorer: LeadScorer
    version: str
    loaded_at: datetime
    # The model-vs-rules page of the model's holdout and its lead list as CSV, built at load;
    # None when the model's run has no logged holdout.
    comparison_page: str | None = None
    comparison_csv: str | None = None


def holdout_page(scorer: LeadScorer, name: str) -> tuple[str | None, str | None]:
    """The comparison of the model's logged holdout as an HTML page and as a CSV lead list,
    built once per model."""
    try:
        holdout = load_holdout(scorer)
    except DataContractError as exc:
        logger.warning("no /compare page for %s v%s: %s", name, scorer.model_version, exc)
        return None, None
    comparison = holdout_comparison(holdout, scorer, scorer.metadata.get("cost_per_lead") or None)
    page = comparison_html(
        comparison,
        title=f"{name} v{scorer.model_version}: model vs rules on its holdout",
        csv_href="compare.csv",
    )
    return page, leads_csv(comparison)


def _return_free_memory() -> None:
    """Hand the memory the old model freed back to the operating system (glibc keeps it in the
    process otherwise, and the service's memory would step up at each swap)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class ModelHolder:
    """Holds the current model; a new one is loaded beside it and swapped in one assignment,
    so a request always sees one whole model and never waits for a load."""

    def __init__(self, name: str, alias: str) -> None:
        self.name = name
        self.alias = alias
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
            page, csv = holdout_page(scorer, self.name)
            previous = self.current.version if self.current else None
            self.current = LoadedModel(scorer, version, datetime.now(UTC), page, csv)
            logger.info("serving %s v%s (was %s)", self.name, version, previous)
        # The old model is garbage once requests in flight are done with it; with the serving
        # process's rare full collections its cycles would wait long. Collected now, once per
        # swap, in the loading thread.
        gc.collect()
        _return_free_memory()
        return True
