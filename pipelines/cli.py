"""The `leadscore` command line: thin wiring of loaders, feature builders, rules and outputs."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from features.build import build_features
from features.config import DatasetConfig
from features.contract import DataContractError, load_events, load_leads
from features.simulator import (
    SIMULATION_STEPS,
    SimulatorConfig,
    simulate_funnel,
    write_funnel,
)
from features.storage import write_table_atomic
from features.training import LABEL, make_training_set
from models.points import RULE_MQL, RULE_SCORE, PointsRules
from pipelines.config import LeadscoreConfig, load_config

app = typer.Typer(
    help="Predictive lead scoring: point-in-time features and rule-based points.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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


def user_errors_exit(command: Callable[P, R]) -> Callable[P, R]:
    """Print a user's mistake as one line and exit 2, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DataContractError as exc:
            error_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

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


def _parse_as_of(text: str) -> pd.Timestamp:
    try:
        as_of = pd.Timestamp(text)
    except ValueError as exc:
        raise DataContractError(f"--as-of: cannot parse '{text}' as a timestamp") from exc
    if as_of.tzinfo is None:
        raise DataContractError(f"--as-of: '{text}' has no timezone; add one, e.g. {text}Z")
    return as_of.tz_convert("UTC")


def _input_paths(
    dataset: DatasetConfig, leads: Path | None, events: Path | None
) -> tuple[Path, Path | None]:
    leads_path = leads or dataset.leads_path
    if leads_path is None:
        raise DataContractError("no leads file: pass --leads or set dataset.leads_path")
    return leads_path, events or dataset.events_path


def _load(
    config: LeadscoreConfig, leads: Path | None, events: Path | None, advance: Callable[[str], None]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    leads_path, events_path = _input_paths(config.dataset, leads, events)
    lead_frame = load_leads(leads_path, config.dataset)
    advance(f"{len(lead_frame):,} leads loaded")
    if events_path is None:
        event_frame = pd.DataFrame(
            {
                "lead_id": lead_frame["lead_id"].iloc[:0],
                "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
                "event_type": pd.Categorical([], categories=config.features.event_types),
            }
        )
    else:
        event_frame, report = load_events(
            events_path, config.dataset, lead_frame, config.features.event_types
        )
        logger.info("%s: %s", events_path, report.summary())
    advance(f"{len(event_frame):,} events loaded")
    return lead_frame, event_frame


def _rules(config: LeadscoreConfig, rules: Path | None) -> PointsRules:
    path = rules or config.rules_path
    return PointsRules.default() if path is None else PointsRules.from_yaml(path)


@app.command()
@user_errors_exit
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder for leads/events/truth.parquet.")],
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
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    as_of: Annotated[
        str, typer.Option("--as-of", help="Score time with timezone, e.g. 2025-06-01T00:00:00Z.")
    ],
    leads: LeadsOption = None,
    events: EventsOption = None,
    config: ConfigOption = None,
) -> None:
    """Point-in-time features of every lead created by AS_OF, from events strictly before it."""
    settings = load_config(config)
    moment = _parse_as_of(as_of)
    with progress_steps(total=4, description="features") as advance:
        lead_frame, event_frame = _load(settings, leads, events, advance)
        frame = build_features(lead_frame, event_frame, moment, settings.features)
        advance(f"{len(frame):,} rows built")
        write_table_atomic(frame, out)
    console.print(f"{len(frame):,} leads x {frame.shape[1] - 2} features at {moment} -> {out}")


@app.command("training-set")
@user_errors_exit
def training_set(
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    leads: LeadsOption = None,
    events: EventsOption = None,
    config: ConfigOption = None,
) -> None:
    """Labelled point-in-time snapshots, taken the way production scores leads."""
    settings = load_config(config)
    with progress_steps(total=4, description="training set") as advance:
        lead_frame, event_frame = _load(settings, leads, events, advance)
        frame = make_training_set(lead_frame, event_frame, settings.snapshots, settings.features)
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
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    as_of: Annotated[str, typer.Option("--as-of", help="Score time with timezone.")],
    leads: LeadsOption = None,
    events: EventsOption = None,
    rules: Annotated[Path | None, typer.Option("--rules", help="Points rules YAML.")] = None,
    config: ConfigOption = None,
) -> None:
    """Rule-based points and MQL flag of every lead created by AS_OF."""
    settings = load_config(config)
    moment = _parse_as_of(as_of)
    table = _rules(settings, rules)
    with progress_steps(total=4, description="points") as advance:
        lead_frame, event_frame = _load(settings, leads, events, advance)
        known = lead_frame[lead_frame["created_at"] <= moment].sort_values("lead_id")
        spine = pd.DataFrame({"lead_id": known["lead_id"].to_numpy(), "as_of": moment})
        scored = table.score(spine, lead_frame, event_frame, settings.features)
        advance(f"{len(scored):,} leads scored")
        write_table_atomic(scored, out)
    console.print(
        f"{len(scored):,} leads, {int(scored[RULE_MQL].sum()):,} rule MQLs "
        f"(threshold {table.mql_threshold:g}) -> {out}"
    )


@app.command()
@user_errors_exit
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where outputs go.")] = Path(
        "outputs/demo"
    ),
    leads: Annotated[int, typer.Option("--leads", min=100, help="Simulated leads.")] = 20_000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Simulate a funnel, build point-in-time training snapshots and score the rules on them."""
    settings = LeadscoreConfig()
    data_dir = workdir / "data"
    with progress_steps(total=len(SIMULATION_STEPS), description="simulate") as advance:
        funnel = simulate_funnel(SimulatorConfig(n_leads=leads, seed=seed), on_step=advance)
        write_funnel(funnel, data_dir)
    with progress_steps(total=3, description="snapshots") as advance:
        snapshots = settings.snapshots.model_copy(update={"observed_until": funnel.observed_until})
        frame = make_training_set(funnel.leads, funnel.events, snapshots, settings.features)
        advance(f"{len(frame):,} snapshots")
        rules = PointsRules.default()
        scored = rules.score(
            frame[["lead_id", "as_of"]], funnel.leads, funnel.events, settings.features
        )
        frame[RULE_SCORE], frame[RULE_MQL] = (
            scored[RULE_SCORE].to_numpy(),
            scored[RULE_MQL].to_numpy(),
        )
        advance("rule points scored")
        write_table_atomic(frame, workdir / "training_set.parquet")
        advance("written")
    console.print(rules_summary_table(frame, snapshots.horizon_days))
    console.print(f"outputs in {workdir}/")


def rules_summary_table(frame: pd.DataFrame, horizon_days: int) -> Table:
    """How the rule-based MQL list converts, on labelled snapshots."""
    table = Table(
        title=f"Rule-based points on {len(frame):,} snapshots "
        f"(conversion within {horizon_days} days)"
    )
    for column in ("list", "snapshots", "share", "converted", "conversion rate"):
        table.add_column(column, justify="right" if column != "list" else "left")
    overall = frame[LABEL].mean()
    for name, part in (
        ("all", frame),
        ("rule MQL", frame[frame[RULE_MQL]]),
        ("not MQL", frame[~frame[RULE_MQL]]),
    ):
        rate = part[LABEL].mean() if len(part) else float("nan")
        table.add_row(
            name,
            f"{len(part):,}",
            f"{len(part) / len(frame):.1%}",
            f"{int(part[LABEL].sum()):,}",
            f"{rate:.1%} ({rate / overall:.2f}x)" if overall else f"{rate:.1%}",
        )
    return table
