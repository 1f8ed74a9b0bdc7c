"""A snapshot-export model behind a real `leadscore serve`: /predict on export rows, and the
marketer page /compare rendered in a real headless Chromium."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig
from features.snapshot import empty_events, load_snapshot_table
from features.vocabulary import CONVERTED, LEAD_ID
from models.reports.comparison import holdout_comparison
from models.rules.points import PointsRules
from pipelines.config import LeadscoreConfig
from pipelines.training import TrainingRun, run_snapshot_training
from tests.browser import dump_dom, elements_by_id, image_stats, require_chromium, screenshot
from tests.server import RunningServer, serving, wait_for
from tests.test_snapshot import DATASET, RULES, snapshot_export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingRun, pd.DataFrame]:
    workdir = tmp_path_factory.mktemp("snapshot_store")
    export = snapshot_export(3_000, seed=8)
    path = workdir / "export.csv"
    export.to_csv(path, index=False)
    config = LeadscoreConfig(dataset=DATASET, workdir=workdir)
    config = config.model_copy(
        update={"train": config.train.model_copy(update={"strategy": "walk_forward"})}
    )
    table = load_snapshot_table(path, config.dataset, FeatureConfig())
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        run = run_snapshot_training(table, config, PointsRules.model_validate(RULES))
    return workdir, run, export


@pytest.fixture(scope="module")
def server(store: tuple[Path, TrainingRun, pd.DataFrame]) -> Iterator[RunningServer]:
    workdir, _, _ = store
    env = {"LEADSCORE_SERVE_PREDICTION_LOG_URL": f"sqlite:///{workdir / 'predictions.db'}"}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        with serving(workdir, env) as running:
            wait_for(f"{running.base}/ready", running.process)
            yield running


def _rows(export: pd.DataFrame, n: int) -> list[dict[str, object]]:
    """Export rows as an app sends them: the export's own column names, no label, no events."""
    rows = export.drop(columns=["Won", "Rep Note"]).head(n).rename(columns={"Prospect": LEAD_ID})
    out = []
    for row in rows.to_dict("records"):
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        # Unknown visits are blank in the export and null in JSON.
        clean["Visits"] = float(clean["Visits"]) if clean["Visits"] not in (None, "") else None
        out.append(clean)
    return out


def test_predict_answers_export_rows_as_batch_scoring_does(
    server: RunningServer, store: tuple[Path, TrainingRun, pd.DataFrame]
) -> None:
    workdir, run, export = store
    rows = _rows(export, 40)
    single = httpx.post(f"{server.base}/predict", json=rows[0], timeout=30)
    assert single.status_code == 200, single.text
    batch = httpx.post(f"{server.base}/predict", json={"leads": rows}, timeout=30)
    assert batch.status_code == 200, batch.text
    answers = {a["lead_id"]: a for a in batch.json()["predictions"]}
    assert single.json()["predictions"][0] == {
        **answers[rows[0][LEAD_ID]],  # type: ignore[index]
        "as_of": single.json()["predictions"][0]["as_of"],
    }

    csv = workdir / "export.csv"
    table = load_snapshot_table(csv, DATASET, FeatureConfig(), trained=run.result.scorer.features)
    leads = table.leads.set_index(LEAD_ID).loc[[r[LEAD_ID] for r in rows]].reset_index()
    expected = run.result.scorer.score(leads, empty_events(leads[LEAD_ID]))
    for _, want in expected.iterrows():
        got = answers[want[LEAD_ID]]
        assert got["probability"] == pytest.approx(want["probability"], abs=1e-12)
        assert got["rule_score"] == want["rule_score"] and got["tier"] == want["tier"]
        assert got["reasons"] == want["reasons"]

    not_a_number = {**rows[1], "Minutes on site": "a lot"}
    refused = httpx.post(f"{server.base}/predict", json=not_a_number, timeout=30)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "Minutes on site"]


def test_compare_page_renders_in_chromium_with_the_key_numbers(
    server: RunningServer, store: tuple[Path, TrainingRun, pd.DataFrame], tmp_path: Path
) -> None:
    require_chromium()
    _, run, _ = store
    comparison = holdout_comparison(run.result.holdout, run.result.scorer)
    equal = comparison.equal_volume

    dom = dump_dom(f"{server.base}/compare")
    found = elements_by_id(dom)
    assert float(found["model-rate"].attrs["data-value"]) == pytest.approx(
        equal.model.conversion_rate, abs=1e-9
    )
    assert float(found["rules-rate"].attrs["data-value"]) == pytest.approx(
        equal.rules.conversion_rate, abs=1e-9
    )
    assert f"{equal.model.conversion_rate:.1%}" in dom
    assert "Referral" in dom  # the source filter and table

    # Filtered by source from the address, the numbers are those of that source's leads.
    referral = dump_dom(f"{server.base}/compare?source=Referral")
    filtered = elements_by_id(referral)
    holdout = run.result.holdout
    in_view = holdout[holdout["Source"] == "Referral"]
    assert filtered["filter-state"].attrs["data-ready"] == "yes", "the page's script did not run"
    assert int(float(filtered["sel-leads"].attrs["data-value"])) == len(in_view)
    assert int(float(filtered["sel-converted"].attrs["data-value"])) == in_view[CONVERTED].sum()

    shot = screenshot(f"{server.base}/compare", tmp_path / "compare.png")
    stats = image_stats(shot)
    assert stats.distinct_colours > 50 and stats.non_white_share > 0.04

    download = httpx.get(f"{server.base}/compare.csv", timeout=30)
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    listed = pd.read_csv(io.StringIO(download.text))
    assert len(listed) == comparison.n_leads
    assert set(listed["lead_id"]) == set(holdout[LEAD_ID])
    assert np.isclose(listed[CONVERTED].mean(), comparison.base_rate)
