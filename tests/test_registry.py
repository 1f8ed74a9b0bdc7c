"""MLflow for real: a SQLite store in a temporary folder, runs, registry aliases, pyfunc, CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from models.registry import CHALLENGER, CHAMPION, load_scorer, tracking_uri, use_tracking
from models.rules.points import PointsRules
from models.scoring.bundle import request_example
from models.scoring.scorer import lead_columns_needed
from pipelines.cli import app
from pipelines.config import LeadscoreConfig
from pipelines.training import TrainingRun, run_training
from simulator.funnel import SimulatedFunnel, SimulatorConfig, simulate_funnel, write_funnel

NAME = "leadscore"
runner = CliRunner()


@pytest.fixture(scope="module")
def funnel() -> SimulatedFunnel:
    return simulate_funnel(SimulatorConfig(n_leads=12_000, seed=11))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield folder


def settings(workdir: Path, funnel: SimulatedFunnel, **train: object) -> LeadscoreConfig:
    base = LeadscoreConfig(workdir=workdir)
    return base.model_copy(
        update={
            "snapshots": base.snapshots.model_copy(
                update={"observed_until": funnel.observed_until}
            ),
            "train": base.train.model_copy(update=train),
        }
    )


@pytest.fixture(scope="module")
def first(workdir: Path, funnel: SimulatedFunnel) -> TrainingRun:
    return run_training(
        funnel.leads, funnel.events, settings(workdir, funnel), PointsRules.default()
    )


def champion_version() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, CHAMPION).version)


def test_first_model_becomes_champion_with_everything_logged(
    first: TrainingRun, workdir: Path
) -> None:
    assert (workdir / "mlflow.db").exists() and (workdir / "mlartifacts").is_dir()
    assert first.registration.alias == CHAMPION and champion_version() == first.registration.version
    run = mlflow.get_run(first.registration.run_id)
    assert {"model_roc_auc", "rules_roc_auc", "model_ece", "equal_volume_conversion_ratio"} <= set(
        run.data.metrics
    )
    assert run.data.params["calibration"] in ("isotonic", "sigmoid")
    assert len(run.data.tags["data_fingerprint"]) == 64
    assert run.inputs.dataset_inputs[0].dataset.name == "training_snapshots"
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "evaluation")}
    assert {
        "evaluation/summary.html",
        "evaluation/reliability.png",
        "evaluation/gain_lift.png",
        "evaluation/evaluation.json",
    } <= artifacts
    config = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config.json")
    assert config["snapshots"]["horizon_days"] == 90


def test_pyfunc_answers_exactly_what_the_scorer_answers(
    first: TrainingRun, funnel: SimulatedFunnel
) -> None:
    scorer = first.result.scorer
    rows = request_example(
        funnel.leads, funnel.events, lead_columns_needed(scorer), n=25, max_events=None
    )
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}")
    served = model.predict(rows)
    leads = funnel.leads.set_index("lead_id").loc[rows["lead_id"].astype(int)].reset_index()
    spine = pd.DataFrame(
        {"lead_id": leads["lead_id"], "as_of": pd.to_datetime(rows["as_of"], utc=True)}
    )
    spine["as_of"] = spine["as_of"].dt.as_unit("ns")
    direct = scorer.score_snapshots(spine, funnel.leads, funnel.events)
    np.testing.assert_allclose(served["probability"], direct["probability"], rtol=1e-12)
    assert served["tier"].tolist() == direct["tier"].tolist()
    assert [json.loads(r) for r in served["reasons"]] == direct["reasons"].tolist()
    assert served["rule_score"].to_numpy() == pytest.approx(direct["rule_score"].to_numpy())


def test_same_data_again_is_not_worse_so_it_takes_champion(
    first: TrainingRun, workdir: Path, funnel: SimulatedFunnel
) -> None:
    again = run_training(
        funnel.leads, funnel.events, settings(workdir, funnel), PointsRules.default()
    )
    assert again.registration.alias == CHAMPION
    assert champion_version() == again.registration.version != first.registration.version


def test_worse_model_stays_challenger_and_promote_moves_the_alias(
    first: TrainingRun, workdir: Path, funnel: SimulatedFunnel
) -> None:
    before = champion_version()
    weak = settings(workdir, funnel).train.lightgbm.model_copy(
        update={"max_rounds": 2, "num_leaves": 2, "learning_rate": 0.01}
    )
    worse = run_training(
        funnel.leads,
        funnel.events,
        settings(workdir, funnel, lightgbm=weak),
        PointsRules.default(),
    )
    assert worse.registration.alias == CHALLENGER, worse.registration.reason
    assert champion_version() == before
    assert worse.registration.champion_metrics is not None

    result = runner.invoke(app, ["promote", "--version", worse.registration.version],
                           env={"LEADSCORE_WORKDIR": str(workdir)})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert champion_version() == worse.registration.version
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, CHALLENGER).version) == before
    client.set_registered_model_alias(NAME, CHAMPION, before)  # back, for the next tests

    result = runner.invoke(app, ["promote", "--version", "999"],
                           env={"LEADSCORE_WORKDIR": str(workdir)})  # fmt: skip
    assert result.exit_code == 2 and "no version 999" in result.output


def test_a_run_that_fails_late_never_moves_champion(
    first: TrainingRun, workdir: Path, funnel: SimulatedFunnel, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = champion_version()

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("models.registry.store.decide_alias", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(funnel.leads, funnel.events, settings(workdir, funnel), PointsRules.default())
    assert champion_version() == before
    runs = mlflow.search_runs(experiment_names=["leadscore"], order_by=["start_time DESC"])
    parent = "tags.mlflow.parentRunId"
    runs = runs[runs[parent].isna()] if parent in runs else runs  # not the candidates' runs
    assert runs.iloc[0]["status"] in ("FAILED", "KILLED")


def _versions() -> list[str]:
    return sorted(str(v.version) for v in MlflowClient().search_model_versions(f"name='{NAME}'"))


@pytest.mark.parametrize(
    "where",
    [
        "mlflow.pyfunc.log_model",  # inside the run, after the model is logged: nothing to undo
        "models.registry.store.MlflowClient.set_registered_model_alias",  # after registration
    ],
)
def test_an_interrupted_run_leaves_no_version_and_the_champion_as_it_was(
    first: TrainingRun,
    workdir: Path,
    funnel: SimulatedFunnel,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """A version exists only for a run that finished and got its alias: none is left READY by
    a failed run, to be scored or promoted by mistake."""
    before, versions = champion_version(), _versions()
    real = mlflow.pyfunc.log_model

    def interrupted(*args: object, **kwargs: object) -> object:
        if where == "mlflow.pyfunc.log_model":
            real(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(where, interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_training(funnel.leads, funnel.events, settings(workdir, funnel), PointsRules.default())
    monkeypatch.undo()
    assert champion_version() == before
    assert _versions() == versions
    # And the re-run succeeds.
    again = run_training(
        funnel.leads, funnel.events, settings(workdir, funnel), PointsRules.default()
    )
    assert again.registration.version and again.registration.version not in versions
    run = MlflowClient().get_run(again.registration.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_version"] == again.registration.version


def test_ctrl_c_is_one_line_and_exit_130(
    workdir: Path, funnel: SimulatedFunnel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data"
    write_funnel(funnel, folder)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("pipelines.training.log_and_register", interrupted)
    monkeypatch.setenv("LEADSCORE_WORKDIR", str(workdir))
    result = runner.invoke(app, ["train", "--data", str(folder)])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output and "Traceback" not in result.output


def test_score_command_goes_through_the_registered_bundle(
    first: TrainingRun, workdir: Path, funnel: SimulatedFunnel, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_funnel(funnel, data)
    leads = pd.read_parquet(data / "leads.parquet").head(300)
    leads.drop(columns=["converted", "closed_at"]).to_csv(tmp_path / "open.csv", index=False)
    out = tmp_path / "scored.csv"
    as_of = "2025-03-01T00:00:00Z"
    result = runner.invoke(
        app,
        ["score", "--input", str(tmp_path / "open.csv"), "--events",
         str(data / "events.parquet"), "--output", str(out), "--as-of", as_of],
        env={"LEADSCORE_WORKDIR": str(workdir)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert list(scored.columns) == [
        "lead_id", "as_of", "probability", "mql", "tier", "threshold", "rule_score",
        "rule_mql", "reasons", "model_version",
    ]  # fmt: skip
    assert scored["model_version"].astype(str).eq(champion_version()).all()
    scorer = load_scorer(f"models:/{NAME}@{CHAMPION}")
    direct = scorer.score(funnel.leads.head(300), funnel.events, pd.Timestamp(as_of))
    np.testing.assert_allclose(scored["probability"], direct["probability"], rtol=1e-9)
    assert (
        json.loads(scored["reasons"].iloc[0])["for"]
        or json.loads(scored["reasons"].iloc[0])["against"]
    )


def test_score_without_a_model_is_one_clear_error(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,created_at\n1,2024-01-01T00:00:00Z\n")
    out = tmp_path / "scored.csv"
    command = ["score", "--input", str(leads), "--output", str(out)]
    # No store where training would have made one.
    result = runner.invoke(app, command, env={"LEADSCORE_WORKDIR": str(tmp_path / "empty")})
    assert result.exit_code == 2 and "no MLflow store at" in result.output, result.output
    # A store, without any model.
    store = tmp_path / "store"
    store.mkdir()
    use_tracking(store)
    MlflowClient().search_experiments()  # makes the store's tables
    result = runner.invoke(app, command, env={"LEADSCORE_WORKDIR": str(store)})
    assert result.exit_code == 2 and "cannot load model" in result.output, result.output
    assert not out.exists()


def test_tracking_uri_environment_variable_wins(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/team.db")
    assert tracking_uri(workdir) == f"sqlite:///{tmp_path}/team.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri(workdir) == f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    # Choosing a store must not look like the user's choice afterwards.
    use_tracking(tmp_path)
    assert tracking_uri(workdir) == f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    use_tracking(workdir)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_mlflow_models_serve_answers_like_the_scorer(
    first: TrainingRun, workdir: Path, funnel: SimulatedFunnel
) -> None:
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri(workdir),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@{CHAMPION}",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.5)
        rows = request_example(
            funnel.leads, funnel.events, lead_columns_needed(first.result.scorer), n=5
        )
        # What apps send too: a value no model saw, missing attributes, one lead id twice.
        odd = rows.iloc[[0, 1, 1]].copy()
        odd["company_size"] = ["Enterprise", None, None]
        odd["job_title"] = [None, "VP Marketing", "VP Marketing"]
        rows = pd.concat([rows, odd], ignore_index=True)
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_split": json.loads(rows.to_json(orient="split", index=False))},
            timeout=60,
        )
        assert response.status_code == 200, response.text[:2000]
        served = response.json()["predictions"]
        # The same leads through the kernel's records adapter, as the API scores them.
        records = [{str(k): v for k, v in r.items()} for r in rows.to_dict("records")]
        expected = first.result.scorer.score_records(records).records()
        assert len(served) == len(expected) == 8
        for got, want in zip(served, expected, strict=True):
            for field in ("probability", "mql", "tier", "rule_score", "rule_mql"):
                assert got[field] == want[field], field
            assert json.loads(got["reasons"]) == want["reasons"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
