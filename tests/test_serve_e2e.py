"""A real `leadscore serve` (uvicorn) on loopback: start, predict, swap the champion, stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from models.registry import CHAMPION, use_tracking
from tests.conftest import train_into_store
from tests.server import serving, wait_for
from tests.test_serve import lead_payload

pytestmark = pytest.mark.slow


def test_serve_predict_hot_swap_and_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    funnel, first = train_into_store(tmp_path, n_leads=8_000, seed=51)
    _, second = train_into_store(tmp_path, n_leads=8_000, seed=52)
    use_tracking(tmp_path)
    registry = MlflowClient()
    registry.set_registered_model_alias("leadscore", CHAMPION, first.registration.version)

    env = {
        "LEADSCORE_SERVE_RELOAD_INTERVAL_SECONDS": "0.5",
        "LEADSCORE_SERVE_PREDICTION_LOG_URL": f"sqlite:///{tmp_path / 'predictions.db'}",
    }
    with serving(tmp_path, env) as server:
        base = server.base
        ready = wait_for(f"{base}/ready", server.process)
        assert ready.json()["model_version"] == first.registration.version
        payload = lead_payload(funnel, 3)
        answer = httpx.post(f"{base}/predict", json=payload, timeout=10).json()["predictions"][0]
        assert answer["model_version"] == first.registration.version

        # Single leads sent at once (scored together in one kernel call when they arrive
        # together) answer exactly as each alone.
        payloads = [lead_payload(funnel, position) for position in range(24)]
        with httpx.Client(timeout=10) as client:
            alone = [client.post(f"{base}/predict", json=p).json() for p in payloads]
        together: list[dict[str, object]] = [{} for _ in payloads]

        def send(i: int) -> None:
            together[i] = httpx.post(f"{base}/predict", json=payloads[i], timeout=10).json()

        senders = [threading.Thread(target=send, args=(i,)) for i in range(len(payloads))]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        fields = ("lead_id", "probability", "mql", "tier", "rule_score", "rule_mql", "reasons")
        for mine, theirs in zip(together, alone, strict=True):
            got = mine["predictions"][0]  # type: ignore[index]
            want = theirs["predictions"][0]
            assert {f: got[f] for f in fields} == {f: want[f] for f in fields}

        # Move the champion while requests keep coming: none may fail, then the new one answers.
        statuses: list[int] = []
        versions: set[str] = set()
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(timeout=10) as client:
                while not stop.is_set():
                    response = client.post(f"{base}/predict", json=payload)
                    statuses.append(response.status_code)
                    versions.add(response.json()["predictions"][0]["model_version"])

        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            registry.set_registered_model_alias("leadscore", CHAMPION, second.registration.version)
            deadline = time.monotonic() + 60
            while second.registration.version not in versions:
                assert time.monotonic() < deadline, "the new champion was never served"
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            stop.set()
            worker.join()
        assert statuses and set(statuses) == {200}
        assert versions == {first.registration.version, second.registration.version}
    log, code = server.log, server.exit_code
    # Uvicorn shuts down gracefully on SIGTERM, then re-raises it: -15 is a clean stop.
    assert code in (0, -15) and "Application shutdown complete" in log, log[-2000:]
    assert "prediction log closed" in log and "0 dropped" in log
