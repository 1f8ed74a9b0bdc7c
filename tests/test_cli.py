"""The command line as a user runs it: outputs, and one-line errors with nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from pipelines.cli import app

runner = CliRunner()
AS_OF = "2024-05-01T00:00:00Z"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    result = runner.invoke(app, ["generate", "--leads", "2000", "--seed", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_every_command_has_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "generate", "features", "training-set", "points", "train", "score", "promote",
        "serve", "monitor", "leakage", "compare", "scorecard", "demo",
    ):  # fmt: skip
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0, command
        assert "Usage" in sub.output


def test_console_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "generate" in done.stdout


def test_generate_writes_the_three_tables(simulated: Path) -> None:
    for name in ("leads", "events", "truth"):
        assert (simulated / f"{name}.parquet").stat().st_size > 0
    leads = pd.read_parquet(simulated / "leads.parquet")
    assert len(leads) == 2000


def test_features_training_set_and_points_from_files(simulated: Path, tmp_path: Path) -> None:
    leads, events = str(simulated / "leads.parquet"), str(simulated / "events.parquet")
    out = tmp_path / "features.parquet"
    result = runner.invoke(
        app, ["features", "--leads", leads, "--events", events, "--as-of", AS_OF, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    created = pd.read_parquet(simulated / "leads.parquet")["created_at"]
    assert len(frame) == int((created <= pd.Timestamp(AS_OF)).sum()) > 0

    out = tmp_path / "training.csv"
    result = runner.invoke(
        app, ["training-set", "--leads", leads, "--events", events, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    training = pd.read_csv(out)
    assert {"lead_id", "as_of", "converted_within_horizon"} <= set(training.columns)

    out = tmp_path / "points.csv"
    result = runner.invoke(
        app, ["points", "--leads", leads, "--events", events, "--as-of", AS_OF, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert {"rule_score", "rule_mql"} <= set(pd.read_csv(out).columns)


def _assert_refused(result_output: str, exit_code: int, out: Path, *needles: str) -> None:
    assert exit_code == 2, result_output
    assert not out.exists(), "nothing may be written on bad input"
    assert not list(out.parent.glob(f".{out.name}*")), "no temporary file may be left"
    assert "Traceback" not in result_output
    error_lines = [line for line in result_output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result_output
    for needle in needles:
        assert needle in result_output


def test_bad_leads_file_is_one_line_exit_2_and_nothing_written(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,created_at\n1,2024-01-01 09:00\n2,2024-01-02T09:00:00Z\n")
    out = tmp_path / "out" / "features.parquet"
    result = runner.invoke(
        app, ["features", "--leads", str(leads), "--as-of", AS_OF, "--out", str(out)]
    )
    _assert_refused(result.output, result.exit_code, out, "leads.csv", "created_at", "row 2")


@pytest.mark.parametrize("command", ["features", "training-set"])
def test_a_leads_file_with_only_a_header_is_refused(command: str, tmp_path: Path) -> None:
    """`load_leads` refuses it (as every command that reads leads does: train, score too)."""
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,created_at,job_title\n")
    out = tmp_path / "out.parquet"
    extra = ["--as-of", AS_OF] if command == "features" else []
    result = runner.invoke(app, [command, "--leads", str(leads), *extra, "--out", str(out)])
    _assert_refused(result.output, result.exit_code, out, "leads.csv", "no leads")


@pytest.mark.parametrize(
    ("command", "option", "name", "why"),
    [
        ("features", "--out", "features.xlsx", "must end in .parquet or .csv"),
        ("score", "--output", "scores.txt", "must end in .parquet or .csv"),
        ("scorecard", "--out", "points.txt", "must end in .yaml or .yml"),
        ("score", "--output", "a_folder.csv", "is a folder"),
        ("features", "--out", "a_file/features.csv", "is a file, not a folder"),
        ("generate", "--out", "a_file", "is a file, not a folder"),
        ("compare", "--out", "a_file/report", "is a file, not a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    command: str, option: str, name: str, why: str, tmp_path: Path
) -> None:
    (tmp_path / "a_folder.csv").mkdir()
    (tmp_path / "a_file").write_text("kept\n")
    before = sorted(tmp_path.rglob("*"))
    extra = {
        "features": ["--as-of", AS_OF, "--leads", str(tmp_path / "missing.csv")],
        "score": ["--input", str(tmp_path / "missing.csv")],
    }.get(command, [])
    result = runner.invoke(
        app,
        [command, *extra, option, str(tmp_path / name)],
        env={"LEADSCORE_WORKDIR": str(tmp_path)},
    )
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.replace("│", " ").split())  # Typer's box, unwrapped
    assert why in said and option in said, result.output
    assert "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before, "nothing may be written"
    assert (tmp_path / "a_file").read_text() == "kept\n"


def test_a_write_that_fails_at_the_rename_leaves_no_temporary_behind(
    tmp_path: Path,
) -> None:
    from features.storage import write_tables_atomic

    kept = tmp_path / "kept.csv"
    kept.write_text("old\n")
    (tmp_path / "folder.csv").mkdir()  # renaming a file onto a folder fails
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(OSError):
        write_tables_atomic({tmp_path / "folder.csv": frame, kept: frame})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv", "kept.csv"]
    assert kept.read_text() == "old\n"


@pytest.mark.parametrize("command", ["score", "compare", "scorecard", "monitor"])
def test_commands_that_read_a_model_refuse_a_store_that_is_not_there(
    command: str, tmp_path: Path
) -> None:
    """And leave no empty store behind, which would look like a store without models."""
    workdir = tmp_path / "nowhere"
    args = {
        "score": ["--input", str(tmp_path / "leads.csv"), "--output", str(tmp_path / "s.csv")],
        "compare": ["--out", str(tmp_path / "report")],
        "scorecard": ["--out", str(tmp_path / "points.yaml")],
        "monitor": [],
    }[command]
    result = runner.invoke(app, [command, *args], env={"LEADSCORE_WORKDIR": str(workdir)})
    _assert_refused(result.output, result.exit_code, tmp_path / "s.csv", "no MLflow store at")
    assert str(workdir / "mlflow.db") in result.output.replace("\n", "")
    assert not workdir.exists()


def test_as_of_without_timezone_is_refused(simulated: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    result = runner.invoke(
        app,
        ["features", "--leads", str(simulated / "leads.parquet"), "--as-of", "2024-05-01",
         "--out", str(out)],
    )  # fmt: skip
    _assert_refused(result.output, result.exit_code, out, "--as-of", "timezone")


def test_config_errors_name_the_field(simulated: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("snapshots:\n  horizon_days: -3\n")
    out = tmp_path / "t.parquet"
    result = runner.invoke(
        app,
        ["training-set", "--leads", str(simulated / "leads.parquet"), "--config", str(config),
         "--out", str(out)],
    )  # fmt: skip
    _assert_refused(result.output, result.exit_code, out, "config.yaml", "snapshots.horizon_days")

    config.write_text("features:\n  categorical_columns: [budget]\n")
    result = runner.invoke(
        app,
        ["training-set", "--leads", str(simulated / "leads.parquet"), "--config", str(config),
         "--out", str(out)],
    )  # fmt: skip
    _assert_refused(result.output, result.exit_code, out, "'budget'")


def test_environment_overrides_the_config(
    simulated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADSCORE_SNAPSHOTS__HORIZON_DAYS", "5000")
    out = tmp_path / "t.parquet"
    result = runner.invoke(
        app, ["training-set", "--leads", str(simulated / "leads.parquet"), "--out", str(out)]
    )
    _assert_refused(result.output, result.exit_code, out, "horizon is 5000 days")


def test_a_misspelt_variable_is_refused_and_the_api_and_notebook_ones_are_not(
    simulated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "t.parquet"
    command = ["training-set", "--leads", str(simulated / "leads.parquet"), "--out", str(out)]
    monkeypatch.setenv("LEADSCORE_SERVE_PORT", "8123")
    monkeypatch.setenv("LEADSCORE_DATA", str(simulated))
    monkeypatch.setenv("LEADSCORE_WORKDIR", str(tmp_path))
    assert runner.invoke(app, command).exit_code == 0
    out.unlink()
    monkeypatch.setenv("LEADSCORE_WORKDIRR", str(tmp_path))  # would be ignored: the store "."
    result = runner.invoke(app, command, terminal_width=300)
    _assert_refused(result.output, result.exit_code, out, "unknown settings LEADSCORE_WORKDIRR")


def _points_with_rules(simulated: Path, tmp_path: Path, rules_text: str) -> tuple[Result, Path]:
    """`leadscore points` on the simulated files with a rules table written from the text."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    out = tmp_path / "p.csv"
    result = runner.invoke(
        app,
        ["points", "--leads", str(simulated / "leads.parquet"),
         "--events", str(simulated / "events.parquet"), "--as-of", AS_OF,
         "--rules", str(rules), "--out", str(out)],
        terminal_width=300,
    )  # fmt: skip
    return result, out


