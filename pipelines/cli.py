"""The `leadscore` command line: thin wiring of loaders, feature builders, rules and outputs."""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    # The commands' libraries, imported when a command runs (`_import_command_modules`).
    from pipelines.command_imports import *


def _import_command_modules() -> None:
    """Load what the commands use (pandas, scikit-learn, MLflow, LightGBM: seconds of imports)
    when a command runs, not when the command line starts: `leadscore --help` answers at once.
    The names land in this module's globals, where the commands look them up."""
    from pipelines import command_imports

    names = vars(command_imports)
    globals().update(
        {k: v for k, v in names.items() if not k.startswith("_") and k != "annotations"}
    )


app = typer.Typer(
    help="Predictive lead scoring: point-in-time features and rule-based points.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Docstrings are wrapped at the source's width: Markdown joins their lines into paragraphs.
    rich_markup_mode="markdown",
)
console = Console()
error_console = Console(stderr=True)
logger = logging.getLogger("leadscore")

P = ParamSpec("P")
R = TypeVar("R")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (dataset, features, snapshots).")
]
LeadsOption = Annotated[
    Path | None, typer.Option("--leads", help="Leads file (CSV or Parquet); default: the config's.")
]
EventsOption = Annotated[
    Path | None,
    typer.Option("--events", help="Events file (CSV or Parquet); default: the config's."),
]

RulesOption = Annotated[Path | None, typer.Option("--rules", help="Points rules YAML.")]


# Outputs are checked when the command line is read, before any work: a wrong name is one line
# and exit 2, not a traceback after minutes of scoring.
def _output_file(path: Path, suffixes: tuple[str, ...]) -> Path:
    if path.suffix.lower() not in suffixes:
        raise typer.BadParameter(f"{path}: must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a folder; name a file in it")
    _writable_folder(path.parent)
    return path


def _writable_folder(folder: Path) -> None:
    """`folder` or the nearest of its parents that exists is a folder (the rest is created)."""
    for existing in (folder, *folder.parents):
        if existing.exists():
            if not existing.is_dir():
                raise typer.BadParameter(f"{existing} is a file, not a folder")
            return


def _table_file(path: Path) -> Path:
    return _output_file(path, (".parquet", ".csv"))


def _yaml_file(path: Path) -> Path:
    return _output_file(path, (".yaml", ".yml"))


def _output_folder(path: Path) -> Path:
    _writable_folder(path)
    return path


ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model URI; default `models:/NAME@champion`, NAME the config's train.model_name.",
    ),
]


def user_errors_exit(command: Callable[P, R]) -> Callable[P, R]:
    """Print a user's mistake as one line and exit 2, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _import_command_modules()
        try:
            return command(*args, **kwargs)
        except DataContractError as exc:
            error_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            # One line, not a traceback: a model version is registered only by a training run
            # that finished, and `champion` moves last.
            error_console.print("[bold red]interrupted[/]")
            raise typer.Exit(code=130) from None

    return wrapper


@contextmanager
def progress_steps(total: int, description: str) -> Iterator[Callable[[str], None]]:
    """A rich progress bar over named steps; yields `advance(step_name)`."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=error_console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total)

        def advance(step: str) -> None:
            progress.update(task, advance=1, description=f"{description}: {step}")

        yield advance
        progress.update(task, completed=total, description=f"{description}: done")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Predictive lead scoring with honest probabilities, beside the rule-based points."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=error_console, show_path=False, show_time=False)],
    )


def _parse_as_of(text: str, option: str = "--as-of") -> pd.Timestamp:
    try:
        as_of = pd.Timestamp(text)
    except ValueError as exc:
        raise DataContractError(f"{option}: cannot parse '{text}' as a timestamp") from exc
    if as_of.tzinfo is None:
        raise DataContractError(f"{option}: '{text}' has no timezone; add one, e.g. {text}Z")
    return as_of.tz_convert("UTC")


