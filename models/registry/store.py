"""MLflow tracking and registry: log a training run, register the bundle, champion/challenger.

Embedded default: a SQLite store `mlflow.db` and an artifact folder `mlartifacts/` in the working
directory, created on first use. `MLFLOW_TRACKING_URI` points it at a team's server instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.types import ColSpec, Schema
from pandas.errors import Pandas4Warning

from features.contract import DataContractError
from features.pointintime import AS_OF
from features.training import LABEL
from features.vocabulary import CREATED_AT, LEAD_ID
from models.reports.comparison import holdout_comparison, write_comparison
from models.reports.evaluation import Scores, write_artifacts
from models.rules.points import PointsRules
from models.scoring.bundle import SCORER_ARTIFACT, LeadScoreModel, request_example
from models.scoring.scorer import LeadScorer, lead_columns_needed
from models.training.config import TrainConfig
from models.training.gate import CHALLENGER, CHAMPION, Decision, HoldoutMetrics, decide
from models.training.split import SLICES
from models.training.train import TrainingResult

logger = logging.getLogger(__name__)

# Run artifacts: the holdout comparison folder, the scored holdout in it, the suggested points.
COMPARE_ARTIFACT = "compare"
HOLDOUT_FILE = "holdout.parquet"
SCORECARD_FILE = "suggested_points.yaml"
SCORECARD_REFUSED_TAG = "scorecard_refused"  # why no suggested points table was logged
TRACKING_DB = "mlflow.db"
# Logged as a model from code; never imported here (importing it registers the model object).
# The bundle's entry point, a file MLflow executes (not imported here: it registers the model).
PYFUNC_ENTRY = Path(__file__).parents[1] / "scoring" / "pyfunc_entry.py"
ARTIFACTS_DIR = "mlartifacts"
_RUNTIME_PACKAGES = (
    *("mlflow", "lightgbm", "scikit-learn", "scipy", "pandas", "numpy", "pyarrow"),
    *("pydantic", "pyyaml"),
)


def tracking_uri(workdir: Path) -> str:
    """`MLFLOW_TRACKING_URI` if set, else the embedded SQLite store in `workdir`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(workdir / TRACKING_DB).resolve()}"


def use_tracking(workdir: Path) -> str:
    """Point MLflow at the store for `workdir`, leaving the user's environment as it was."""
    uri = tracking_uri(workdir)
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into the environment, which would
    # make our own choice look like the user's on the next call; MLflow reads its global first.
    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return uri


class StoreUnavailable(DataContractError):
    """The MLflow store cannot be reached or opened: nothing was logged or registered."""


def _shown(uri: str) -> str:
    """A store URI fit to print: without its password."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _unavailable(uri: str, exc: BaseException) -> StoreUnavailable:
    """One line for a store that fails: which store, and the root cause (a refused
    connection, a file that is not a database), not MLflow's wrapping of it."""
    cause = exc
    while (deeper := cause.__cause__ or cause.__context__) is not None:
        cause = deeper
    reason = (str(cause) or type(cause).__name__).splitlines()[0]
    if uri.startswith("sqlite:"):
        return StoreUnavailable(
            f"MLflow store {_shown(uri)} cannot be opened: {reason}",
            hint="point LEADSCORE_WORKDIR or MLFLOW_TRACKING_URI at a working store",
        )
    return StoreUnavailable(
        f"MLflow store {_shown(uri)} is unreachable: {reason}",
        hint="start it, or point MLFLOW_TRACKING_URI at a running one",
    )


