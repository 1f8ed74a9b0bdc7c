"""The API with FastAPI's TestClient: contract, errors, parity with batch scoring, hot swap."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from typer.testing import CliRunner

from models.registry import CHAMPION, use_tracking
from pipelines.cli import app as cli_app
from pipelines.training import TrainingRun
from serve.app import create_app
from serve.metrics import BodyLimitAndMetrics, Metrics
from serve.settings import ServeSettings
from simulator.funnel import SimulatedFunnel
from tests.conftest import train_into_store

NAME = "leadscore"


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, SimulatedFunnel, TrainingRun]]:
    workdir = tmp_path_factory.mktemp("serve_store")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        funnel, run = train_into_store(workdir, n_leads=8_000, seed=41)
        yield workdir, funnel, run


def settings(workdir: Path, **overrides: object) -> ServeSettings:
    values: dict[str, object] = {
        "workdir": workdir,
        "reload_interval_seconds": 0,
        "prediction_log_url": f"sqlite:///{workdir / 'predictions.db'}",
    }
    values.update(overrides)
    return ServeSettings(**values)  # type: ignore[arg-type]


def lead_payload(
    funnel: SimulatedFunnel, position: int, days_after: float = 30
) -> dict[str, object]:
    lead = funnel.leads.iloc[position]
    as_of = lead["created_at"] + pd.Timedelta(days=days_after)
    mine = funnel.events[
        (funnel.events["lead_id"] == lead["lead_id"]) & (funnel.events["ts"] < as_of)
    ]
    return {
        "lead_id": str(lead["lead_id"]),
        "created_at": lead["created_at"].isoformat(),
        "as_of": as_of.isoformat(),
        **{
            name: None if pd.isna(lead[name]) else str(lead[name])  # a blank field as null
            for name in ("job_title", "email", "industry", "company_size", "country", "lead_source")
        },
        "events": [
            {"ts": ts.isoformat(), "event_type": str(kind)}
            for ts, kind in zip(mine["ts"], mine["event_type"], strict=True)
        ],
    }


@pytest.fixture
def client(store: tuple[Path, SimulatedFunnel, TrainingRun]) -> Iterator[TestClient]:
    workdir, _, _ = store
    with TestClient(create_app(settings(workdir))) as test_client:
        _wait_ready(test_client)
        yield test_client


def _wait_ready(client: TestClient) -> None:
    for _ in range(200):
        if client.get("/ready").status_code == 200:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the model never loaded")


def test_health_ready_and_model_info(
    client: TestClient, store: tuple[Path, SimulatedFunnel, TrainingRun]
) -> None:
    _, _, run = store
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["model_version"] == run.registration.version
    info = client.get("/model").json()
    assert info["version"] == run.registration.version and info["alias"] == CHAMPION
    assert info["threshold"] == pytest.approx(run.result.scorer.policy.threshold)
    assert set(info["tiers"]) == {"A", "B", "C"} and "model_roc_auc" in info["metrics"]
    assert "pricing_page_view_count_7d" in info["features"] and "job_title" in info["lead_fields"]


def test_ready_is_503_until_a_model_exists(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path))) as test_client:
        assert test_client.get("/health").status_code == 200
        assert test_client.get("/ready").status_code == 503
        response = test_client.post(
            "/predict", json={"lead_id": "1", "created_at": "2025-01-01T00:00:00Z"}
        )
        assert response.status_code == 503


def test_api_answers_equal_batch_scoring(
    client: TestClient, store: tuple[Path, SimulatedFunnel, TrainingRun]
) -> None:
    _, funnel, run = store
    positions = list(range(0, 6_000, 40))
    payloads = [lead_payload(funnel, p, days_after=7 + p % 60) for p in positions]
    singles = [client.post("/predict", json=p).json()["predictions"][0] for p in payloads]
    batch = client.post("/predict", json={"leads": payloads}).json()["predictions"]

    leads = funnel.leads.iloc[positions].reset_index(drop=True)
    spine = pd.DataFrame(
        {
            "lead_id": leads["lead_id"],
            "as_of": pd.to_datetime([p["as_of"] for p in payloads], utc=True),
        }
    )
    spine["as_of"] = spine["as_of"].dt.as_unit("ns")
    expected = run.result.scorer.score_snapshots(spine, funnel.leads, funnel.events)
    for answers in (singles, batch):
        got = pd.DataFrame(answers)
        np.testing.assert_allclose(got["probability"], expected["probability"], rtol=1e-9)
        np.testing.assert_allclose(got["rule_score"], expected["rule_score"], rtol=1e-9, atol=1e-9)
        assert got["tier"].tolist() == expected["tier"].tolist()
        assert got["mql"].tolist() == expected["mql"].tolist()
        assert [[r["phrase"] for r in a["reasons"]["for"]] for a in answers] == [
            [r["phrase"] for r in e["for"]] for e in expected["reasons"]
        ]
        assert set(got["model_version"]) == {run.registration.version}


def test_unknown_categories_missing_fields_and_unknown_events_are_scored(
    client: TestClient,
) -> None:
    response = client.post(
        "/predict",
        json={
            "lead_id": "new-1",
            "created_at": "2025-03-01T09:00:00Z",
            "industry": "asteroid mining",
            "budget": "large",
            "events": [{"ts": "2025-03-02T09:00:00Z", "event_type": "chat_started"}],
        },
    )
    assert response.status_code == 200, response.text
    answer = response.json()["predictions"][0]
    assert 0 < answer["probability"] < 1 and answer["tier"] in "ABCD"
    assert set(answer["reasons"]) == {"for", "against"}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"lead_id": "1"}, ["body", "created_at"]),
        ({"lead_id": "1", "created_at": "2025-03-01T09:00:00"}, ["body", "created_at"]),
        (
            {
                "lead_id": "1",
                "created_at": "2025-03-01T09:00:00Z",
                "events": [{"ts": "x", "event_type": "a"}],
            },
            ["body", "events", 0, "ts"],
        ),
        (
            {"leads": [{"lead_id": "1", "created_at": "soon"}]},
            ["body", "leads", 0, "created_at"],
        ),
        (  # a number is not an event time (no Unix seconds read as 1970)
            {
                "leads": [
                    {
                        "lead_id": "1",
                        "created_at": "2025-03-01T09:00:00Z",
                        "events": [
                            {"ts": "2025-03-02T09:00:00Z", "event_type": "a"},
                            {"ts": 1740909600, "event_type": "a"},
                        ],
                    }
                ]
            },
            ["body", "leads", 0, "events", 1, "ts"],
        ),
        (
            {"lead_id": "1", "created_at": "2025-03-01T09:00:00Z", "events": [{"ts": "x"}]},
            ["body", "events", 0, "event_type"],
        ),
        (
            {"lead_id": "1", "created_at": "2025-03-01T09:00:00Z", "events": "email_open"},
            ["body", "events"],
        ),
        (  # as_of left out is now: a lead created later cannot be scored yet
            {"lead_id": "1", "created_at": "2240-03-01T09:00:00Z"},
            ["body", "created_at"],
        ),
        (  # scored before it was created: the kernel's check names the field, alone or not
            {"lead_id": "1", "created_at": "2025-03-01T09:00:00Z", "as_of": "2025-02-01T09:00:00Z"},
            ["body", "created_at"],
        ),
        (
            {
                "leads": [
                    {"lead_id": "1", "created_at": "2025-03-01T09:00:00Z"},
                    {
                        "lead_id": "2",
                        "created_at": "2025-03-01T09:00:00Z",
                        "as_of": "2025-02-01T09:00:00Z",
                    },
                ]
            },
            ["body", "leads", 1, "created_at"],
        ),
        (  # a placeholder creation date: ages would not fit the kernel's times
            {
                "leads": [
                    {"lead_id": "1", "created_at": "2025-03-01T09:00:00Z"},
                    {"lead_id": "2", "created_at": "1700-01-01T00:00:00Z"},
                ]
            },
            ["body", "leads", 1, "created_at"],
        ),
        (
            {
                "lead_id": "1",
                "created_at": "2025-03-01T09:00:00Z",
                "as_of": "2025-04-01T09:00:00Z",
                "events": [{"ts": "1750-03-02T09:00:00Z", "event_type": "email_open"}],
            },
            ["body", "events"],
        ),
        (  # an event model needs the creation time of every lead
            {"leads": [{"lead_id": "1", "created_at": "2025-03-01T09:00:00Z"}, {"lead_id": "2"}]},
            ["body", "leads", 1, "created_at"],
        ),
    ],
)
def test_bad_input_is_422_with_the_field_path(
    client: TestClient, body: dict[str, object], path: list[object]
) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert path in locations, locations


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_not_sent_as_json_is_415_on_every_route_with_a_body(
    client: TestClient, content_type: str | None
) -> None:
    """A browser page may post such a body without asking CORS first: it is refused, whatever
    it holds, before anything is scored or recorded."""
    bodies = {
        "/predict": {"lead_id": "1", "created_at": "2025-03-01T09:00:00Z"},
        "/outcomes": {
            "outcomes": [{"lead_id": "1", "outcome": "won", "closed_at": "2025-04-01T00:00:00Z"}]
        },
    }
    for route, body in bodies.items():
        headers = {} if content_type is None else {"content-type": content_type}
        response = client.post(route, content=json.dumps(body).encode(), headers=headers)
        assert response.status_code == 415, response.text
        assert "Content-Type: application/json" in response.json()["detail"]
        sent_as_json = {"content-type": "application/json; charset=utf-8"}
        response = client.post(route, content=json.dumps(body).encode(), headers=sent_as_json)
        assert response.status_code == 200, response.text


def test_attribute_that_is_not_a_value_is_422(client: TestClient) -> None:
    response = client.post(
        "/predict", json={"lead_id": "1", "created_at": "2025-03-01T09:00:00Z", "budget": {"a": 1}}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "budget"]


def test_batch_limit_body_limit_and_api_key(
    store: tuple[Path, SimulatedFunnel, TrainingRun],
) -> None:
    workdir, funnel, _ = store
    small = settings(workdir, max_batch=3, max_body_bytes=4_096, api_key="s3cret")
    with TestClient(create_app(small)) as test_client:
        _wait_ready(test_client)
        lead = {"lead_id": "1", "created_at": "2025-03-01T09:00:00Z"}
        assert test_client.post("/predict", json=lead).status_code == 401
        headers = {"X-API-Key": "s3cret"}
        assert test_client.post("/predict", json=lead, headers=headers).status_code == 200
        assert (
            test_client.post("/predict", json=lead, headers={"X-API-Key": "nope"}).status_code
            == 401
        )
        many = {"leads": [lead] * 4}
        assert test_client.post("/predict", json=many, headers=headers).status_code == 413
        big = lead_payload(funnel, 0, days_after=400)
        big["events"] = big["events"] * 50  # type: ignore[operator]
        assert len(json.dumps(big)) > 4_096
        assert test_client.post("/predict", json=big, headers=headers).status_code == 413
        assert test_client.get("/health").status_code == 200


def test_an_outcome_closed_in_the_future_is_422_with_its_path(client: TestClient) -> None:
    later = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=30)).isoformat()
    body = {
        "outcomes": [
            {"lead_id": "closed-1", "outcome": "won", "closed_at": "2025-04-01T00:00:00Z"},
            {"lead_id": "closed-2", "outcome": "lost", "closed_at": later},
        ]
    }
    response = client.post("/outcomes", json=body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "outcomes", 1, "closed_at"] and "future" in error["msg"]
    # All or nothing: the valid one is not recorded either.
    log = client.app.state.service.prediction_log  # type: ignore[attr-defined]
    assert "closed-1" not in set(log.read_outcomes()["lead_id"])


def test_metrics_log_and_outcomes(
    client: TestClient, store: tuple[Path, SimulatedFunnel, TrainingRun]
) -> None:
    _, funnel, _ = store
    client.post("/predict", json={"leads": [lead_payload(funnel, p) for p in range(5)]})
    text = client.get("/metrics").text
    assert 'leadscore_requests_total{method="POST",route="/predict",status="200"}' in text
    assert "leadscore_request_seconds_bucket" in text and "leadscore_predictions_total" in text
    assert "leadscore_model_version" in text
    recorded = client.post(
        "/outcomes",
        json={"outcomes": [{"lead_id": str(funnel.leads["lead_id"].iloc[0]), "outcome": "won",
                            "closed_at": "2025-05-01T00:00:00Z"}]},
    )  # fmt: skip
    assert recorded.status_code == 200 and recorded.json() == {"recorded": 1}
    log = client.app.state.service.prediction_log  # type: ignore[attr-defined]
    log.flush()
    logged = log.read_predictions()
    assert len(logged) >= 5 and {"probability", "tier", "model_version"} <= set(logged.columns)
    assert "email" not in logged.columns and "job_title" not in logged.columns
    assert len(log.read_outcomes()) >= 1


def test_hot_swap_serves_the_new_champion_without_failing_requests(
    store: tuple[Path, SimulatedFunnel, TrainingRun],
) -> None:
    workdir, funnel, run = store
    use_tracking(workdir)
    client = MlflowClient()
    _, second = train_into_store(workdir, n_leads=8_000, seed=42)
    new_version = second.registration.version
    client.set_registered_model_alias(NAME, CHAMPION, run.registration.version)
    with TestClient(create_app(settings(workdir, admin_key="adm1n"))) as test_client:
        _wait_ready(test_client)
        assert test_client.get("/ready").json()["model_version"] == run.registration.version
        client.set_registered_model_alias(NAME, CHAMPION, new_version)
        payload = lead_payload(funnel, 7)
        statuses: list[int] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                statuses.append(test_client.post("/predict", json=payload).status_code)

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            assert test_client.post("/admin/reload").status_code == 401
            swapped = test_client.post("/admin/reload", headers={"X-API-Key": "adm1n"})
        finally:
            stop.set()
            worker.join()
        assert swapped.status_code == 200 and swapped.json()["model_version"] == new_version
        assert statuses and set(statuses) == {200}
        answer = test_client.post("/predict", json=payload).json()["predictions"][0]
        assert answer["model_version"] == new_version
    client.set_registered_model_alias(NAME, CHAMPION, run.registration.version)


def test_monitor_reports_outcomes_by_tier_and_drift(
    client: TestClient, store: tuple[Path, SimulatedFunnel, TrainingRun]
) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app as cli

    workdir, funnel, run = store
    closed = funnel.leads[funnel.leads["converted"].notna()].head(300)
    positions = [int(i) for i in closed.index]
    payloads = [lead_payload(funnel, p, days_after=3) for p in positions]
    assert client.post("/predict", json={"leads": payloads}).status_code == 200
    outcomes = [
        {
            "lead_id": str(row.lead_id),
            "outcome": "won" if row.converted == 1 else "lost",
            "closed_at": row.closed_at.isoformat(),
        }
        for row in closed.itertuples()
    ]
    assert client.post("/outcomes", json={"outcomes": outcomes}).json()["recorded"] == len(outcomes)
    client.app.state.service.prediction_log.flush()  # type: ignore[attr-defined]

    result = CliRunner().invoke(
        cli,
        ["monitor", "--log-url", f"sqlite:///{workdir / 'predictions.db'}"],
        env={"LEADSCORE_WORKDIR": str(workdir)},
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    for title in ("Conversion by tier", "Calibration", "Model MQL list", "Drift against training"):
        assert title in result.output
    # Drift of the probability and of every feature the model watches.
    monitored = run.result.scorer.metadata["monitored_features"]
    assert monitored and all(name in result.output for name in ["probability", *monitored]), (
        result.output
    )


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("notaurl", "is not a database URL"),
        ("sqlite:///{tmp}/typo.db", "no prediction log at"),
        ("sqlite:///{tmp}/no/such/folder/predictions.db", "no prediction log at"),
        ("postgresql+psycopg://user:secret@127.0.0.1:1/db", "cannot read the prediction log"),
    ],
)
def test_monitor_refuses_a_log_that_is_not_there_in_one_line(
    store: tuple[Path, SimulatedFunnel, TrainingRun], tmp_path: Path, url: str, said: str
) -> None:
    """Not an empty log made on the spot (a typo would read as "no predictions yet")."""
    from typer.testing import CliRunner

    from pipelines.cli import app as cli

    workdir, _, _ = store
    result = CliRunner().invoke(
        cli,
        ["monitor", "--log-url", url.format(tmp=tmp_path)],
        env={"LEADSCORE_WORKDIR": str(workdir)},
        terminal_width=300,
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and said in errors[0], result.output
    assert "Traceback" not in result.output and "secret" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_openapi_documents_predict_with_an_example(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    assert "200" in predict["responses"] and "422" in predict["responses"]
    schemas = spec["components"]["schemas"]
    assert schemas["LeadIn"]["examples"][0]["events"]
    assert "probability" in schemas["LeadScore"]["properties"]


def test_a_batch_may_score_one_lead_at_several_times(
    client: TestClient, store: tuple[Path, SimulatedFunnel, TrainingRun]
) -> None:
    _, funnel, _ = store
    early, late = lead_payload(funnel, 5, days_after=2), lead_payload(funnel, 5, days_after=60)
    others = [lead_payload(funnel, p) for p in range(100, 140)]
    for batch in ([early, late], [early, *others, late]):  # the lead-by-lead and batch paths
        answers = client.post("/predict", json={"leads": batch}).json()["predictions"]
        single_early = client.post("/predict", json=early).json()["predictions"][0]
        single_late = client.post("/predict", json=late).json()["predictions"][0]
        assert answers[0]["lead_id"] == answers[-1]["lead_id"] == early["lead_id"]
        assert answers[0]["probability"] == pytest.approx(single_early["probability"], rel=1e-9)
        assert answers[-1]["probability"] == pytest.approx(single_late["probability"], rel=1e-9)


def test_a_streamed_body_over_the_limit_is_413(
    store: tuple[Path, SimulatedFunnel, TrainingRun],
) -> None:
    workdir, _, _ = store
    with TestClient(create_app(settings(workdir, max_body_bytes=4_096))) as test_client:
        _wait_ready(test_client)

        def chunks() -> Iterator[bytes]:
            yield b'{"lead_id": "1", "created_at": "2025-03-01T09:00:00Z", "note": "'
            for _ in range(10):
                yield b"x" * 1_000
            yield b'"}'

        response = test_client.post(
            "/predict", content=chunks(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413


def test_the_api_serves_what_training_wrote_to(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One setting for the store and the model name: training's, unless serving names others."""
    monkeypatch.setenv("LEADSCORE_WORKDIR", str(tmp_path))
    monkeypatch.setenv("LEADSCORE_TRAIN__MODEL_NAME", "xeducation")
    assert ServeSettings().workdir == tmp_path
    assert ServeSettings().model_name == "xeducation"
    monkeypatch.setenv("LEADSCORE_SERVE_WORKDIR", str(tmp_path / "serving"))
    assert ServeSettings().workdir == tmp_path / "serving"
    assert ServeSettings(workdir=Path("elsewhere")).workdir == Path("elsewhere")


