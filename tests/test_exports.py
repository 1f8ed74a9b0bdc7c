"""What real exports need: separators, ids, codes, labels, undated outcomes, honest as_of."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.config import DatasetConfig, FeatureConfig, LeadColumns, SnapshotConfig
from features.contract import DataContractError, load_events, load_leads, read_table
from features.snapshot import load_snapshot_table
from features.training import make_training_set
from pipelines.cli import app
from pipelines.config import LeadscoreConfig, load_config
from simulator.funnel import SimulatorConfig, simulate_funnel

runner = CliRunner()


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_semicolon_export_is_read_and_a_wrong_separator_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "leads.csv", "id;source;won\n1;Google;yes\n2;Referral;no\n")
    frame = read_table(path)
    assert list(frame.columns) == ["id", "source", "won"] and len(frame) == 2
    with pytest.raises(DataContractError, match=r"reads as one column.*dataset.separator.*';'"):
        read_table(path, separator=",")


def test_every_unexpected_label_value_is_listed_at_once(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "leads.csv",
        "lead_id,created_at,converted\n1,2024-01-01T00:00:00Z,won\n2,2024-01-01T00:00:00Z,Qualified\n"
        "3,2024-01-02T00:00:00Z,maybe\n4,2024-01-02T00:00:00Z,Qualified\n",
    )
    with pytest.raises(DataContractError) as raised:
        load_leads(path, DatasetConfig())
    message = str(raised.value)
    assert (
        "2 label value(s)" in message and "'Qualified' (2)" in message and "'maybe' (1)" in message
    )


def test_date_only_values_need_a_timezone_like_full_timestamps(tmp_path: Path) -> None:
    path = _write(tmp_path, "leads.csv", "lead_id,created_at\n1,2024-01-01\n2,2024-01-02\n")
    with pytest.raises(DataContractError, match="timezone"):
        load_leads(path, DatasetConfig())
    leads = load_leads(path, DatasetConfig(timezone="Europe/Berlin"))
    assert leads["created_at"].iloc[0] == pd.Timestamp("2023-12-31T23:00:00Z")


def test_an_event_log_with_no_usable_type_is_refused_with_the_way_out(tmp_path: Path) -> None:
    leads = load_leads(
        _write(tmp_path, "leads.csv", "lead_id,created_at\n1,2024-01-01T00:00:00Z\n"),
        DatasetConfig(),
    )
    events = _write(
        tmp_path,
        "events.csv",
        "lead_id,ts,event_type\n1,2024-01-02T00:00:00Z,Webinar Joined\n"
        "1,2024-01-03T00:00:00Z,Opened Email\n",
    )
    with pytest.raises(DataContractError, match=r"none of the file's event types.*event_type_map"):
        load_events(events, DatasetConfig(), leads, ["email_open", "webinar_attended"])
    mapped = DatasetConfig(
        event_type_map={"Webinar Joined": "webinar_attended", "Opened Email": "email_open"}
    )
    loaded, _ = load_events(events, mapped, leads, ["email_open", "webinar_attended"])
    assert sorted(loaded["event_type"].astype(str)) == ["email_open", "webinar_attended"]


def test_blanked_tokens_are_reported_not_dropped_unseen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(
        tmp_path,
        "leads.csv",
        "lead_id,created_at,industry\n1,2024-01-01T00:00:00Z,unknown\n"
        "2,2024-01-01T00:00:00Z,Retail\n3,2024-01-01T00:00:00Z,unknown\n",
    )
    with caplog.at_level(logging.INFO, logger="features.contract"):
        leads = load_leads(path, DatasetConfig())
    assert leads["industry"].isna().sum() == 2
    assert "column 'industry': missing_tokens blanked 'unknown' (2)" in caplog.text


def _snapshot(tmp_path: Path, **dataset: object) -> tuple[Path, DatasetConfig]:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "Region": rng.choice([11, 12, 13], n),  # a number-coded category
            "Visits": rng.poisson(3, n),
            "Won": rng.choice(["yes", "no"], n),
        }
    )
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    config = DatasetConfig(
        mode="snapshot",
        lead_columns=LeadColumns(lead_id=None, converted="Won"),
        **dataset,  # type: ignore[arg-type]
    )
    return path, config


def test_a_snapshot_export_without_ids_is_numbered_and_codes_can_be_categories(
    tmp_path: Path,
) -> None:
    path, config = _snapshot(tmp_path, categorical_columns=["Region"])
    table = load_snapshot_table(path, config, FeatureConfig())
    assert table.leads["lead_id"].tolist() == list(range(1, 401))
    assert table.features.categorical_columns == ["Region"]
    assert table.features.numeric_columns == ["Visits"]
    plain = load_snapshot_table(path, config.model_copy(update={"categorical_columns": []}),
                                FeatureConfig())  # fmt: skip
    assert "Region" in plain.features.numeric_columns


def test_snapshot_as_of_never_comes_from_the_files_modification_time(tmp_path: Path) -> None:
    path, config = _snapshot(tmp_path)
    os.utime(path, (978_307_200, 978_307_200))  # the file says 2001-01-01
    before = datetime.now(UTC)
    table = load_snapshot_table(path, config, FeatureConfig())
    assert (table.leads["as_of"] >= pd.Timestamp(before)).all()
    assert "no dates" in table.as_of_source and "exported_at" in table.as_of_source
    assert table.label_meaning.startswith("converted, ever")
    pulled = datetime(2025, 6, 1, tzinfo=UTC)
    dated = load_snapshot_table(
        path, config.model_copy(update={"exported_at": pulled}), FeatureConfig()
    )
    assert (dated.leads["as_of"] == pd.Timestamp(pulled)).all()
    assert dated.as_of_source == "dataset.exported_at (2025-06-01)"
    with pytest.raises(ValueError, match="timezone"):
        DatasetConfig(exported_at=datetime(2025, 6, 1))


def test_lost_leads_without_a_close_date_are_refused_or_handled_as_configured() -> None:
    funnel = simulate_funnel(SimulatorConfig(n_leads=2_000, seed=4))
    leads = funnel.leads.copy()
    lost = np.flatnonzero((leads["converted"] == 0).fillna(False).to_numpy())
    undated = lost[:40]
    leads.loc[undated, "closed_at"] = pd.NaT
    snapshots = SnapshotConfig(observed_until=funnel.observed_until)
    with pytest.raises(DataContractError, match=r"40 lost leads have no 'closed_at'.*undated_lost"):
        make_training_set(leads, funnel.events, snapshots, FeatureConfig())
    dropped = make_training_set(
        leads, funnel.events, snapshots.model_copy(update={"undated_lost": "drop"}),
        FeatureConfig(),
    )  # fmt: skip
    assert not dropped["lead_id"].isin(leads["lead_id"].iloc[undated]).any()
    kept = make_training_set(
        leads, funnel.events, snapshots.model_copy(update={"undated_lost": "keep_open"}),
        FeatureConfig(),
    )  # fmt: skip
    mine = kept[kept["lead_id"].isin(leads["lead_id"].iloc[undated])]
    assert len(mine) > 0 and (mine["converted_within_horizon"] == 0).all()


@pytest.mark.parametrize(
    "sections",
    [
        {"features": {"categorical_columns": ["industry", "converted"]}},
        {"features": {"numeric_columns": ["closed_at"]}},
        {"dataset": {"lead_columns": {"closed_at": "Close Date"}, "fit_columns": ["Close Date"]}},
    ],
)
def test_outcome_and_close_columns_can_never_be_features(sections: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="can never be a feature"):
        LeadscoreConfig(**sections)  # type: ignore[arg-type]


def test_outcome_columns_in_a_config_file_get_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "config.yaml", "features:\n  numeric_columns: [closed_at]\n")
    with pytest.raises(DataContractError, match=r"'closed_at' is the outcome or its close date"):
        load_config(path)


def test_leakage_leaves_open_leads_out_as_training_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n = 1_000
    outcome = rng.choice(["won", "lost", "open"], n, p=[0.2, 0.5, 0.3])
    frame = pd.DataFrame({"id": range(n), "visits": rng.poisson(3, n), "Stage": outcome})
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    result = runner.invoke(
        app, ["leakage", "--input", str(path), "--label", "Stage", "--exclude", "id"],
        terminal_width=200,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{int((outcome == 'open').sum()):,} open leads left out" in result.output