def _input_paths(
    dataset: DatasetConfig, leads: Path | None, events: Path | None
) -> tuple[Path, Path | None]:
    leads_path = leads or dataset.leads_path
    if leads_path is None:
        raise DataContractError("no leads file: pass --leads or set dataset.leads_path")
    return leads_path, events or dataset.events_path


def _event_export(settings: LeadscoreConfig, command: str) -> None:
    """The commands that rebuild features or points at a moment read an event export."""
    if settings.dataset.mode == "snapshot":
        raise DataContractError(
            f"{command} builds from an event export (leads and their events); this config's "
            "dataset is a snapshot export (dataset.mode: snapshot)",
            hint="snapshot exports are read by leakage, train, score and compare",
        )


@contextmanager
def _naming(settings: LeadscoreConfig, leads: Path | None) -> Iterator[None]:
    """Errors about a lead column, raised by the kernel (which sees values, not files), name
    the leads file (`leads`, or the config's) too."""
    leads_file = _input_paths(settings.dataset, leads, None)[0]
    try:
        yield
    except DataContractError as exc:
        if exc.file is not None or exc.column is None:
            raise
        raise exc.in_file(leads_file) from None


def _load(
    config: LeadscoreConfig,
    leads: Path | None,
    events: Path | None,
    advance: Callable[[str], None],
    rules: PointsRules | None = None,
    features: FeatureConfig | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leads and events in contract form. Events keep the types the features read (`features`,
    default the config's) and the types the points table scores: the rules see every action
    their table names, whether or not the model uses it."""
    features = features or config.features
    event_types = list(dict.fromkeys([*features.event_types, *(rules.events if rules else ())]))
    leads_path, events_path = _input_paths(config.dataset, leads, events)
    lead_frame = load_leads(leads_path, config.dataset)
    advance(f"{len(lead_frame):,} leads loaded")
    if events_path is None:
        event_frame = pd.DataFrame(
            {
                "lead_id": lead_frame["lead_id"].iloc[:0],
                "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
                "event_type": pd.Categorical([], categories=event_types),
            }
        )
    else:
        event_frame, report = load_events(events_path, config.dataset, lead_frame, event_types)
        logger.info("%s: %s", events_path, report.summary())
        seen = {*event_frame["event_type"].dropna().unique(), *report.unknown_event_types}
        if rules is not None and (never := rules.actions_never_seen(seen)):
            logger.warning(
                "%s has no event of %s, which the points table scores: a type spelt otherwise "
                "than in the events file earns nothing",
                events_path,
                ", ".join(never),
            )
    advance(f"{len(event_frame):,} events loaded")
    return lead_frame, event_frame


def _rules(config: LeadscoreConfig, rules: Path | None) -> PointsRules:
    path = rules or config.rules_path
    if path is None:
        return PointsRules.default()
    table = PointsRules.from_yaml(path)
    for never in table.values_never_taken(derived_levels(config.features)):
        logger.warning("%s scores %s: a value no lead can have earns nothing", path, never)
    return table


@app.command()
@user_errors_exit
def generate(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for leads/events/truth.parquet.", callback=_output_folder
        ),
    ],
    leads: Annotated[int, typer.Option("--leads", min=1, help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same files.")] = 0,
    months: Annotated[int, typer.Option("--months", min=1, help="Months of history.")] = 18,
) -> None:
    """Simulate a B2B funnel: leads, their events and the true conversion probabilities."""
    simulator = SimulatorConfig(n_leads=leads, seed=seed, months=months)
    with progress_steps(total=len(SIMULATION_STEPS), description="generate") as advance:
        funnel = simulate_funnel(simulator, on_step=advance)
        paths = write_funnel(funnel, out)
    converted = funnel.leads["converted"]
    console.print(
        f"{len(funnel.leads):,} leads, {len(funnel.events):,} events "
        f"({int((converted == 1).sum()):,} won, {int((converted == 0).sum()):,} lost, "
        f"{int(converted.isna().sum()):,} open) -> {', '.join(str(p) for p in paths)}"
    )


@app.command()
@user_errors_exit
def features(
    out: Annotated[
        Path, typer.Option("--out", help="Output file (.parquet or .csv).", callback=_table_file)
    ],
    as_of: Annotated[
        str, typer.Option("--as-of", help="Score time with timezone, e.g. 2025-06-01T00:00:00Z.")
    ],
    leads: LeadsOption = None,
    events: EventsOption = None,
    config: ConfigOption = None,
) -> None:
    """Point-in-time features of every lead created by AS_OF, from events strictly before it."""
    settings = load_config(config)
    _event_export(settings, "features")
    moment = _parse_as_of(as_of)
    with progress_steps(total=4, description="features") as advance:
        lead_frame, event_frame = _load(settings, leads, events, advance)
        with _naming(settings, leads):
            frame = build_features(lead_frame, event_frame, moment, settings.features)
        advance(f"{len(frame):,} rows built")
        write_table_atomic(frame, out)
    console.print(f"{len(frame):,} leads x {frame.shape[1] - 2} features at {moment} -> {out}")


@app.command("training-set")
@user_errors_exit
def training_set(
    out: Annotated[
        Path, typer.Option("--out", help="Output file (.parquet or .csv).", callback=_table_file)
    ],
    leads: LeadsOption = None,
    events: EventsOption = None,
    config: ConfigOption = None,
) -> None:
    """Labelled point-in-time snapshots, taken the way production scores leads."""
    settings = load_config(config)
    _event_export(settings, "training-set")
    with progress_steps(total=4, description="training set") as advance:
        lead_frame, event_frame = _load(settings, leads, events, advance)
        with _naming(settings, leads):
            frame = make_training_set(
                lead_frame, event_frame, settings.snapshots, settings.features
            )
        advance(f"{len(frame):,} snapshots built")
        write_table_atomic(frame, out)
    console.print(
        f"{len(frame):,} snapshots of {frame['lead_id'].nunique():,} leads, "
        f"{frame[LABEL].mean():.1%} converted within "
        f"{settings.snapshots.horizon_days} days -> {out}"
    )


@app.command()
@user_errors_exit
def points(
    out: Annotated[
        Path, typer.Option("--out", help="Output file (.parquet or .csv).", callback=_table_file)
    ],
    as_of: Annotated[str, typer.Option("--as-of", help="Score time with timezone.")],
    leads: LeadsOption = None,
    events: EventsOption = None,
    rules: RulesOption = None,
    config: ConfigOption = None,
) -> None:
    """Rule-based points and MQL flag of every lead created by AS_OF."""
    settings = load_config(config)
    _event_export(settings, "points")
    moment = _parse_as_of(as_of)
    table = _rules(settings, rules)
    with progress_steps(total=4, description="points") as advance:
        lead_frame, event_frame = _load(settings, leads, events, advance, table)
        known = lead_frame[lead_frame["created_at"] <= moment].sort_values("lead_id")
        spine = pd.DataFrame({"lead_id": known["lead_id"].to_numpy(), "as_of": moment})
        with _naming(settings, leads):
            scored = table.score(spine, lead_frame, event_frame, settings.features)
        advance(f"{len(scored):,} leads scored")
        write_table_atomic(scored, out)
    console.print(
        f"{len(scored):,} leads, {int(scored[RULE_MQL].sum()):,} rule MQLs "
        f"(threshold {table.mql_threshold:g}) -> {out}"
    )


DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Folder with leads.parquet and events.parquet (simulator output)."),
]


def _data_paths(
    data: Path | None, leads: Path | None, events: Path | None
) -> tuple[Path | None, Path | None]:
    if data is None:
        return leads, events
    return leads or data / "leads.parquet", events or data / "events.parquet"


@app.command()
@user_errors_exit
def train(
    data: DataOption = None,
    leads: LeadsOption = None,
    events: EventsOption = None,
    rules: RulesOption = None,
    config: ConfigOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Refuse to train when the leakage check flags columns.")
    ] = False,
    require_champion: Annotated[
        bool,
        typer.Option(
            "--require-champion",
            help="Exit non-zero unless the model passes the publish gate and becomes champion.",
        ),
    ] = False,
) -> None:
    """Check for leakage, train candidates, calibrate and evaluate against the rules; log to
    MLflow and register the model. It becomes champion only when it beats the rules and the
    current champion on the newest holdout; a collapsed model is refused (exit 1)."""
    settings = load_config(config)
    leads, events = _data_paths(data, leads, events)
    table = _rules(settings, rules)
    # The store is asked first: one that cannot be reached fails now, not after the training.
    check_store(settings.workdir)
    with progress_steps(total=2 + TRAINING_STEPS, description="train") as advance:
        if settings.dataset.mode == "snapshot":
            export = _snapshot(settings, leads)
            advance(f"{len(export.leads):,} leads loaded")
            labels = export.labelled[CONVERTED]
            _check_leakage(export.labelled, labels, export.features, strict)
            advance("leakage checked")
            run = run_snapshot_training(export, settings, table, on_step=advance)
        else:
            lead_frame, event_frame = _load(settings, leads, events, advance, table)
            closed = lead_frame[lead_frame[CONVERTED].notna()] if CONVERTED in lead_frame else None
            if closed is not None and closed[CONVERTED].nunique() == 2:
                _check_leakage(closed, closed[CONVERTED], settings.features, strict)
            with _naming(settings, leads):
                run = run_training(lead_frame, event_frame, settings, table, on_step=advance)
    _print_training(run)
    registration = run.registration
    if registration.refused or (require_champion and registration.alias != CHAMPION):
        raise typer.Exit(code=1)


def _snapshot(
    settings: LeadscoreConfig,
    path: Path | None,
    trained: FeatureConfig | None = None,
    labelled: bool | None = None,
) -> SnapshotTable:
    leads_path, _ = _input_paths(settings.dataset, path, None)
    return load_snapshot_table(
        leads_path,
        settings.dataset,
        settings.features,
        trained=trained,
        require_label=trained is None if labelled is None else labelled,
    )


def _check_leakage(
    leads: pd.DataFrame, labels: pd.Series, features: FeatureConfig, strict: bool
) -> None:
    """Warn about (or with --strict, refuse) the lead columns the model would learn from that
    give the outcome away."""
    columns = [
        c
        for c in (*features.categorical_columns, *features.numeric_columns, features.title_column)
        if c is not None and c in leads.columns
    ]
    findings = leakage_findings(
        leads[columns].reset_index(drop=True), labels.astype(int).reset_index(drop=True)
    )
    if not findings:
        logger.info("leakage check: no column gives the outcome away")
        return
    flagged = ", ".join(dict.fromkeys(f"'{f.column}'" for f in findings))
    if strict:
        raise DataContractError(
            f"the leakage check flags {flagged}",
            hint="add them to dataset.exclude_columns (see `leadscore leakage`) or drop --strict",
        )
    for line in leakage_report(findings).splitlines():
        logger.warning("leakage check: %s", line)


def _print_training(run: TrainingRun) -> None:
    result = run.result
    meta = result.scorer.metadata
    console.print(
        f"label: {meta.get('label_meaning', '?')}; as_of: {meta.get('as_of_source', '?')}",
        highlight=False,
    )
    console.print("[bold]time slices[/] (oldest first)", highlight=False)
    for line in result.drift.lines():
        console.print(f"  {line}", highlight=False)
    for warning in result.drift.warnings:
        error_console.print(f"[bold yellow]drift:[/] {warning}", highlight=False)
    console.print(
        f"model: {result.chosen.name} ({result.scorer.metadata['chosen_because']})",
        highlight=False,
    )
    console.print(model_vs_rules_table(result.evaluation.metrics))
    registration = run.registration
    name = run.result.scorer.metadata.get("model_name", "model")
    if registration.refused:
        error_console.print(
            f"[bold red]not registered:[/] {name} {registration.reason}; "
            f"MLflow run {registration.run_id}",
            highlight=False,
        )
        return
    console.print(
        f"registered [bold]{name}[/] "
        f"v{registration.version} as [bold]{registration.alias}[/] ({registration.reason}); "
        f"MLflow run {registration.run_id}",
        highlight=False,
    )
    report = run.result.scorecard_report
    if report is not None and report.refused is not None:
        console.print(f"no suggested points table: {report.refused}", highlight=False)
    elif report is not None:
        console.print(
            f"suggested points table: {report.n_rules} rules, ROC AUC "
            f"{report.scorecard_roc_auc:.3f} ({report.roc_auc_basis}), keeps "
            f"{report.lift_kept:.0%} of the model's lift at equal volume (export it with "
            "`leadscore scorecard --out points.yaml`)",
            highlight=False,
        )


@app.command()
@user_errors_exit
def score(
    input: Annotated[Path, typer.Option("--input", help="Leads to score (CSV or Parquet).")],
    output: Annotated[
        Path, typer.Option("--output", help="Scores (.csv or .parquet).", callback=_table_file)
    ],
    events: EventsOption = None,
    model: ModelOption = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Score time with timezone; default now.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Score leads through the registered pyfunc bundle: the same path the API serves."""
    settings = load_config(config)
    moment = None if as_of is None else _parse_as_of(as_of)
    with progress_steps(total=5, description="score") as advance:
        scorer = _registered_scorer(settings, model)
        advance(f"model v{scorer.model_version} loaded")
        if scorer.features.source == "snapshot":
            export = _snapshot(settings, input, trained=scorer.features)
            lead_frame, event_frame = export.leads, empty_events(export.leads[LEAD_ID])
            advance(f"{len(lead_frame):,} leads loaded")
        else:
            lead_frame, event_frame = _load(
                settings, input, events, advance, scorer.rules, scorer.features
            )
        with _naming(settings, input):
            scored = scorer.score(lead_frame, event_frame, moment)
        advance(f"{len(scored):,} leads scored")
        scored["reasons"] = [json.dumps(r) for r in scored["reasons"]]
        write_table_atomic(scored, output)
    console.print(
        f"{len(scored):,} leads scored by v{scorer.model_version}: "
        f"{int(scored['mql'].sum()):,} MQLs (threshold {scorer.policy.threshold:.3f}), "
        f"{int(scored[RULE_MQL].sum()):,} rule MQLs -> {output}"
    )


def _use_store_of(settings: LeadscoreConfig, uri: str) -> None:
    """The store a registered model is read from must exist (a path to a bundle needs none)."""
    if uri.startswith(("models:/", "runs:/")):
        use_existing_store(settings.workdir)
    else:
        use_tracking(settings.workdir)


def _registered_scorer(settings: LeadscoreConfig, model: str | None) -> LeadScorer:
    uri = model or f"models:/{settings.train.model_name}@champion"
    _use_store_of(settings, uri)
    try:
        return load_scorer(uri)
    except ScoresDisagree as exc:
        raise DataContractError(f"model {uri}: {exc}") from exc
    except MlflowException as exc:
        raise DataContractError(
            f"cannot load model {uri}: {str(exc).splitlines()[0]}",
            hint="train one first (leadscore train) or pass --model",
        ) from exc


@app.command()
@user_errors_exit
def compare(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for compare.html and the CSV lists.", callback=_output_folder
        ),
    ],
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="A labelled snapshot export to compare on (snapshot-mode models); default: "
            "the model's own holdout, the newest leads it never learned from.",
        ),
    ] = None,
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Model MQL list vs rules MQL list, at equal volume and at each one's own threshold: an HTML
    report for marketers and CSV lists, each lead with its reasons."""
    settings = load_config(config)
    scorer = _registered_scorer(settings, model)
    if input is None:
        scored = load_holdout(scorer)
        where = f"the holdout of v{scorer.model_version}"
    elif scorer.features.source == "snapshot":
        export = _snapshot(settings, input, trained=scorer.features, labelled=True)
        leads = export.labelled
        scored = scorer.score(leads, empty_events(leads[LEAD_ID]))
        scored[CONVERTED] = leads[CONVERTED].to_numpy(dtype=np.int64)
        source = scorer.metadata.get("source_column")
        if source in leads.columns:
            scored[source] = leads[source].to_numpy()
        where = str(input)
    else:
        raise DataContractError(
            "--input compares on a snapshot export; this model learned from events",
            hint="leave --input out to compare on the model's own holdout",
        )
    cost = settings.dataset.cost_per_lead or scorer.metadata.get("cost_per_lead") or None
    comparison = holdout_comparison(scored, scorer, cost)
    paths = write_comparison(comparison, out, title=f"Model vs rules: {where}")
    console.print(headline(comparison.equal_volume), highlight=False)
    console.print(f"report and lists -> {paths[0].parent}/ ({paths[0].name} and CSVs)")


@app.command()
@user_errors_exit
def scorecard(
    out: Annotated[
        Path,
        typer.Option("--out", help="The suggested points table (YAML).", callback=_yaml_file),
    ],
    model: ModelOption = None,
    config: ConfigOption = None,
) -> None:
    """Export the suggested points table fitted to the model at training: a sparse integer
    table in the rules format, to load into a marketing-automation tool."""
    settings = load_config(config)
    scorer = _registered_scorer(settings, model)
    table, metrics = load_suggested_points(scorer)
    write_text_atomic(table.to_yaml(), out)
    console.print(
        f"{len(table.rule_keys())} rules, MQL at {table.mql_threshold:g} points -> {out}",
        highlight=False,
    )
    if metrics:
        console.print(
            f"on the holdout: ROC AUC {metrics.get('scorecard_roc_auc', float('nan')):.3f} "
            f"(model {metrics.get('model_roc_auc', float('nan')):.3f}, current rules "
            f"{metrics.get('rules_roc_auc', float('nan')):.3f}); at equal volume it keeps "
            f"{metrics.get('lift_kept', float('nan')):.0%} of the model's lift",
            highlight=False,
        )


@app.command()
@user_errors_exit
def promote(
    version: Annotated[str, typer.Option("--version", help="Registered version to serve.")],
    config: ConfigOption = None,
) -> None:
    """Move the `champion` alias to a version by hand (the old champion becomes `challenger`)."""
    settings = load_config(config)
    previous = promote_version(settings.train.model_name, version, settings.workdir)
    console.print(
        f"{settings.train.model_name} v{version} is champion"
        + (f" (was v{previous}, now challenger)" if previous and previous != version else "")
    )


@app.command()
@user_errors_exit
def leakage(
    input: Annotated[
        Path | None,
        typer.Option(
            "--input", help="The export to check (CSV or Parquet); default: the config's."
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option("--label", help="The outcome column, 0/1 or won/lost; default: the config's."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Columns to leave out (ids); repeatable.")
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict", help="Exit 1 when a column the config does not exclude is flagged."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Flag columns that give the outcome away: too predictive alone, filled for one class only,
    or holding values that only exist after the outcome (sales notes, rep ratings). With a
    config, the columns it already excludes are checked too and marked as such."""
    settings = load_config(config)
    dataset = settings.dataset
    input = input or dataset.leads_path
    if input is None:
        raise DataContractError("no file to check: pass --input or set dataset.leads_path")
    label = label or dataset.lead_columns.converted
    frame = read_table(input, dataset.separator)
    if frame.empty:
        raise DataContractError("no leads: the file has no rows", file=input)
    if label not in frame.columns:
        raise DataContractError(f"label column '{label}' is missing", file=input)
    labels = map_labels(frame[label], dataset, input, label)
    unknown = [c for c in exclude or [] if c not in frame.columns]
    if unknown:
        raise DataContractError(
            f"--exclude names column '{unknown[0]}', not in the file", file=input
        )
    open_leads = labels.isna().to_numpy()
    if open_leads.all():
        raise DataContractError(
            "no lead has a known outcome (won or lost) to check against", file=input, column=label
        )
    if open_leads.any():
        # As training does: an open lead has no outcome yet.
        console.print(f"{int(open_leads.sum()):,} open leads left out", highlight=False)
        frame, labels = frame[~open_leads], labels[~open_leads]
    # The id, the order column and the close date are not features: left out when the config
    # names them (a close date is written with the outcome).
    keys = (
        [dataset.lead_columns.lead_id, dataset.order_column, dataset.lead_columns.closed_at]
        if config is not None
        else []
    )
    skipped = {label, *(exclude or []), *(k for k in keys if k in frame.columns)}
    tokens = set(dataset.missing_tokens)
    features = frame.drop(columns=list(skipped)).reset_index(drop=True)
    features = features.apply(lambda c: c.where(~c.astype("str").str.strip().isin(tokens)))
    features = features.apply(_numbers_where_all_are)
    outcome = labels.astype(int).reset_index(drop=True)
    findings = leakage_findings(features, outcome)
    excluded = set(dataset.exclude_columns) if config is not None else set()
    console.print(leakage_report(findings, excluded=excluded), highlight=False)
    console.print(auc_ranking_report(rank_by_auc(features, outcome), excluded), highlight=False)
    if strict and any(f.column not in excluded for f in findings):
        raise typer.Exit(code=1)