@pytest.mark.parametrize(
    ("variables", "refused"),
    [
        ({"LEADSCORE_SERVE_API_KEY": ""}, "LEADSCORE_SERVE_API_KEY: empty or blank"),
        ({"LEADSCORE_SERVE_ADMIN_KEY": "  "}, "LEADSCORE_SERVE_ADMIN_KEY: empty or blank"),
        (
            {
                "LEADSCORE_SERVE_ENVIRONMENT": "production",
                "LEADSCORE_SERVE_API_KEY": "",
                "LEADSCORE_SERVE_ADMIN_KEY": "",
            },
            "empty or blank",
        ),
        ({"LEADSCORE_SERVE_ENVIRONMENT": "production"}, "production needs"),
        ({"LEADSCORE_SERVE_PROT": "9000"}, "unknown settings LEADSCORE_SERVE_PROT"),
    ],
)
def test_the_server_refuses_to_start_on_unsafe_or_misspelt_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variables: dict[str, str], refused: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli_app, ["serve", "--workdir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert refused in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output


def test_metrics_ask_for_the_key_unless_opened(
    store: tuple[Path, SimulatedFunnel, TrainingRun],
) -> None:
    workdir, _, _ = store
    for public, without_key in ((False, 401), (True, 200)):
        keyed = settings(workdir, api_key="s3cret", metrics_public=public)
        with TestClient(create_app(keyed)) as test_client:
            assert test_client.get("/metrics").status_code == without_key
            answer = test_client.get("/metrics", headers={"X-API-Key": "s3cret"})
            assert answer.status_code == 200 and "leadscore_requests_total" in answer.text


def test_the_openapi_document_declares_the_key_and_every_status(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": document["components"]["securitySchemes"]["APIKeyHeader"]["description"],
    }
    predict = document["paths"]["/predict"]["post"]
    assert predict["security"] == [{"APIKeyHeader": []}]
    assert {"200", "401", "408", "413", "415", "422", "503"} <= set(predict["responses"])
    outcomes = document["paths"]["/outcomes"]["post"]
    assert {"200", "400", "401", "408", "413", "415", "422", "503"} <= set(outcomes["responses"])
    csv = document["paths"]["/compare.csv"]["get"]["responses"]["200"]["content"]
    assert list(csv) == ["text/csv"]
    events = document["components"]["schemas"]["LeadIn"]["properties"]["events"]
    assert events["items"]["required"] == ["ts", "event_type"]


def test_requests_beyond_the_in_flight_bound_are_503_with_retry_after() -> None:
    """A bounded number of requests at once; beyond it an immediate 503 with Retry-After,
    while /health still answers."""

    async def scenario() -> list[tuple[int, dict[bytes, bytes]]]:
        release, started = asyncio.Event(), asyncio.Event()

        async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["path"] == "/predict" and not release.is_set():
                started.set()
                await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

        gate = BodyLimitAndMetrics(
            slow_app, max_body_bytes=4_096, metrics=Metrics(), max_in_flight=1
        )

        async def call(path: str) -> tuple[int, dict[bytes, bytes]]:
            answer: dict[str, Any] = {}

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    answer.update(status=message["status"], headers=dict(message["headers"]))

            scope = {"type": "http", "method": "POST", "path": path, "headers": []}
            await gate(scope, receive, send)
            return answer["status"], answer["headers"]

        first = asyncio.create_task(call("/predict"))
        await started.wait()
        answers = [await call("/predict"), await call("/health")]
        release.set()
        answers += [await first, await call("/predict")]
        return answers

    busy, health, first, later = asyncio.run(scenario())
    assert busy[0] == 503 and busy[1][b"retry-after"] == b"1"
    assert (health[0], first[0], later[0]) == (200, 200, 200)


def test_outcomes_answer_503_with_the_reason_when_the_store_cannot_take_them(
    store: tuple[Path, SimulatedFunnel, TrainingRun], tmp_path: Path
) -> None:
    workdir, _, _ = store
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    body = {"outcomes": [{"lead_id": "1", "outcome": "won", "closed_at": "2025-05-01T00:00:00Z"}]}
    with TestClient(create_app(settings(workdir, prediction_log_url=url))) as test_client:
        locker = sqlite3.connect(tmp_path / "predictions.db", timeout=0)
        locker.execute("BEGIN EXCLUSIVE")  # another process holding the store
        try:
            refused = test_client.post("/outcomes", json=body)
        finally:
            locker.rollback()
            locker.close()
        assert refused.status_code == 503, refused.text
        assert "database is locked" in refused.json()["detail"]
        assert test_client.post("/outcomes", json=body).json() == {"recorded": 1}


def test_predictions_are_answered_from_the_spill_while_the_store_fails_and_stored_after(
    store: tuple[Path, SimulatedFunnel, TrainingRun], tmp_path: Path
) -> None:
    workdir, funnel, _ = store
    database, spill = tmp_path / "predictions.db", tmp_path / "spill"
    app = create_app(
        settings(workdir, prediction_log_url=f"sqlite:///{database}", prediction_spill_dir=spill)
    )
    leads = [lead_payload(funnel, position) for position in range(6)]
    with TestClient(app) as test_client:
        _wait_ready(test_client)
        locker = sqlite3.connect(database, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")  # another process holding the store
        try:
            answered = [test_client.post("/predict", json=lead) for lead in leads[:3]]
            ready = test_client.get("/ready").json()
        finally:
            locker.rollback()
            locker.close()
        assert [response.status_code for response in answered] == [200, 200, 200]
        assert ready["status"] == "degraded" and "locked" in ready["detail"]
        answered.append(test_client.post("/predict", json={"leads": leads[3:]}))
        assert answered[-1].status_code == 200
        log = app.state.service.prediction_log
        deadline = time.monotonic() + 20
        while test_client.get("/ready").json()["status"] != "ready" or log.replayed < log.spilled:
            assert time.monotonic() < deadline, "the store was never taken up again"
            time.sleep(0.05)
        metrics = test_client.get("/metrics").text
        spilled = log.spilled
    with sqlite3.connect(database) as connection:
        stored = [row[0] for row in connection.execute("SELECT lead_id FROM leadscore_predictions")]
    assert sorted(stored) == sorted(str(lead["lead_id"]) for lead in leads)  # each once
    assert not list(spill.glob("*.jsonl"))
    assert spilled >= 3  # the three answered while the store was locked, at least
    assert f'leadscore_prediction_log_rows_total{{outcome="spilled"}} {spilled}.0' in metrics
    assert f'leadscore_prediction_log_rows_total{{outcome="replayed"}} {spilled}.0' in metrics


def test_predictions_that_can_be_neither_stored_nor_spilled_are_not_answered(
    store: tuple[Path, SimulatedFunnel, TrainingRun], tmp_path: Path
) -> None:
    workdir, funnel, _ = store
    database, not_a_folder = tmp_path / "predictions.db", tmp_path / "spill"
    not_a_folder.write_text("a file where the spill folder should be")
    app = create_app(
        settings(
            workdir, prediction_log_url=f"sqlite:///{database}", prediction_spill_dir=not_a_folder
        )
    )
    with TestClient(app) as test_client:
        _wait_ready(test_client)
        locker = sqlite3.connect(database, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            refused = test_client.post("/predict", json=lead_payload(funnel, 0))
        finally:
            locker.rollback()
            locker.close()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "cannot be recorded" in refused.json()["detail"]
        assert 'leadscore_prediction_log_rows_total{outcome="failed"} 1.0' in (
            test_client.get("/metrics").text
        )


def test_answers_are_recorded_before_they_are_sent_to_a_postgresql_store(
    store: tuple[Path, SimulatedFunnel, TrainingRun], postgres_url: str
) -> None:
    """A store across the network is written by the log's thread while the loop serves on; the
    answers still wait for their rows."""
    workdir, funnel, _ = store
    app = create_app(settings(workdir, prediction_log_url=postgres_url))
    leads = [lead_payload(funnel, position) for position in range(8)]
    with TestClient(app) as test_client:
        _wait_ready(test_client)
        log = app.state.service.prediction_log
        assert not log.local
        single = test_client.post("/predict", json=leads[0])
        assert single.status_code == 200
        assert log.read_predictions()["lead_id"].tolist() == [leads[0]["lead_id"]]  # no flush
        batch = test_client.post("/predict", json={"leads": leads[1:]})
        assert batch.status_code == 200
        stored = log.read_predictions()
        assert sorted(stored["lead_id"]) == sorted(str(lead["lead_id"]) for lead in leads)
        answered = {a["lead_id"]: a["probability"] for a in batch.json()["predictions"]}
        for lead_id, probability in zip(
            stored["lead_id"][1:], stored["probability"][1:], strict=True
        ):
            assert probability == answered[lead_id]
