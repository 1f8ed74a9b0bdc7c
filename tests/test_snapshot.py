"""Snapshot mode: a one-row-per-lead export becomes a trained, compared model by config alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.config import DatasetConfig, FeatureConfig, LeadColumns
from features.contract import DataContractError
from features.snapshot import empty_events, load_snapshot_table
from features.vocabulary import CONVERTED, LEAD_ID
from models.rules.points import PointsRules
from models.training import candidates as candidates_module
from models.training import train as train_module
from models.training.config import TrainConfig
from models.training.train import train_snapshot_scorer
from pipelines.cli import app

runner = CliRunner()
N = 4_000
DATASET = DatasetConfig(
    mode="snapshot",
    lead_columns=LeadColumns(lead_id="Prospect", converted="Won"),
    order_column="Number",
    exclude_columns=["Rep Note"],
    fit_columns=["Source", "Occupation"],
    behaviour_columns=["Visits", "Minutes on site"],
    source_column="Source",
)
RULES = {
    "mql_threshold": 20,
    "half_life_days": None,
    "attributes": {"Occupation": {"Professional": 15, "Student": -10}, "Source": {"Referral": 10}},
    "numbers": {"Visits": [{"at_least": 5, "points": 10}]},
}


def snapshot_export(n: int = N, seed: int = 3) -> pd.DataFrame:
    """Leads whose outcome depends on occupation, source, visits and time on site, plus a rep's
    note written after the outcome; the file's rows are shuffled, "Number" follows time."""
    rng = np.random.default_rng(seed)
    occupation = rng.choice(["Professional", "Student", "Unemployed", "Select"], n)
    source = rng.choice(["Google", "Referral", "Direct", "Olark"], n)
    visits = rng.poisson(3, n).astype(float)
    minutes = rng.gamma(2, 200, n)
    logit = (
        -1.2
        + 1.5 * (occupation == "Professional")
        - 1.0 * (occupation == "Student")
        + 0.8 * (source == "Referral")
        + 0.25 * visits
        + 0.002 * minutes
    )
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "Prospect": [f"p-{i:05d}" for i in range(n)],
            "Number": np.arange(600_000, 600_000 + n),
            "Source": source,
            "Occupation": occupation,
            "Visits": visits,
            "Minutes on site": minutes.round(1),
            "Rep Note": np.where(won, "Closed by rep", "Ringing"),
            "Won": np.where(won, "1", "0"),
        }
    )
    visits_text = frame["Visits"].astype("str").to_numpy(dtype=object)
    visits_text[rng.random(n) < 0.05] = ""  # some unknown
    frame["Visits"] = visits_text
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


@pytest.fixture(scope="module")
def export_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "leads.csv"
    snapshot_export().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def config_file(export_csv: Path) -> Path:
    config = {
        "dataset": {**DATASET.model_dump(mode="json"), "leads_path": str(export_csv)},
        "rules_path": "rules.yaml",
        "train": {
            "strategy": "walk_forward",
            "model_name": "snapshots",
            "lightgbm": {"min_child_samples": 50},
        },
    }
    path = export_csv.parent / "leadscore.yaml"
    path.write_text(yaml.safe_dump(config))
    (export_csv.parent / "rules.yaml").write_text(yaml.safe_dump(RULES))
    return path


def test_loader_types_columns_and_blanks_missing_tokens(export_csv: Path) -> None:
    table = load_snapshot_table(export_csv, DATASET, FeatureConfig())
    features = table.features
    assert features.source == "snapshot"
    assert features.categorical_columns == ["Source", "Occupation"]
    assert features.numeric_columns == ["Visits", "Minutes on site"]
    assert features.behaviour_columns == ["Visits", "Minutes on site"]
    assert "Rep Note" not in table.leads.columns
    assert table.leads["Occupation"].isna().any()  # "Select" is unanswered
    assert not (table.leads["Occupation"] == "Select").any()
    assert table.leads["Visits"].dtype == np.float64 and table.leads["Visits"].isna().any()
    assert set(table.leads[CONVERTED].dropna().unique()) == {0, 1}
    raw = pd.read_csv(export_csv)
    assert np.array_equal(table.order, raw["Number"].to_numpy(dtype=np.float64))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"fit_columns": ["Sourse"]}, "'Sourse' as a fit column, which is not in the file; did"),
        ({"order_column": "Lead No"}, "'Lead No' as the order column"),
        ({"behaviour_columns": ["Won"]}, "'Won' is the id, the label, its close date, the order"),
        ({"fit_columns": ["Source", "Source"]}, "'Source' is listed twice"),
    ],
)
def test_config_mistakes_are_named(
    export_csv: Path, change: dict[str, object], expected: str
) -> None:
    dataset = DATASET.model_copy(update=change)
    with pytest.raises(DataContractError, match=expected.replace("(", r"\(")):
        load_snapshot_table(export_csv, dataset, FeatureConfig())