def _numbers_where_all_are(column: pd.Series) -> pd.Series:
    """A CSV column as numbers when every present value is one, else as it is."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if bool((numbers.notna() == column.notna()).all()) else column


@app.command()
@user_errors_exit
def monitor(
    log_url: Annotated[
        str, typer.Option("--log-url", help="The API's prediction log (SQLAlchemy URL).")
    ] = "sqlite:///predictions.db",
    model: ModelOption = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only predictions from this time on.")
    ] = None,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Include predictions of other versions.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Since deployment: calibration and conversion by tier from outcomes, and drift (PSI)."""
    settings = load_config(config)
    uri = model or f"models:/{settings.train.model_name}@champion"
    _use_store_of(settings, uri)
    try:
        scorer = load_scorer(uri)
    except MlflowException as exc:
        raise DataContractError(f"cannot load model {uri}: {str(exc).splitlines()[0]}") from exc
    moment = None if since is None else _parse_as_of(since, "--since").to_pydatetime()
    report = build_report(log_url, scorer, moment, all_versions)
    titles = {
        "summary": f"Predictions of v{report.version} and their outcomes",
        "by_tier": "Conversion by tier (resolved predictions)",
        "calibration": "Calibration: predicted vs observed",
        "model_vs_rules": "Model MQL list vs rule MQL list",
        "drift": "Drift against training (PSI: <0.1 stable, 0.1-0.25 moderate, >0.25 major)",
    }
    for name, title in titles.items():
        frame = report.tables[name]
        if name == "summary":  # one wide row reads better as a column
            frame = frame.T.reset_index().set_axis(["measure", "value"], axis=1)
        console.print(frame_table(frame, title))


