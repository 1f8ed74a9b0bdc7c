"""`leadscore train` on a corrupt data file or an MLflow store it cannot use: one clear line,
a non-zero exit, `champion` and the registered versions as they were, and the re-run with the
fault fixed registers."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner, Result

from features.config import DatasetConfig
from features.contract import DataContractError, read_table
from models.registry import CHAMPION, current_champion, use_tracking
from pipelines.cli import app
from simulator.funnel import SimulatorConfig, simulate_funnel, write_funnel

NAME = "leadscore"
runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_funnel(simulate_funnel(SimulatorConfig(n_leads=4_000, seed=3)), folder)
    return folder


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Iterator[Path]:
    """A store whose first model is champion, trained through the command line."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("LEADSCORE_WORKDIR", str(folder))
        result = runner.invoke(app, ["train", "--data", str(data)])
        assert result.exit_code == 0, result.output
        yield folder


def _store(workdir: Path) -> tuple[str, list[str]]:
    """The champion's version and every registered version, read from the store itself."""
    use_tracking(workdir)
    client = MlflowClient()
    champion = str(client.get_model_version_by_alias(NAME, CHAMPION).version)
    versions = sorted(
        (str(v.version) for v in client.search_model_versions(f"name='{NAME}'")), key=int
    )
    return champion, versions


def _assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output  # an uncaught exception would exit 1
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]


def _truncated(good: Path, bad: Path) -> None:
    bad.write_bytes(good.read_bytes()[:3_000])


def _garbled(good: Path, bad: Path) -> None:
    """A third of the way in, 2,000 bytes overwritten: the footer is intact, the data is not."""
    body = bytearray(good.read_bytes())
    start = len(body) // 3
    body[start : start + 2_000] = b"Z" * 2_000
    bad.write_bytes(bytes(body))


def _gzipped_csv(good: Path, bad: Path) -> None:
    """A compressed export saved under a .csv name."""
    bad.write_bytes(gzip.compress(pd.read_parquet(good).to_csv(index=False).encode()))


def _latin1_csv(good: Path, bad: Path) -> None:
    frame = pd.read_parquet(good)
    frame.loc[0, "job_title"] = "Directeur général"
    bad.write_bytes(frame.to_csv(index=False).encode("latin-1"))


def _zero_filled_tail_csv(good: Path, bad: Path) -> None:
    """What a crash can leave of a file being written: its last blocks full of NUL bytes."""
    body = bytearray(pd.read_parquet(good).to_csv(index=False).encode())
    body[-4_096:] = bytes(4_096)
    bad.write_bytes(bytes(body))


def _empty(good: Path, bad: Path) -> None:
    bad.write_bytes(b"")


def _folder(good: Path, bad: Path) -> None:
    bad.mkdir()


Corruption = Callable[[Path, Path], None]


@pytest.mark.parametrize(
    ("which", "name", "corrupt", "problem"),
    [
        ("leads", "leads.parquet", _truncated, "cannot be read"),
        ("leads", "leads.parquet", _garbled, "cannot be read"),
        ("events", "events.parquet", _truncated, "cannot be read"),
        ("leads", "leads.csv", _gzipped_csv, "is not UTF-8 text: byte 0x8b on line 1"),
        ("leads", "leads.csv", _latin1_csv, "is not UTF-8 text: byte 0xe9 on line 2"),
        ("events", "events.csv", _zero_filled_tail_csv, "is not text: NUL bytes on line"),
        ("events", "events.parquet", _empty, "is empty (0 bytes)"),
        ("leads", "leads.csv", _empty, "is empty (0 bytes)"),
        ("leads", "leads.parquet", _folder, "is a folder"),
    ],
)
def test_a_corrupt_data_file_is_one_line_and_leaves_the_registry_as_it_was(
    workdir: Path,
    data: Path,
    tmp_path: Path,
    which: str,
    name: str,
    corrupt: Corruption,
    problem: str,
) -> None:
    before = _store(workdir)
    bad = tmp_path / name
    corrupt(data / f"{which}.parquet", bad)
    files = {"leads": data / "leads.parquet", "events": data / "events.parquet", which: bad}
    result = runner.invoke(
        app, ["train", "--leads", str(files["leads"]), "--events", str(files["events"])]
    )
    _assert_one_line_error(result, str(bad), problem)
    assert _store(workdir) == before