def _sqlite_path(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///").partition("?")[0])


def _check_sqlite_file(uri: str) -> None:
    """What MLflow would retry for minutes (a folder where the database should be) or fail on
    with a traceback (a file that is not a database), refused at once."""
    if not uri.startswith("sqlite:///"):
        return
    path = _sqlite_path(uri)
    problem = None
    if path.is_dir():
        problem = "it is a folder"
    elif any(parent.exists() and not parent.is_dir() for parent in path.parents):
        problem = "a part of its path is a file, not a folder"
    elif path.is_file() and path.stat().st_size:
        with path.open("rb") as handle:
            if handle.read(16) != b"SQLite format 3\0":
                problem = "the file is not a SQLite database"
    if problem is not None:
        raise StoreUnavailable(
            f"MLflow store {_shown(uri)} cannot be opened: {problem}",
            hint="point LEADSCORE_WORKDIR or MLFLOW_TRACKING_URI at a working store",
        )


def use_existing_store(workdir: Path) -> str:
    """Point MLflow at the store for `workdir` to read models from it. A local store that does
    not exist is refused with where it was looked for, rather than made, empty, by MLflow."""
    uri = use_tracking(workdir)
    _check_sqlite_file(uri)
    if uri.startswith("sqlite:///") and not _sqlite_path(uri).is_file():
        raise StoreUnavailable(
            f"no MLflow store at {_sqlite_path(uri)}",
            hint="train a model first (leadscore train, or make demo), or point "
            "LEADSCORE_WORKDIR or --config at the workdir training used",
        )
    return uri


_PROBE_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


def check_store(workdir: Path) -> str:
    """Point MLflow at the store for `workdir` and make sure it answers (tracking and
    registry): called before anything is trained, so that an unreachable server or a file
    that is not a database is one clear error, not a traceback after the training."""
    uri = use_tracking(workdir)
    _check_sqlite_file(uri)
    if uri.startswith("sqlite:///") and not _sqlite_path(uri).exists():
        return uri  # a new store, made when the first model is logged: no file left before
    # A server that is down fails the probe in seconds, not after MLflow's minutes of retries;
    # MLFLOW_HTTP_REQUEST_* variables the user set are kept.
    added = {k: v for k, v in _PROBE_HTTP.items() if k not in os.environ}
    os.environ.update(added)
    try:
        client = MlflowClient()
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    except Exception as exc:  # the probe only talks to the store: the store is what failed
        raise _unavailable(uri, exc) from exc
    finally:
        for name in added:
            os.environ.pop(name, None)
    return uri


def _experiment_id(name: str, workdir: Path) -> str:
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        location = (workdir / ARTIFACTS_DIR).resolve().as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def data_fingerprint(*frames: pd.DataFrame) -> str:
    """SHA-256 over every row of the inputs, order included: same data, same fingerprint."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update("|".join(map(str, frame.columns)).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Registration:
    """What `log_and_register` did: the run, and the version and alias the gate gave it (no
    version and no alias when the gate refused the model: it is logged, not registered)."""

    run_id: str
    version: str
    alias: str
    reason: str
    champion_metrics: dict[str, float] | None

    @property
    def refused(self) -> bool:
        return not self.version


def _versions_pinned() -> list[str]:
    pins = []
    for package in _RUNTIME_PACKAGES:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def current_champion(name: str) -> tuple[str, LeadScorer] | None:
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        # No model or no champion yet; a store that fails is not "no champion" (the gate
        # would then crown the new model without comparing it).
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return str(version.version), load_scorer(f"models:/{name}@{CHAMPION}")


def load_scorer(model_uri: str) -> LeadScorer:
    """The `LeadScorer` inside a registered (or logged) pyfunc bundle."""
    model = mlflow.pyfunc.load_model(model_uri)
    scorer: LeadScorer = model.unwrap_python_model().scorer
    if model_uri.startswith("models:/"):
        name, _, ref = model_uri.removeprefix("models:/").partition("@")
        if ref:
            scorer.model_version = str(MlflowClient().get_model_version_by_alias(name, ref).version)
        else:
            scorer.model_version = model_uri.rsplit("/", 1)[-1]
    return scorer


def decide_alias(
    result: TrainingResult,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    champion: tuple[str, LeadScorer] | None,
    tolerance: float,
) -> tuple[Decision, dict[str, float] | None]:
    """The publish gate (`models.training.gate`) on this run's newest holdout: the model
    against the rules and against the current champion, which scores the same leads."""
    test = result.test
    labels = test[LABEL].to_numpy()
    old: tuple[str, HoldoutMetrics] | None = None
    if champion is not None:
        version, scorer = champion
        try:
            scored = scorer.score_snapshots(
                test[[LEAD_ID, AS_OF]], leads, events, with_reasons=False
            )
        except Exception as exc:  # a champion built for other data cannot be compared
            logger.warning("champion v%s cannot score this holdout: %s", version, exc)
            decision = decide(
                labels, test["probability"].to_numpy(), test["rule_probability"].to_numpy(),
                None, tolerance,
            )  # fmt: skip
            if decision.alias == CHAMPION:
                decision = Decision(
                    CHALLENGER, f"champion v{version} cannot score this data; promote by hand"
                )
            return decision, None
        old = (version, HoldoutMetrics.of(labels, scored["probability"].to_numpy()))
    decision = decide(
        labels,
        test["probability"].to_numpy(),
        test["rule_probability"].to_numpy(),
        old,
        tolerance,
    )
    return decision, (None if old is None else asdict(old[1]))


def log_and_register(
    result: TrainingResult,
    leads: pd.DataFrame,
    events: pd.DataFrame,
    *,
    config: TrainConfig,
    run_config: dict[str, Any],
    workdir: Path,
    cost_per_lead: dict[str, float] | None = None,
) -> Registration:
    """One MLflow run: config, data fingerprint, metrics, artifacts, the registered bundle.

    The version is registered after the run has finished, and the alias moves last: a failed or
    interrupted run leaves no version and `champion` where it was.
    """
    check_store(workdir)
    experiment = _experiment_id(config.experiment, workdir)
    champion = current_champion(config.model_name)
    scorer = result.scorer
    with (
        mlflow.start_run(experiment_id=experiment) as run,
        tempfile.TemporaryDirectory() as tmp,
        warnings.catch_warnings(),
    ):
        # MLflow's schema inference warns about integer ids and pandas 3 deprecations inside
        # MLflow itself; neither is something a user of this command can act on.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        warnings.filterwarnings("ignore", category=Pandas4Warning, module=r"mlflow\.")
        warnings.filterwarnings(
            "ignore", message="Series.values returning", category=Pandas4Warning
        )
        folder = Path(tmp)
        fingerprint = data_fingerprint(leads, events)
        dataset = from_pandas(
            result.training_set[[LEAD_ID, AS_OF, LABEL]],
            name="training_snapshots",
            targets=LABEL,
            digest=fingerprint[:16],
        )
        mlflow.log_input(dataset, context="training")
        mlflow.set_tags({"data_fingerprint": fingerprint, "model_name": config.model_name})
        mlflow.log_dict(run_config, "config.json")
        mlflow.log_params(
            {
                "horizon_days": scorer.horizon_days,
                "calibration": scorer.calibrator.method,
                "policy": scorer.policy.method,
                "threshold": round(scorer.policy.threshold, 6),
                "label": scorer.metadata.get("label_meaning", ""),
                "as_of_source": scorer.metadata.get("as_of_source", ""),
                "learner": result.chosen.name,
                "learner_settings": json.dumps(result.chosen.settings),
                **{f"lgbm_{k}": v for k, v in config.lightgbm.model_dump().items()},
                **{f"n_{name}": len(result.split.rows[name]) for name in SLICES},
                **{f"start_{name}": result.split.first[name] for name in SLICES},
            }
        )
        metrics = dict(result.evaluation.metrics)
        metrics.update(
            {f"calibration_log_loss_{k}": v for k, v in result.calibration_losses.items()}
        )
        metrics.update(result.drift.metrics())
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(result.drift.as_dict(), "drift.json")
        mlflow.set_tag("drift_warnings", " | ".join(result.drift.warnings) or "none")
        _log_candidates(result, experiment)
        test = result.test
        write_artifacts(
            result.evaluation,
            test[LABEL].to_numpy(),
            Scores("model", test["probability"].to_numpy(), test["mql"].to_numpy()),
            Scores("rules", test["rule_probability"].to_numpy(), test["rule_mql"].to_numpy()),
            folder / "evaluation",
        )
        mlflow.log_artifacts(str(folder / "evaluation"), "evaluation")
        scorer.metadata["cost_per_lead"] = dict(cost_per_lead or {})
        _log_comparison(result, folder / COMPARE_ARTIFACT)

        scorer.metadata["run_id"] = run.info.run_id
        scorer.metadata["model_name"] = config.model_name
        scorer.metadata["test_metrics"] = {
            k: v for k, v in metrics.items() if k.startswith("model_") and np.isfinite(v)
        }
        decision, champion_metrics = decide_alias(
            result, leads, events, champion, config.promotion_tolerance
        )
        mlflow.set_tag("alias_decision", f"{decision.alias or 'refused'}: {decision.reason}")
        if decision.refused:
            logger.warning("model refused, not registered: %s", decision.reason)
            return Registration(run.info.run_id, "", "", decision.reason, champion_metrics)
        scorer.save(folder / SCORER_ARTIFACT)
        example = request_example(leads, events, lead_columns_needed(scorer))
        output = LeadScoreModel.for_scorer(LeadScorer.load(folder / SCORER_ARTIFACT)).predict(
            None, example
        )
        info = _log_bundle(folder / SCORER_ARTIFACT, example, output)
    # Registered only now that the run has finished: a failed or interrupted run never leaves a
    # version behind that could be scored or promoted. What fails from here on takes its
    # version with it.
    assert decision.alias is not None
    client = MlflowClient()
    version = ""
    try:
        registered = mlflow.register_model(info.model_uri, config.model_name)
        version = str(registered.version)
        client.set_tag(run.info.run_id, "model_version", version)
        client.set_model_version_tag(
            config.model_name, version, "decision", f"{decision.alias}: {decision.reason}"
        )
        client.set_registered_model_alias(config.model_name, decision.alias, version)
    except BaseException:  # an interrupt too: no version without its alias
        if version:
            with contextlib.suppress(Exception):
                client.delete_model_version(config.model_name, version)
        raise
    return Registration(
        run_id=run.info.run_id,
        version=version,
        alias=decision.alias,
        reason=decision.reason,
        champion_metrics=champion_metrics,
    )


def _log_candidates(result: TrainingResult, experiment: str) -> None:
    """One child run per candidate: its settings and the log loss it was chosen by."""
    for fit in result.candidates:
        with mlflow.start_run(run_name=fit.name, nested=True, experiment_id=experiment):
            mlflow.log_params(
                {"learner": fit.name, "calibration": fit.calibrator.method,
                 "settings": json.dumps(fit.settings), "chosen": fit is result.chosen}
            )  # fmt: skip
            mlflow.log_metrics(
                {"choice_log_loss": fit.choice_loss,
                 **{f"calibration_log_loss_{k}": v for k, v in fit.losses.items()}}
            )  # fmt: skip
            if fit.notes:
                mlflow.set_tag("notes", "; ".join(fit.notes))


def _log_comparison(result: TrainingResult, folder: Path) -> None:
    """The model-vs-rules report on the holdout, the scored holdout it comes from (for
    `leadscore compare` and the API's /compare), and the suggested points table."""
    scorer = result.scorer
    comparison = holdout_comparison(
        result.holdout, scorer, scorer.metadata.get("cost_per_lead") or None
    )
    write_comparison(comparison, folder)
    holdout = result.holdout.assign(reasons=[json.dumps(r) for r in result.holdout["reasons"]])
    holdout.to_parquet(folder / HOLDOUT_FILE, index=False)
    mlflow.log_artifacts(str(folder), COMPARE_ARTIFACT)
    report = result.scorecard_report
    if report is not None:
        # Logged also when the table is refused: the numbers say why.
        mlflow.log_metrics(
            {
                f"scorecard_{key}": float(value)
                for key, value in report.as_dict().items()
                if isinstance(value, int | float) and np.isfinite(value)
            }
        )
        if report.refused is not None:
            mlflow.set_tag(SCORECARD_REFUSED_TAG, report.refused)
    if result.scorecard is not None:
        mlflow.log_text(result.scorecard.to_yaml(), SCORECARD_FILE)


def _run_artifact(scorer: LeadScorer, path: str, folder: Path) -> Path:
    run_id = scorer.metadata.get("run_id")
    if not run_id:
        raise DataContractError("this model was not logged by `leadscore train`: no MLflow run")
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=str(run_id), artifact_path=path, dst_path=str(folder)
            )
        )
    except (MlflowException, OSError) as exc:
        raise DataContractError(
            f"model v{scorer.model_version} has no '{path}' in its run {run_id}",
            hint="models trained by an older version lack it: train again",
        ) from exc