def frame_table(frame: pd.DataFrame, title: str) -> Table:
    """A small DataFrame as a rich table, numbers formatted for reading."""
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(value) for value in row))
    return table


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if value != value else f"{value:,.4g}"
    return str(value)


@app.command()
@user_errors_exit
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Default 127.0.0.1.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default 8000.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Default 1.")] = None,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="Where the embedded MLflow store is.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Serve /predict from the registered champion (settings: LEADSCORE_SERVE_* variables; the
    store and model name are training's, from --config or LEADSCORE_WORKDIR, unless set)."""
    overrides: dict[str, object] = {"host": host, "port": port, "workers": workers}
    overrides["workdir"] = workdir
    if config is not None:
        # What training wrote to is what serves: the config's store and model name, unless the
        # command line or a LEADSCORE_SERVE_ variable names others.
        trained = load_config(config)
        if workdir is None and "LEADSCORE_SERVE_WORKDIR" not in os.environ:
            overrides["workdir"] = trained.workdir
        if "LEADSCORE_SERVE_MODEL_NAME" not in os.environ:
            overrides["model_name"] = trained.train.model_name
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"LEADSCORE_SERVE_{name.upper()}"] = str(value)
    try:
        settings = ServeSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = (
            f"LEADSCORE_SERVE_{'_'.join(map(str, first['loc'])).upper()}: " if first["loc"] else ""
        )
        message = str(first["msg"]).removeprefix("Value error, ")
        error_console.print(f"[bold red]error:[/] {where}{message}", highlight=False)
        raise typer.Exit(code=2) from None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several worker processes share their metrics through files in one folder.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="leadscore-metrics-")
    uvicorn.run(
        "serve.app:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=HeaderDeadlineProtocol,
        log_level="info",
        access_log=settings.access_log,
    )