def test_after_a_corrupt_data_file_the_rerun_with_the_good_one_registers(
    workdir: Path, data: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "leads.parquet"
    _truncated(data / "leads.parquet", bad)
    before = _store(workdir)
    events = str(data / "events.parquet")
    result = runner.invoke(app, ["train", "--leads", str(bad), "--events", events])
    _assert_one_line_error(result, str(bad))
    assert _store(workdir) == before

    result = runner.invoke(
        app, ["train", "--leads", str(data / "leads.parquet"), "--events", events]
    )
    assert result.exit_code == 0, result.output
    champion, versions = _store(workdir)
    # The same data again is not worse, so the new version takes champion (the publish gate).
    assert versions == sorted([*before[1], champion], key=int)
    assert champion not in before[1]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's HTTP client gives up at once instead of retrying for minutes."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def _unusable_stores(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Tracking URIs that cannot be used, and what the error says about each."""
    not_a_database = tmp_path / "mlflow.db"
    not_a_database.write_text("this is not a database\n")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file where a folder should be\n")
    return {
        "server that is not there": (
            f"http://127.0.0.1:{_closed_port()}",
            "is unreachable: [Errno 111] Connection refused",
        ),
        "file that is not a database": (
            f"sqlite:///{not_a_database}",
            "cannot be opened: the file is not a SQLite database",
        ),
        "folder where the database should be": (
            f"sqlite:///{tmp_path}",
            "cannot be opened: it is a folder",
        ),
        "path through a file": (
            f"sqlite:///{a_file}/mlflow.db",
            "cannot be opened: a part of its path is a file",
        ),
    }


@pytest.mark.parametrize(
    "store",
    [
        "server that is not there",
        "file that is not a database",
        "folder where the database should be",
        "path through a file",
    ],
)
@pytest.mark.usefixtures("fail_fast")
def test_a_store_that_cannot_be_used_is_one_line_before_any_data_is_read(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    """The store is asked before the data is read or a model trained: the error names the
    store, not the (missing) data, and comes at once."""
    uri, problem = _unusable_stores(tmp_path)[store]
    kept = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "no-data-here")])
    _assert_one_line_error(result, f"MLflow store {uri} {problem}")
    assert {p: p.read_bytes() for p in kept} == kept, "the store's files are left as they were"


@pytest.mark.usefixtures("fail_fast")
def test_an_unreachable_store_registers_nothing_and_the_rerun_sets_champion(
    workdir: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _store(workdir)
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = runner.invoke(app, ["train", "--data", str(data)])
    _assert_one_line_error(result, f"MLflow store {uri} is unreachable")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert _store(workdir) == before

    # The store pointed right again: the same command registers, and the new version is champion.
    result = runner.invoke(app, ["train", "--data", str(data)])
    assert result.exit_code == 0, result.output
    champion, versions = _store(workdir)
    assert champion not in before[1] and versions == sorted([*before[1], champion], key=int)
    client = MlflowClient()
    run_id = client.get_model_version(NAME, champion).run_id
    assert run_id is not None and client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.usefixtures("fail_fast")
def test_a_failing_store_is_not_taken_for_a_store_without_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The publish gate compares with the champion; a store that fails to say which version
    that is must not read as "no champion yet", which would crown the new model unchecked."""
    use_tracking(tmp_path)  # a new store: no model under this name, so no champion
    assert current_champion(NAME) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    use_tracking(tmp_path)
    with pytest.raises(MlflowException):
        current_champion(NAME)


def test_the_bad_line_is_found_past_the_first_block_read(tmp_path: Path) -> None:
    """The text check reads in blocks; the line it names is the file's own, in any block."""
    path = tmp_path / "leads.csv"
    rows = [f"{i},2024-01-01T00:00:00Z,Analyst {i:07d}" for i in range(60_000)]
    rows[45_000] = "45000,2024-01-01T00:00:00Z,Directeur général"
    text = "lead_id,created_at,job_title\n" + "\n".join(rows) + "\n"
    assert len(text) > 2 * (1 << 20)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataContractError, match="byte 0xe9 on line 45002"):
        read_table(path, DatasetConfig().separator)
    path.write_bytes(text.encode())
    assert len(read_table(path)) == 60_000