def test_bad_rows_are_named_with_file_column_and_rows(tmp_path: Path) -> None:
    frame = snapshot_export(50)
    frame.loc[7, "Prospect"] = frame.loc[3, "Prospect"]
    path = tmp_path / "dup.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataContractError) as raised:
        load_snapshot_table(path, DATASET, FeatureConfig())
    message = str(raised.value)
    assert str(path) in message and "column 'Prospect'" in message and "row 5, 9" in message

    frame = snapshot_export(50)
    frame.loc[4, "Won"] = "maybe"
    frame.to_csv(path, index=False)
    with pytest.raises(DataContractError, match=r"nor open: 'maybe' \(1\).*row 6"):
        load_snapshot_table(path, DATASET, FeatureConfig())

    # A number column with a few values that are none: those are named, not the numbers.
    frame = snapshot_export(50)
    frame["Number"] = frame["Number"].astype(object)
    frame.loc[[2, 6], "Number"] = "unknown"
    frame.to_csv(path, index=False)
    with pytest.raises(DataContractError) as raised:
        load_snapshot_table(path, DATASET, FeatureConfig())
    message = str(raised.value)
    assert "order value 'unknown' is not a number" in message and "column 'Number'" in message
    assert "row 4, 8" in message, message


@pytest.fixture(scope="module")
def trained(export_csv: Path) -> train_module.TrainingResult:
    table = load_snapshot_table(export_csv, DATASET, FeatureConfig())
    return train_snapshot_scorer(
        table,
        rules=PointsRules.model_validate(RULES),
        config=TrainConfig(strategy="walk_forward"),
        horizon_days=90,
        segment_column="Source",
    )


def test_the_test_slice_is_the_newest_rows_by_order(
    trained: train_module.TrainingResult, export_csv: Path
) -> None:
    raw = pd.read_csv(export_csv).set_index("Prospect")
    numbers = raw.loc[trained.training_set[LEAD_ID], "Number"].to_numpy()
    test = trained.split.rows["test"]
    before = np.setdiff1d(np.arange(len(numbers)), test)
    assert numbers[before].max() < numbers[test].min()
    assert len(test) == pytest.approx(0.2 * len(numbers), abs=2)
    assert trained.split.first["test"].startswith("Number ")


def test_scoring_the_export_gives_the_evaluated_probabilities(
    trained: train_module.TrainingResult, export_csv: Path
) -> None:
    scorer = trained.scorer
    table = load_snapshot_table(
        export_csv, DATASET, FeatureConfig(), trained=scorer.features, require_label=False
    )
    scored = scorer.score(table.leads, empty_events(table.leads[LEAD_ID])).set_index(LEAD_ID)
    test = trained.test.set_index(LEAD_ID)
    assert np.allclose(scored.loc[test.index, "probability"], test["probability"], atol=1e-12)
    reasons = scored["reasons"].iloc[0]
    families = {r["feature"] for side in reasons.values() for r in side}
    assert families <= {"Source", "Occupation", "Visits", "Minutes on site"}
    # The planted signal is learned: professionals score above students.
    occupation = table.leads.set_index(LEAD_ID)["Occupation"]
    by_occupation = scored["probability"].groupby(occupation).mean()
    assert by_occupation["Professional"] > by_occupation["Student"] + 0.2
    assert trained.evaluation.metrics["model_roc_auc"] > trained.evaluation.metrics["rules_roc_auc"]


