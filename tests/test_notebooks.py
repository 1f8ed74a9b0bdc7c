"""The notebooks run top to bottom on small data, through the real MLflow store."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from models.rules.points import PointsRules
from pipelines.config import LeadscoreConfig
from pipelines.training import run_training
from simulator.funnel import SimulatorConfig, simulate_funnel, write_funnel

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


def _run(name: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("LEADSCORE_WORKDIR", str(workdir))
    monkeypatch.setenv("LEADSCORE_DATA", str(workdir / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    return notebook


def _outputs(notebook: nbformat.NotebookNode, kind: str | None = None) -> list[dict[str, object]]:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if kind is None or kind in output.get("data", {})
    ]


def _text(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))  # type: ignore[attr-defined]
        for output in _outputs(notebook)
    )


@pytest.mark.slow
def test_train_and_evaluate_notebook_runs(
    trained_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = _run("01-train-and-evaluate.ipynb", trained_store, monkeypatch)
    outputs = _text(notebook)
    assert "At the rules' MQL volume" in outputs
    assert "open leads at" in outputs and "   +" in outputs
    assert len(_outputs(notebook, "image/png")) == 2


@pytest.mark.slow
def test_model_vs_rules_notebook_runs(trained_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = _run("02-model-vs-rules.ipynb", trained_store, monkeypatch)
    outputs = _text(notebook)
    assert "leads the model would pass to sales" in outputs
    assert "of the model's lift" in outputs and "mql_threshold:" in outputs
    html = "".join(str(o["data"]["text/html"]) for o in _outputs(notebook, "text/html"))  # type: ignore[index]
    assert "<svg" in html and "reasons_for" in html