def load_holdout(scorer: LeadScorer) -> pd.DataFrame:
    """The scored holdout logged with a model (each holdout lead once, with its outcome)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _run_artifact(scorer, f"{COMPARE_ARTIFACT}/{HOLDOUT_FILE}", Path(tmp))
        holdout = pd.read_parquet(path)
    holdout["reasons"] = [json.loads(r) for r in holdout["reasons"]]
    return holdout


def load_suggested_points(scorer: LeadScorer) -> tuple[PointsRules, dict[str, float]]:
    """The suggested points table logged with a model, and its scorecard_* holdout metrics."""
    run_id = scorer.metadata.get("run_id")
    refused = (
        MlflowClient().get_run(str(run_id)).data.tags.get(SCORECARD_REFUSED_TAG) if run_id else None
    )
    if refused:
        raise DataContractError(
            f"model v{scorer.model_version} has no suggested points table: {refused}",
            hint="the model's own MQL flag and tiers keep its lift",
        )
    with tempfile.TemporaryDirectory() as tmp:
        table = PointsRules.from_yaml(_run_artifact(scorer, SCORECARD_FILE, Path(tmp)))
    metrics = MlflowClient().get_run(str(scorer.metadata["run_id"])).data.metrics
    prefix = "scorecard_"
    return table, {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}


def _log_bundle(scorer_folder: Path, example: pd.DataFrame, output: pd.DataFrame) -> ModelInfo:
    """Log the pyfunc bundle (model from code, the scorer as an artifact) with the run."""
    info: ModelInfo = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_ENTRY),
        artifacts={SCORER_ARTIFACT: str(scorer_folder)},
        signature=_signature(example, output),
        input_example=example,
        pip_requirements=_versions_pinned(),
    )
    return info


def _signature(example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """The bundle's signature, inferred from its example, with every column but the lead's id
    and creation time optional: a lead without an attribute, `as_of` or events is scored (as
    the API scores it), not refused by MLflow's schema check."""
    inferred = infer_signature(example, output)
    assert inferred.inputs is not None
    inputs = Schema(
        [
            ColSpec(spec.type, spec.name, required=spec.name in (LEAD_ID, CREATED_AT))
            for spec in inferred.inputs.inputs
            if isinstance(spec, ColSpec)
        ]
    )
    return ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)


def promote(name: str, version: str, workdir: Path) -> str:
    """Move `champion` to `version` by hand; the previous champion becomes `challenger`."""
    check_store(workdir)
    client = MlflowClient()
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise DataContractError(f"model '{name}' has no version {version}") from exc
    previous = None
    with contextlib.suppress(MlflowException):
        previous = str(client.get_model_version_by_alias(name, CHAMPION).version)
    client.set_registered_model_alias(name, CHAMPION, version)
    if previous and previous != version:
        client.set_registered_model_alias(name, CHALLENGER, previous)
    return previous or ""
