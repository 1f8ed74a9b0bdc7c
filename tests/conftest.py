"""Seeded factories for small, random leads and events; no network, no shared data needed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.config import SnapshotConfig
from features.vocabulary import EVENT_TYPES
from models.rules.points import PointsRules
from models.scoring.scorer import LeadScorer
from models.training.config import TrainConfig
from models.training.train import train_lead_scorer
from pipelines.config import LeadscoreConfig
from pipelines.training import TrainingRun, run_training
from simulator.funnel import SimulatedFunnel, SimulatorConfig, simulate_funnel
from tests.postgres import PostgresServer, PostgresUnavailable, start_postgres

START = pd.Timestamp("2024-01-01", tz="UTC")
TITLES = ["VP Marketing", "Student", "Software Engineer", "CEO", "Head of IT", None, "IT Manager"]
EMAILS = ["a@gmail.com", "b@acme.io", "c@northwind.com", "d@yahoo.com", None]
INDUSTRIES = ["software", "retail", "finance", None]
SIZES = ["1-10", "11-50", "201-1000", "5000+"]
COUNTRIES = ["US", "DE", "FR"]
SOURCES = ["organic_search", "webinar", "referral"]


@dataclass(frozen=True)
class Funnel:
    leads: pd.DataFrame
    events: pd.DataFrame


def random_funnel(n_leads: int = 60, n_events: int = 1_500, seed: int = 0) -> Funnel:
    """Random leads over ~200 days with outcomes, and events spread around them (some at ties)."""
    rng = np.random.default_rng(seed)
    created = START + pd.to_timedelta(rng.integers(0, 200 * 24, n_leads), unit="h")
    outcome = rng.choice([1, 0, -1], size=n_leads, p=[0.3, 0.3, 0.4])
    closed = created + pd.to_timedelta(rng.integers(1, 120 * 24, n_leads), unit="h")
    leads = pd.DataFrame(
        {
            "lead_id": rng.permutation(np.arange(1000, 1000 + n_leads)).astype("int64"),
            "created_at": created,
            "job_title": rng.choice(np.array(TITLES, dtype=object), n_leads),
            "email": rng.choice(np.array(EMAILS, dtype=object), n_leads),
            "industry": rng.choice(np.array(INDUSTRIES, dtype=object), n_leads),
            "company_size": rng.choice(SIZES, n_leads),
            "country": rng.choice(COUNTRIES, n_leads),
            "lead_source": rng.choice(SOURCES, n_leads),
            # Several leads per company; some leads come without one.
            "account_id": pd.array(
                np.where(
                    rng.random(n_leads) < 0.1, None, rng.integers(0, n_leads // 3 + 1, n_leads)
                ),
                dtype="Int64",
            ),
            "converted": pd.array(np.where(outcome < 0, None, outcome), dtype="Int8"),
            "closed_at": pd.Series(closed).where(outcome >= 0),
        }
    )
    owner = rng.integers(0, n_leads, n_events)
    # Whole hours so that some events fall exactly on snapshot times (ties must be excluded).
    offsets = pd.to_timedelta(rng.integers(-5 * 24, 150 * 24, n_events), unit="h")
    events = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy()[owner],
            "ts": leads["created_at"].iloc[owner].reset_index(drop=True) + offsets,
            "event_type": pd.Categorical(
                rng.choice(list(EVENT_TYPES), n_events), categories=list(EVENT_TYPES)
            ),
        }
    )
    return Funnel(leads=leads, events=events)


@pytest.fixture
def funnel_factory() -> Callable[..., Funnel]:
    return random_funnel


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for this test process (each xdist worker has its own);
    the tests that need it skip, with the reason, when it cannot start."""
    try:
        server = start_postgres()
    except PostgresUnavailable as error:
        pytest.skip(f"no PostgreSQL: {error}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The SQLAlchemy URL of a new, empty database on the test PostgreSQL server."""
    return postgres_server.create_database()


def trained_scorer(n_leads: int, seed: int, **train: object) -> tuple[SimulatedFunnel, LeadScorer]:
    """A simulated funnel and the project's model trained on it (default configs unless
    `train` says otherwise), no store."""
    funnel = simulate_funnel(SimulatorConfig(n_leads=n_leads, seed=seed))
    scorer = train_lead_scorer(
        funnel.leads,
        funnel.events,
        features=LeadscoreConfig().features,
        snapshots=SnapshotConfig(observed_until=funnel.observed_until),
        rules=PointsRules.default(),
        config=TrainConfig(**train),  # type: ignore[arg-type]
    ).scorer
    return funnel, scorer


def train_into_store(
    workdir: Path, n_leads: int = 8_000, seed: int = 21, **train: object
) -> tuple[SimulatedFunnel, TrainingRun]:
    """Simulate, train and register one model in the MLflow store under `workdir`."""
    funnel = simulate_funnel(SimulatorConfig(n_leads=n_leads, seed=seed))
    base = LeadscoreConfig(workdir=workdir)
    config = base.model_copy(
        update={
            "snapshots": base.snapshots.model_copy(
                update={"observed_until": funnel.observed_until}
            ),
            "train": base.train.model_copy(update=train),
        }
    )
    return funnel, run_training(funnel.leads, funnel.events, config, PointsRules.default())
