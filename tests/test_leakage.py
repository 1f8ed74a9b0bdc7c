"""Leakage check: synthetic columns with a known answer, then X Education's known leaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.training.leakage import (
    FILLED_FOR_ONE_CLASS,
    POST_OUTCOME_VALUES,
    PREDICTS_LABEL,
    LeakageFinding,
    leakage_findings,
    leakage_report,
)

LEADS_CSV = (
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "xeducation_leads" / "Leads.csv"
)


def _kinds(findings: list[LeakageFinding], column: str) -> set[str]:
    return {f.kind for f in findings if f.column == column}


@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(7)
    n = 2_000
    y = pd.Series((rng.random(n) < 0.4).astype(int))
    positive = y.to_numpy() == 1
    # Label copy with 5% of rows flipped: AUC ~0.95.
    noisy = np.where(rng.random(n) < 0.05, 1 - y, y) + rng.normal(0, 0.01, n)
    # Mostly "Ringing"/"Busy"; 40% of leads carry an outcome note that matches their label.
    note = rng.choice(["Ringing", "Busy"], size=n).astype(object)
    noted = rng.random(n) < 0.4
    note[noted & positive] = "Closed by rep"
    note[noted & ~positive] = "Lost to competitor"
    frame = pd.DataFrame(
        {
            "clean": rng.normal(size=n),
            "noisy_label": noisy,
            # Filled for 90% of positives, never for negatives, with uninformative values.
            "positives_only": np.where(
                positive & (rng.random(n) < 0.9), rng.normal(size=n), np.nan
            ),
            "lead_id": [f"L{i:05d}" for i in range(n)],
            "status_note": note,
        }
    )
    return frame, y


@pytest.fixture(scope="module")
def synthetic_findings(synthetic: tuple[pd.DataFrame, pd.Series]) -> list[LeakageFinding]:
    frame, y = synthetic
    return leakage_findings(frame, y)


def test_clean_column_is_not_flagged(synthetic_findings: list[LeakageFinding]) -> None:
    assert _kinds(synthetic_findings, "clean") == set()


def test_noisy_label_copy_predicts_label(synthetic_findings: list[LeakageFinding]) -> None:
    assert PREDICTS_LABEL in _kinds(synthetic_findings, "noisy_label")


def test_column_filled_for_positives_only(synthetic_findings: list[LeakageFinding]) -> None:
    assert FILLED_FOR_ONE_CLASS in _kinds(synthetic_findings, "positives_only")


def test_unique_id_does_not_predict_label(synthetic_findings: list[LeakageFinding]) -> None:
    # Encoding each id by its own row's label would give AUC 1.0; out of fold it carries nothing.
    assert _kinds(synthetic_findings, "lead_id") == set()


def test_status_note_has_post_outcome_values(synthetic_findings: list[LeakageFinding]) -> None:
    [finding] = [f for f in synthetic_findings if f.kind == POST_OUTCOME_VALUES]
    assert finding.column == "status_note"
    assert finding.score == pytest.approx(0.4, abs=0.05)


def test_exclude_skips_columns(synthetic: tuple[pd.DataFrame, pd.Series]) -> None:
    frame, y = synthetic
    findings = leakage_findings(frame, y, exclude=["noisy_label", "positives_only", "status_note"])
    assert findings == []
    assert leakage_report(findings) == "No leakage found."


def test_report_has_one_line_per_finding(synthetic_findings: list[LeakageFinding]) -> None:
    lines = leakage_report(synthetic_findings).splitlines()
    assert len(lines) == 1 + len(synthetic_findings)
    assert all(
        f.column in line and f.kind in line
        for f, line in zip(synthetic_findings, lines[1:], strict=True)
    )


def test_label_must_be_binary() -> None:
    with pytest.raises(ValueError, match="0/1"):
        leakage_findings(pd.DataFrame({"a": [1.0, 2.0]}), pd.Series([1, 1]))


@pytest.fixture(scope="module")
def xeducation_findings() -> list[LeakageFinding]:
    if not LEADS_CSV.exists():
        pytest.skip(f"{LEADS_CSV} not present: ../shared is not beside the repo")
    # "Select" is the unanswered dropdown: missing, not a value.
    leads = pd.read_csv(LEADS_CSV).replace("Select", np.nan)
    return leakage_findings(
        leads, leads["Converted"], exclude=["Prospect ID", "Lead Number", "Converted"]
    )


def test_xeducation_flags_sales_notes(xeducation_findings: list[LeakageFinding]) -> None:
    flagged = {f.column for f in xeducation_findings}
    assert {"Tags", "Lead Quality"} <= flagged
    assert {PREDICTS_LABEL, POST_OUTCOME_VALUES} <= _kinds(xeducation_findings, "Tags")


def test_xeducation_leaves_activity_columns_alone(
    xeducation_findings: list[LeakageFinding],
) -> None:
    flagged = {f.column for f in xeducation_findings}
    assert not flagged & {"TotalVisits", "Total Time Spent on Website"}