def test_bad_rules_file_is_refused(simulated: Path, tmp_path: Path) -> None:
    result, out = _points_with_rules(simulated, tmp_path, "mql_threshold: high\n")
    _assert_refused(result.output, result.exit_code, out, "rules.yaml", "mql_threshold")


def test_a_value_the_kernel_refuses_is_named_with_its_file_column_and_row(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "lead_id,created_at,employees\n1,2024-01-01T00:00:00Z,12\n2,2024-01-02T00:00:00Z,abc\n"
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text("mql_threshold: 10\nnumbers:\n  employees:\n    - {at_least: 10, points: 5}\n")
    out = tmp_path / "p.csv"
    result = runner.invoke(
        app,
        ["points", "--leads", str(leads), "--rules", str(rules), "--as-of", AS_OF,
         "--out", str(out)],
        terminal_width=300,
    )  # fmt: skip
    _assert_refused(
        result.output, result.exit_code, out, "leads.csv: column 'employees': value 'abc'", "row 3"
    )


@pytest.mark.parametrize("command", ["features", "training-set", "points"])
def test_commands_that_build_from_events_refuse_a_snapshot_config(
    command: str, tmp_path: Path
) -> None:
    config = Path(__file__).resolve().parents[1] / "pipelines" / "examples" / "xeducation.yaml"
    out = tmp_path / "out.csv"
    extra = [] if command == "training-set" else ["--as-of", AS_OF]
    result = runner.invoke(
        app, [command, "-c", str(config), *extra, "--out", str(out)], terminal_width=300
    )
    _assert_refused(result.output, result.exit_code, out, "snapshot export", command)


def test_a_misspelt_key_in_the_rules_is_named_with_what_is_missing(
    simulated: Path, tmp_path: Path
) -> None:
    result, out = _points_with_rules(simulated, tmp_path, "mql_treshold: 60\n")
    _assert_refused(result.output, result.exit_code, out, "mql_threshold", "mql_treshold")


@pytest.mark.parametrize(
    ("rules_text", "warning", "not_named"),
    [
        (  # an action no event has
            "mql_threshold: 60\nevents:\n  pricing_page_veiw: {points: 10}\n"
            "  demo_request: {points: 30}\n",
            "has no event of pricing_page_veiw, which the points table scores",
            "demo_request",
        ),
        (  # a value a derived attribute never takes
            "mql_threshold: 10\nattributes:\n  seniority: {vpp: 15, vp: 15}\n"
            "  email_domain: {company: 5}\n",
            "scores seniority 'vpp' (seniority takes only c_level, founder, vp,",
            "company",
        ),
    ],
)
def test_a_misspelt_rule_is_warned_of_and_the_table_scored_as_written(
    simulated: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    rules_text: str,
    warning: str,
    not_named: str,
) -> None:
    """A misspelt event type or value would otherwise earn nothing, silently."""
    result, out = _points_with_rules(simulated, tmp_path, rules_text)
    assert result.exit_code == 0, result.output
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1, warned
    assert warning in warned[0] and not_named not in warned[0], warned
    assert out.exists()


XEDUCATION = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "xeducation_leads"


def test_leakage_command_flags_a_leak_and_strict_fails(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 2_000
    converted = rng.random(n) < 0.3
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "visits": rng.poisson(3, n),
            "rep_note": np.where(
                converted, "Closed won", np.where(rng.random(n) < 0.5, "Ringing", "")
            ),
            "Converted": converted.astype(int),
        }
    )
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False)
    args = ["leakage", "--input", str(path), "--label", "Converted", "--exclude", "id"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    findings, ranking = result.output.split("Single-column ROC AUC, every column:")
    assert "rep_note" in findings and "visits" not in findings
    # Every column ranked by its AUC alone, the leak first and marked.
    ranked = [line.split() for line in ranking.strip().splitlines()]
    assert [row[0] for row in ranked] == ["rep_note", "visits"]
    assert "above 0.80" in ranking.splitlines()[1] and float(ranked[1][1]) < 0.6
    assert runner.invoke(app, [*args, "--strict"]).exit_code == 1
    missing = runner.invoke(app, ["leakage", "--input", str(path), "--label", "Won"])
    _assert_refused(missing.output, missing.exit_code, tmp_path / "none", "label column 'Won'")


@pytest.mark.skipif(
    not (XEDUCATION / "Leads.csv").exists(), reason="../shared/datasets is not beside the repo"
)
def test_leakage_command_on_x_education_flags_tags_and_lead_quality() -> None:
    result = runner.invoke(
        app,
        ["leakage", "--input", str(XEDUCATION / "Leads.csv"), "--label", "Converted",
         "--exclude", "Prospect ID", "--exclude", "Lead Number"],
        terminal_width=200,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    findings = result.output.split("Single-column ROC AUC")[0]
    flagged = {line.split("  ")[0].strip() for line in findings.splitlines()[1:] if line}
    assert {"Tags", "Lead Quality"} <= flagged
    assert "TotalVisits" not in flagged


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """`leadscore --help` answers at once: pandas, scikit-learn, MLflow and LightGBM load when a
    command runs, not when the command line starts."""
    import subprocess
    import sys

    code = (
        "import sys; from pipelines.cli import app; "
        "from typer.testing import CliRunner; "
        "out = CliRunner().invoke(app, ['--help']).output; "
        "assert 'train' in out, out; "
        "print(sorted(m for m in ('pandas', 'numpy', 'sklearn', 'mlflow', 'lightgbm', 'uvicorn') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