@app.command()
@user_errors_exit
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where simulated data goes.")] = Path(
        "outputs/demo"
    ),
    leads: Annotated[int, typer.Option("--leads", min=1000, help="Simulated leads.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Simulate a funnel, train and calibrate, evaluate against the rules, register in MLflow."""
    settings = LeadscoreConfig()
    check_store(settings.workdir)
    with progress_steps(total=len(SIMULATION_STEPS), description="simulate") as advance:
        funnel = simulate_funnel(SimulatorConfig(n_leads=leads, seed=seed), on_step=advance)
        write_funnel(funnel, workdir / "data")
    settings = settings.model_copy(
        update={
            "snapshots": settings.snapshots.model_copy(
                update={"observed_until": funnel.observed_until}
            )
        }
    )
    with progress_steps(total=TRAINING_STEPS, description="train") as advance:
        run = run_training(
            funnel.leads, funnel.events, settings, PointsRules.default(), on_step=advance
        )
    _print_training(run)
    console.print(
        f"data in {workdir / 'data'}/; MLflow store in {tracking_uri(settings.workdir)} "
        "(see it with: .venv/bin/mlflow ui --backend-store-uri "
        f"{tracking_uri(settings.workdir)})",
        highlight=False,
    )


def model_vs_rules_table(metrics: dict[str, float]) -> Table:
    """Model and rules side by side on the newest holdout, and at equal MQL volume."""
    table = Table(
        title="Model vs rule-based points on the newest holdout",
        caption=f"rules: {RULES_BASIS_NOTE}",
    )
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("rules", justify="right")
    rows = [
        ("ROC AUC", "roc_auc", "{:.3f}"),
        ("PR AUC", "pr_auc", "{:.3f}"),
        ("log loss", "log_loss", "{:.4f}"),
        ("Brier", "brier", "{:.4f}"),
        ("calibration error (ECE)", "ece", "{:.4f}"),
        ("MQLs at own threshold", "mql_count", "{:,.0f}"),
        ("MQL conversion rate", "mql_precision", "{:.1%}"),
        ("MQL recall", "mql_recall", "{:.1%}"),
        ("leads tied at the MQL threshold", "ties_at_threshold", "{:,.0f}"),
    ]
    for label, key, fmt in rows:
        model, rules = metrics.get(f"model_{key}"), metrics.get(f"rules_{key}")
        table.add_row(
            label,
            "-" if model is None else fmt.format(model),
            "-" if rules is None else fmt.format(rules),
        )
    equal = {
        k.removeprefix("equal_volume_"): v
        for k, v in metrics.items()
        if k.startswith("equal_volume_")
    }
    if equal:
        table.add_section()
        volume = equal.get("rules_count", float("nan"))
        table.add_row(
            f"conversion at the rules' volume ({volume:,.0f} MQLs)",
            f"{equal.get('model_conversion_rate', float('nan')):.1%}",
            f"{equal.get('rules_conversion_rate', float('nan')):.1%}",
        )
        table.add_row(
            "model list / rules list conversion",
            f"{equal.get('conversion_ratio', float('nan')):.2f}x",
            "1.00x",
        )
    return table
