"""The publish gate: champion only for a model that beats the rules (and the current champion)
on the newest holdout; a collapsed model is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from models.registry import use_tracking
from models.rules.points import PointsRules
from models.training.gate import CHALLENGER, CHAMPION, HoldoutMetrics, collapsed, decide
from pipelines.cli import app
from pipelines.config import LeadscoreConfig
from pipelines.training import TrainingRun, run_training
from simulator.funnel import SimulatedFunnel, SimulatorConfig, simulate_funnel, write_funnel

runner = CliRunner()


def _labels_and_scores(seed: int, n: int = 4_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a good probability and a weaker one (the rules), on the same leads."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(2 * signal - 2)))).astype(int)
    good = 1 / (1 + np.exp(-(2 * signal - 2)))
    weak = 1 / (1 + np.exp(-(0.7 * (signal + rng.normal(size=n)) - 2)))
    return labels, good, weak


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_gate_asks_every_model_to_beat_the_rules_and_the_champion(seed: int) -> None:
    labels, good, weak = _labels_and_scores(seed)
    first = decide(labels, good, weak, None, tolerance=0.002)
    assert first.alias == CHAMPION and first.reason.startswith("first model")
    assert "beats the rules" in first.reason
    # The first model earns nothing by being first: the rules still have to lose.
    losing = decide(labels, weak, good, None, tolerance=0.002)
    assert losing.alias == CHALLENGER and "does not beat the rules" in losing.reason
    # Better than the rules, worse than the champion.
    champion = ("3", HoldoutMetrics.of(labels, good))
    middle = np.sqrt(good * weak)
    worse = decide(labels, middle, weak, champion, tolerance=0.002)
    assert worse.alias == CHALLENGER and "champion v3" in worse.reason
    assert decide(labels, good, weak, champion, tolerance=0.002).alias == CHAMPION


def test_a_collapsed_model_is_refused_with_the_reason() -> None:
    labels, good, _ = _labels_and_scores(0)
    flat = np.full(len(labels), 0.113)
    assert "1 distinct score" in (collapsed(labels, flat) or "")
    coin = np.random.default_rng(5).random(len(labels))
    assert "no better than chance" in (collapsed(labels, coin) or "")
    assert collapsed(labels, good) is None
    refused = decide(labels, flat, good, None, tolerance=0.002)
    assert refused.refused and refused.alias is None


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("gate-data")
    funnel = simulate_funnel(SimulatorConfig(n_leads=6_000, seed=8))
    write_funnel(funnel, folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield folder


def train_run(workdir: Path, funnel: SimulatedFunnel) -> TrainingRun:
    base = LeadscoreConfig(workdir=workdir)
    snapshots = base.snapshots.model_copy(update={"observed_until": funnel.observed_until})
    config = base.model_copy(update={"snapshots": snapshots})
    return run_training(funnel.leads, funnel.events, config, PointsRules.default())


def _config(folder: Path, **sections: object) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"workdir": str(folder), **sections}))
    return path


def test_require_champion_fails_a_model_that_does_not_earn_it(data: Path, tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = runner.invoke(
        app, ["train", "--data", str(data), "-c", str(config), "--require-champion"]
    )
    output = " ".join(done.output.split())
    assert done.exit_code == 0, output
    assert "v1 as champion (first model under this name; beats the rules (AUC" in output
    # Each candidate is a child run of the training run, the chosen one marked.
    use_tracking(tmp_path)
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("leadscore").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["learner"] for r in children) == ["blend", "lightgbm", "logistic"]
    chosen = [r.data.params["learner"] for r in children if r.data.params["chosen"] == "True"]
    assert chosen == [parent.data.params["learner"]]
    assert all("choice_log_loss" in r.data.metrics for r in children)
    # The same leads, a model that reads no behaviour: worse than the champion it would replace
    # (and than the rules), so registered as challenger; with --require-champion, exit 1.
    weak = _config(
        tmp_path,
        features={
            "event_types": ["email_sent"], "outbound_event_types": ["email_sent"],
            "categorical_columns": ["country"],
        },
    )  # fmt: skip
    done = runner.invoke(app, ["train", "--data", str(data), "-c", str(weak), "--require-champion"])
    output = " ".join(done.output.split())
    assert done.exit_code == 1, output
    assert "v2 as challenger (" in output and "Traceback" not in output
    assert "does not beat the rules" in output or "worse than the current champion" in output
    use_tracking(tmp_path)
    assert str(MlflowClient().get_model_version_by_alias("leadscore", CHAMPION).version) == "1"


def test_a_collapsed_model_is_not_registered(data: Path, tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        train={
            "candidates": ["lightgbm"],
            # Leaves of a million leads: no tree can split, one score for every lead.
            "lightgbm": {"max_rounds": 5, "min_rounds": 1, "min_child_samples": 1_000_000},
        },
    )
    done = runner.invoke(app, ["train", "--data", str(data), "-c", str(config)])
    output = " ".join(done.output.split())
    assert done.exit_code == 1, output
    assert "not registered: leadscore collapsed:" in output and "Traceback" not in output
    use_tracking(tmp_path)
    client = MlflowClient()
    assert client.search_model_versions("name='leadscore'") == []
    runs = client.search_runs([client.get_experiment_by_name("leadscore").experiment_id])
    training = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]  # not candidates
    assert len(training) == 1
    assert training[0].data.tags["alias_decision"].startswith("refused: collapsed")


@pytest.mark.parametrize("seed", [1, 2])
def test_under_a_sixfold_rise_in_conversion_training_warns_and_champion_is_earned(
    seed: int, tmp_path: Path
) -> None:
    """The bar: on a funnel whose conversion rate rises sixfold over the period, training warns
    about the drift, and the model is champion only if it beats the rules on the newest leads."""
    funnel = simulate_funnel(SimulatorConfig(n_leads=12_000, seed=seed, rate_growth=6.0))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        run = train_run(tmp_path, funnel)
    result, registration = run.result, run.registration
    rates = [s.conversion_rate for s in result.drift.slices]
    assert rates[-1] > 1.5 * rates[0], rates
    assert any("conversion rate drifts" in w for w in result.drift.warnings), result.drift
    metrics = result.evaluation.metrics
    beats_rules = (
        metrics["model_roc_auc"] > metrics["rules_roc_auc"]
        and metrics["model_log_loss"] < metrics["rules_log_loss"]
    )
    assert (registration.alias == CHAMPION) == beats_rules, (registration.reason, metrics)
