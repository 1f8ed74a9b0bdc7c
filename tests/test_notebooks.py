"""The notebooks run top to bottom on small data, through the real MLflow store."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from features.simulator import SimulatorConfig, simulate_funnel, write_funnel
from models.points import PointsRules
from pipelines.config import LeadscoreConfig
from pipelines.training import run_training

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("notebook_store")
    funnel = simulate_funnel(SimulatorConfig(n_leads=8_000, seed=21))
    write_funnel(funnel, workdir / "data")
    config = LeadscoreConfig(workdir=workdir)
    config = config.model_copy(
        update={
            "snapshots": config.snapshots.model_copy(
                update={"observed_until": funnel.observed_until}
            )
        }
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        run_training(funnel.leads, funnel.events, config, PointsRules.default())
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01-train-and-evaluate.ipynb"])
def test_notebook_runs(name: str, trained_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_WORKDIR", str(trained_store))
    monkeypatch.setenv("LEADSCORE_DATA", str(trained_store / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    outputs = "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "At the rules' MQL volume" in outputs
    assert "open leads at" in outputs and "   +" in outputs
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == 2