@pytest.mark.parametrize("learner", ["lightgbm", "logistic"])
def test_walk_forward_scores_each_block_only_with_learners_of_older_rows(
    export_csv: Path, monkeypatch: pytest.MonkeyPatch, learner: str
) -> None:
    seen: list[np.ndarray] = []
    fit_name, rows_at = {"lightgbm": ("fit_booster", 2), "logistic": ("fit_logistic", 1)}[learner]
    real_fit = getattr(candidates_module, fit_name)

    def recording_fit(*args: object, **kwargs: object) -> object:
        seen.append(np.asarray(args[rows_at]).copy())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(candidates_module, fit_name, recording_fit)
    table = load_snapshot_table(export_csv, DATASET, FeatureConfig())
    config = TrainConfig(strategy="walk_forward", walk_forward_folds=3, candidates=[learner])
    result = train_snapshot_scorer(
        table, rules=PointsRules.model_validate(RULES), config=config, horizon_days=90
    )
    test = result.split.rows["test"]
    before_test = np.setdiff1d(np.arange(len(result.training_set)), test)
    if learner == "logistic":
        seen = seen[len(config.logistic.strengths) :]  # the fits on the train slice
    *block_learners, final = seen
    assert len(block_learners) == 3
    for rows in seen:
        assert np.intersect1d(rows, test).size == 0  # the test is never learned from
    assert np.array_equal(np.sort(final), before_test)
    # Rows are time-ordered (by position here): each block learner saw one prefix, growing.
    sizes = [len(rows) for rows in block_learners]
    assert sizes == sorted(sizes) and sizes[0] >= len(before_test) // 2 - 1
    for rows in block_learners:
        assert np.array_equal(rows, before_test[: len(rows)])


def test_cli_trains_checks_leakage_and_scores_a_snapshot_export(
    config_file: Path, export_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADSCORE_WORKDIR", str(tmp_path))
    done = runner.invoke(app, ["train", "-c", str(config_file), "--strict"])
    assert done.exit_code == 0, done.output
    assert "registered snapshots v1 as champion" in " ".join(done.output.split())

    unlabelled = pd.read_csv(export_csv).drop(columns=["Won"]).head(200)
    to_score = tmp_path / "new.csv"
    unlabelled.to_csv(to_score, index=False)
    out = tmp_path / "scores.csv"
    done = runner.invoke(
        app, ["score", "-c", str(config_file), "--input", str(to_score), "--output", str(out)]
    )
    assert done.exit_code == 0, done.output
    scores = pd.read_csv(out)
    assert len(scores) == 200 and scores["probability"].between(0, 1).all()

    # The model-vs-rules report on the model's own holdout (the newest 20% by Number).
    report = tmp_path / "report"
    done = runner.invoke(app, ["compare", "-c", str(config_file), "--out", str(report)])
    assert done.exit_code == 0, done.output
    assert "leads the model would pass to sales" in " ".join(done.output.split())
    html = (report / "compare.html").read_text()
    assert "Source" in html and "Referral" in html
    rules_list = pd.read_csv(report / "rules_mql_list.csv")
    everyone = pd.read_csv(report / "all_leads.csv")
    assert len(everyone) == pytest.approx(0.2 * N, abs=2)
    assert set(rules_list["lead_id"]) <= set(everyone["lead_id"])
    newest = pd.read_csv(export_csv).nlargest(len(everyone), "Number")["Prospect"]
    assert set(everyone["lead_id"]) == set(newest)

    # The suggested points table loads as rules and scores the export.
    points = tmp_path / "points.yaml"
    done = runner.invoke(app, ["scorecard", "-c", str(config_file), "--out", str(points)])
    assert done.exit_code == 0, done.output
    assert "of the model's lift" in " ".join(done.output.split())
    table = PointsRules.from_yaml(points)
    assert table.rule_keys() and all(float(p).is_integer() for p in _all_points(table))
    done = runner.invoke(app, ["train", "-c", str(config_file), "--rules", str(points), "--strict"])
    assert done.exit_code == 0, done.output


def _all_points(table: PointsRules) -> list[float]:
    return [
        *(e.points for e in table.events.values()),
        *(p for values in table.attributes.values() for p in values.values()),
        *(band.points for bands in table.numbers.values() for band in bands),
    ]


def test_cli_strict_refuses_a_leaky_column_and_writes_nothing(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load(config_file.read_text())
    config["dataset"]["exclude_columns"] = []
    config["dataset"]["fit_columns"] = [*config["dataset"]["fit_columns"], "Rep Note"]
    leaky = config_file.parent / "leaky.yaml"
    leaky.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "store"
    workdir.mkdir()
    monkeypatch.setenv("LEADSCORE_WORKDIR", str(workdir))
    done = runner.invoke(app, ["train", "-c", str(leaky), "--strict"])
    assert done.exit_code == 2
    assert "leakage check flags 'Rep Note'" in " ".join(done.output.split())
    assert "Traceback" not in done.output
    assert list(workdir.iterdir()) == []
