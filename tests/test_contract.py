"""The data contract: every loader error is one clear message naming file, column and rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.config import DatasetConfig, EventColumns, LabelValues, LeadColumns
from features.contract import DataContractError, load_events, load_leads
from features.vocabulary import EVENT_TYPES

LEADS_CSV = """lead_id,created_at,converted,closed_at,job_title
L1,2024-01-01T10:00:00Z,1,2024-02-01T00:00:00Z,VP Sales
L2,2024-01-02T10:00:00+02:00,0,2024-03-01T00:00:00Z,Student
L3,2024-01-03T10:00:00Z,,,Select
"""
EVENTS_CSV = """lead_id,ts,event_type
L1,2024-01-05T10:00:00Z,email_open
L2,2024-01-06T10:00:00Z,pricing_page_view
L9,2024-01-06T10:00:00Z,email_open
L9,2024-01-07T10:00:00Z,email_click
L3,2024-01-07T10:00:00Z,tweet
"""
TYPES = list(EVENT_TYPES)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def replace_line(text: str, line: int, new: str) -> str:
    lines = text.splitlines()
    lines[line] = new
    return "\n".join(lines) + "\n"


def test_valid_leads_load_in_contract_form(tmp_path: Path) -> None:
    leads = load_leads(write(tmp_path, "leads.csv", LEADS_CSV), DatasetConfig())
    assert leads["lead_id"].tolist() == ["L1", "L2", "L3"]
    assert str(leads["created_at"].dtype) == "datetime64[ns, UTC]"
    assert leads["created_at"][1] == pd.Timestamp("2024-01-02T08:00:00Z")
    assert leads["converted"].tolist() == [1, 0, pd.NA]
    assert pd.isna(leads["closed_at"][2])
    assert pd.isna(leads["job_title"][2]), "'Select' is a missing-value token"


def test_numeric_ids_become_integers_in_both_tables(tmp_path: Path) -> None:
    leads = load_leads(
        write(
            tmp_path, "l.csv", LEADS_CSV.replace("L1", "1").replace("L2", "2").replace("L3", "3")
        ),
        DatasetConfig(),
    )
    events, report = load_events(
        write(tmp_path, "e.csv", EVENTS_CSV.replace("L", "")), DatasetConfig(), leads, TYPES
    )
    assert leads["lead_id"].dtype == "int64" and events["lead_id"].dtype == "int64"
    assert sorted(events["lead_id"]) == [1, 2]
    assert report.n_unknown_lead_events == 2


def test_parquet_input_and_column_mapping(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "Id": [10, 11],
            "Created": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
            "Stage": ["Won", "Lost"],
            "Closed": pd.to_datetime(["2024-02-01", "2024-02-02"], utc=True),
        }
    )
    path = tmp_path / "leads.parquet"
    frame.to_parquet(path)
    config = DatasetConfig(
        lead_columns=LeadColumns(
            lead_id="Id", created_at="Created", converted="Stage", closed_at="Closed"
        ),
        labels=LabelValues(won=["won"], lost=["lost"]),
    )
    leads = load_leads(path, config)
    assert leads["converted"].tolist() == [1, 0]
    assert leads["lead_id"].tolist() == [10, 11]


def test_naive_timestamps_are_refused_unless_a_timezone_is_configured(tmp_path: Path) -> None:
    text = replace_line(LEADS_CSV, 2, "L2,2024-01-02 10:00:00,0,2024-03-01T00:00:00Z,Student")
    path = write(tmp_path, "leads.csv", text)
    with pytest.raises(DataContractError) as caught:
        load_leads(path, DatasetConfig())
    message = str(caught.value)
    assert "leads.csv" in message and "'created_at'" in message and "row 3" in message
    assert "no timezone" in message and "timezone" in message

    leads = load_leads(path, DatasetConfig(timezone="Europe/Berlin"))
    assert leads["created_at"][1] == pd.Timestamp("2024-01-02T09:00:00Z")
    assert leads["created_at"][0] == pd.Timestamp("2024-01-01T10:00:00Z"), "aware stays as is"


def test_a_repeated_numeric_id_is_quoted_as_written(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("lead_id,created_at\n19951,2024-01-01T00:00:00Z\n19951,2024-01-02T00:00:00Z\n")
    with pytest.raises(DataContractError, match=r"lead id 19951 is not unique.*row 2, 3"):
        load_leads(path, DatasetConfig())


def test_naive_parquet_timestamps_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "leads.parquet"
    pd.DataFrame({"lead_id": [1], "created_at": pd.to_datetime(["2024-01-01"])}).to_parquet(path)
    with pytest.raises(DataContractError, match="no timezone"):
        load_leads(path, DatasetConfig())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (LEADS_CSV.replace("created_at", "created"), "required column 'created_at' is missing"),
        (replace_line(LEADS_CSV, 3, "L2,2024-01-03T10:00:00Z,,,x"), "'L2' is not unique"),
        (replace_line(LEADS_CSV, 3, ",2024-01-03T10:00:00Z,,,x"), "ids are missing"),
        (replace_line(LEADS_CSV, 3, "L3,next tuesday,,,x"), "cannot parse 'next tuesday'"),
        (replace_line(LEADS_CSV, 3, "L3,,,,x"), "timestamps are missing"),
        (
            replace_line(LEADS_CSV, 3, "L3,2024-01-03T10:00:00Z,maybe,,x"),
            "neither won, lost nor open: 'maybe' (1)",
        ),
        (
            replace_line(LEADS_CSV, 3, "L3,2024-01-03T10:00:00Z,0,2023-01-01T00:00:00Z,x"),
            "closed before it was created",
        ),
    ],
)
def test_each_leads_error_names_file_column_and_rows(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "leads.csv", text)
    with pytest.raises(DataContractError) as caught:
        load_leads(path, DatasetConfig())
    message = str(caught.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_error_rows_are_spreadsheet_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", replace_line(LEADS_CSV, 3, "L1,2024-01-03T10:00:00Z,,,x"))
    with pytest.raises(DataContractError) as caught:
        load_leads(path, DatasetConfig())
    assert caught.value.rows == [0, 2]
    assert "column 'lead_id'" in str(caught.value) and "(row 2, 4)" in str(caught.value)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataContractError, match="file not found"):
        load_leads(tmp_path / "nope.csv", DatasetConfig())
    with pytest.raises(DataContractError, match=r"unsupported file type '\.xlsx'"):
        load_leads(write(tmp_path, "leads.xlsx", "x"), DatasetConfig())
    with pytest.raises(DataContractError, match="cannot be read"):
        load_leads(write(tmp_path, "leads.parquet", "not parquet"), DatasetConfig())


def test_excluding_an_unknown_column_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "leads.csv", LEADS_CSV)
    with pytest.raises(DataContractError, match="excludes column 'Tags'"):
        load_leads(path, DatasetConfig(exclude_columns=["Tags"]))
    leads = load_leads(path, DatasetConfig(exclude_columns=["job_title"]))
    assert "job_title" not in leads.columns


def test_events_unknown_leads_are_counted_and_dropped_unknown_types_reported(
    tmp_path: Path,
) -> None:
    leads = load_leads(write(tmp_path, "leads.csv", LEADS_CSV), DatasetConfig())
    events, report = load_events(
        write(tmp_path, "events.csv", EVENTS_CSV), DatasetConfig(), leads, TYPES
    )
    assert events["lead_id"].tolist() == ["L1", "L2"]
    assert report.n_unknown_leads == 1 and report.n_unknown_lead_events == 2
    assert report.unknown_event_types == {"tweet": 1}
    assert "2 events of 1 unknown lead ids dropped" in report.summary()
    assert list(events["event_type"].cat.categories) == TYPES


def test_event_type_map_renames_export_types(tmp_path: Path) -> None:
    leads = load_leads(write(tmp_path, "leads.csv", LEADS_CSV), DatasetConfig())
    config = DatasetConfig(event_type_map={"tweet": "page_view"})
    events, report = load_events(write(tmp_path, "events.csv", EVENTS_CSV), config, leads, TYPES)
    assert "page_view" in set(events["event_type"]) and not report.unknown_event_types


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (EVENTS_CSV.replace("event_type", "kind"), "required column 'event_type' is missing"),
        (replace_line(EVENTS_CSV, 1, "L1,yesterday,email_open"), "cannot parse 'yesterday'"),
        (replace_line(EVENTS_CSV, 1, "L1,2024-01-05T10:00:00Z,"), "event types are missing"),
        (replace_line(EVENTS_CSV, 1, "L1,2024-01-05 10:00,email_open"), "no timezone"),
    ],
)
def test_each_events_error_names_file_column_and_rows(
    tmp_path: Path, text: str, expected: str
) -> None:
    leads = load_leads(write(tmp_path, "leads.csv", LEADS_CSV), DatasetConfig())
    path = write(tmp_path, "events.csv", text)
    with pytest.raises(DataContractError) as caught:
        load_events(path, DatasetConfig(), leads, TYPES)
    assert expected in str(caught.value) and str(path) in str(caught.value)


def test_renamed_event_columns(tmp_path: Path) -> None:
    leads = load_leads(write(tmp_path, "leads.csv", LEADS_CSV), DatasetConfig())
    text = EVENTS_CSV.replace("lead_id,ts,event_type", "Lead,When,Activity")
    config = DatasetConfig(
        event_columns=EventColumns(lead_id="Lead", ts="When", event_type="Activity")
    )
    events, _ = load_events(write(tmp_path, "events.csv", text), config, leads, TYPES)
    assert len(events) == 2
    with pytest.raises(DataContractError, match="required column 'Lead' is missing"):
        load_events(write(tmp_path, "bad.csv", EVENTS_CSV), config, leads, TYPES)
