"""Schemathesis against the app's own OpenAPI document, on a real uvicorn server on loopback
serving a registered champion: every generated request (valid and invalid bodies, right, wrong,
empty and missing keys) is answered without a 5xx, with a status, content type and body the
document declares."""

from __future__ import annotations

import collections
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipelines.training import TrainingRun
from serve.app import create_app
from serve.dependencies import API_KEY_HEADER
from serve.predictionlog import PREDICTIONS_TABLE
from serve.settings import ServeSettings
from tests.conftest import train_into_store
from tests.server import free_port

# Real servers under load: one at a time (one xdist worker), so that their latency bars measure
# the server, not another server's load on the same two cores.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]

API_KEY = "fuzz-api-key"
ADMIN_KEY = "fuzz-admin-key"
# What a request carries in X-API-Key: the API key, the admin key, a wrong one, an empty one,
# or no header at all.
KEY_CHOICES: dict[str, str | None] = {
    "api": API_KEY,
    "admin": ADMIN_KEY,
    "wrong": "not-the-key",
    "empty": "",
    "none": None,
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Examples per operation and generation mode (an upper bound: Hypothesis stops early on
# operations with few distinct requests, such as GET /health).
EXAMPLES: dict[str, int] = {"POST /predict": 240, "POST /outcomes": 50}
OTHER_EXAMPLES = 20
MIN_REQUESTS = 1_000
CREATED_AT = "2001-01-01T00:00:00Z"
Operation = APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An MLflow store under a temporary folder with one model registered as champion."""
    workdir = tmp_path_factory.mktemp("fuzz_store")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        _, run = train_into_store(workdir, n_leads=2_000, seed=61)
        assert isinstance(run, TrainingRun) and run.registration.alias == "champion"
        yield workdir


@contextmanager
def uvicorn_on_loopback(settings: ServeSettings) -> Iterator[str]:
    """The app on a real uvicorn server on 127.0.0.1 (in a thread of this process, with its
    lifespan: model load and prediction log), until the champion is loaded; stopped on exit."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.config.port}"
    headers = {API_KEY_HEADER: API_KEY}
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{base}/ready", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert thread.is_alive(), "the server stopped"
            assert time.monotonic() < deadline, "the champion never loaded"
            time.sleep(0.1)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop"


def _created(body: Any) -> Any:
    """The body with a creation time on each lead that has none. The served model reads events
    since creation and answers 422 without it; the document leaves it optional, for models of
    snapshot exports."""
    if not isinstance(body, dict):
        return body
    batch = body.get("leads")
    leads = batch if isinstance(batch, list) else [body]
    for lead in leads:
        if isinstance(lead, dict) and lead.get("created_at") is None:
            lead["created_at"] = CREATED_AT
    return body


def _not_json(response: schemathesis.Response) -> bool:
    """A body that is not JSON, refused as such (FastAPI does before any dependency runs, the
    key's included)."""
    if response.status_code == 400:
        return True
    detail = response.json().get("detail") if response.status_code == 422 else None
    return isinstance(detail, list) and any(error["type"] == "json_invalid" for error in detail)


@dataclass
class Fuzzer:
    """Sends the generated requests of one server and checks each answer."""

    base: str
    keys: bool  # whether the server has an API key and an admin key
    session: requests.Session = field(default_factory=requests.Session)
    sent: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)

    def run(self) -> None:
        """Every operation of the served OpenAPI document: valid requests, and invalid ones
        where there is something to make invalid."""
        schema = schemathesis.openapi.from_url(f"{self.base}/openapi.json")
        document = httpx.get(f"{self.base}/openapi.json", timeout=10).json()
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            definition = document["paths"][operation.path][operation.method.lower()]
            self.fuzz(operation, definition, GenerationMode.POSITIVE)
            if definition.get("requestBody") or definition.get("parameters"):
                self.fuzz(operation, definition, GenerationMode.NEGATIVE)

    def fuzz(self, operation: Operation, definition: dict[str, Any], mode: GenerationMode) -> None:
        @given(
            case=operation.as_strategy(mode),
            key=st.sampled_from(list(KEY_CHOICES)),
            created=st.booleans(),
        )
        @settings(
            max_examples=EXAMPLES.get(operation.label, OTHER_EXAMPLES),
            deadline=None,
            database=None,
            derandomize=True,  # the same requests on every run
            suppress_health_check=list(HealthCheck),
        )
        def send(case: Case, key: str, created: bool) -> None:
            if created and mode is GenerationMode.POSITIVE and operation.label == "POST /predict":
                case.body = _created(case.body)
            self.send(case, definition, mode, KEY_CHOICES[key])

        send()

    def send(
        self,
        case: Case,
        definition: dict[str, Any],
        mode: GenerationMode,
        key: str | None,
    ) -> None:
        operation = case.operation
        # An invalid body is refused with a 4xx. (Only the body: the key header is ours, and a
        # request without one is not invalid when the service has no key.)
        invalid_body = case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)
        headers = {
            name: value
            for name, value in (case.headers or {}).items()
            if name.lower() != API_KEY_HEADER.lower()
        }
        if key is not None:
            headers[API_KEY_HEADER] = key
        case.headers = CaseInsensitiveDict(headers)
        checks = [*CHECKS, negative_data_rejection] if invalid_body else CHECKS
        response = case.call_and_validate(base_url=self.base, session=self.session, checks=checks)
        self.sent[(operation.label, response.status_code)] += 1

        # The keys are enforced exactly when set and the route asks for one.
        right_key = ADMIN_KEY if operation.path.startswith("/admin/") else API_KEY
        refused = self.keys and bool(definition.get("security")) and key != right_key
        if refused:
            assert response.status_code == 401 or _not_json(response), response.text
        else:
            assert response.status_code != 401, (key, response.text[:300])
        if mode is GenerationMode.POSITIVE and not refused and operation.label in EXAMPLES:
            # A valid body is scored or recorded, or refused for what the schema cannot say
            # (e.g. as_of before created_at): never anything else.
            assert response.status_code in (200, 422), response.text[:300]


def test_generated_requests_get_no_5xx_and_conform_to_the_openapi(
    workdir: Path, tmp_path: Path
) -> None:
    """Once with an API key and an admin key configured, once with none."""
    total = 0
    for keys in (True, False):
        log = tmp_path / f"predictions-{'keys' if keys else 'open'}.db"
        settings = ServeSettings(
            workdir=workdir,
            reload_interval_seconds=0,
            prediction_log_url=f"sqlite:///{log}",
            api_key=API_KEY if keys else None,
            admin_key=ADMIN_KEY if keys else None,
        )
        with uvicorn_on_loopback(settings) as base:
            fuzzer = Fuzzer(base, keys)
            fuzzer.run()
        sent = fuzzer.sent
        by_status = collections.Counter(status for (_, status) in sent.elements())
        assert not any(status >= 500 for status in by_status), sent
        # The fuzzing reached the model: generated leads were scored and logged.
        assert sent[("POST /predict", 200)] >= 20, sent
        assert sent[("POST /outcomes", 200)] >= 5, sent
        with sqlite3.connect(log) as db:
            (logged,) = db.execute(f"SELECT COUNT(*) FROM {PREDICTIONS_TABLE}").fetchone()
        assert logged >= sent[("POST /predict", 200)]
        assert (by_status[401] > 0) == keys, sent
        assert sum(sent.values()) >= MIN_REQUESTS // 2, sent
        total += sum(sent.values())
    assert total >= MIN_REQUESTS
