"""A real `leadscore serve` (uvicorn) on loopback: start, predict, swap the champion, stop."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from benchmarks.bench_soak import kill_under_load, stored_lead_ids
from models.registry import CHAMPION, use_tracking
from tests.conftest import train_into_store
from tests.server import serving, wait_for
from tests.test_serve import lead_payload

# Real servers under load: one at a time (one xdist worker), so that their latency bars measure
# the server, not another server's load on the same two cores.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]


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


# Posts a body file and writes the status and JSON answer beside it.
_SEND = """
import json, sys, httpx
url, stem = sys.argv[1], sys.argv[2]
print("ready", flush=True)  # imported: from here on it only sends
sys.stdin.readline()
with open(stem + ".json", "rb") as body:
    answer = httpx.post(url, content=body.read(), headers={"content-type": "application/json"},
                        timeout=120)
with open(stem + ".answer", "w") as out:
    json.dump({"status": answer.status_code, "body": answer.json()}, out)
"""


def _maximal(leads: list[bytes], limit: int) -> bytes:
    """A batch body of exactly `limit` bytes (JSON spaces at its end)."""
    body = b'{"leads":[' + b",".join(leads) + b"]}"
    assert len(body) <= limit
    return body[:-2] + b" " * (limit - len(body)) + body[-2:]


def test_health_answers_while_maximal_bad_requests_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies at the size limit are read and validated off the event loop, a lead at a time:
    /health keeps answering meanwhile. Too many leads are refused (413) as soon as the lead over
    the limit is read; bad leads get their 422 with the first problems."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = {
        "LEADSCORE_SERVE_RELOAD_INTERVAL_SECONDS": "0",
        "LEADSCORE_SERVE_PREDICTION_LOG_URL": f"sqlite:///{tmp_path / 'predictions.db'}",
    }
    limit = 10 * 2**20  # the default LEADSCORE_SERVE_MAX_BODY_BYTES
    tiny = b'{"lead_id":"%d","created_at":"soon"}'
    many = _maximal([tiny % i for i in range(limit // len(tiny % 10**6))], limit)
    events = b",".join([b'{"ts":"yesterday","event_type":"email_open"}'] * 220)
    heavy = b'{"lead_id":"%d","created_at":"2025-03-01T09:00:00Z","events":[%s]}'
    bad = _maximal([heavy % (i, events) for i in range(1_000)], limit)
    with serving(tmp_path, env) as server:
        wait_for(f"{server.base}/health", server.process)
        for name, body, status in (("many", many, 413), ("bad", bad, 422)):
            # Sent by another process, so that this one only asks /health.
            (tmp_path / f"{name}.json").write_bytes(body)
            sender = subprocess.Popen(
                [sys.executable, "-c", _SEND, f"{server.base}/predict", str(tmp_path / name)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert sender.stdin is not None and sender.stdout is not None
            assert sender.stdout.readline().strip() == "ready"
            sender.stdin.write("go\n")
            sender.stdin.flush()
            latencies = []
            with httpx.Client(timeout=5) as client:
                while sender.poll() is None:
                    started = time.perf_counter()
                    assert client.get(f"{server.base}/health").status_code == 200
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.01)
            assert sender.wait() == 0
            answer = json.loads((tmp_path / f"{name}.answer").read_text())
            assert answer["status"] == status, answer
            assert len(latencies) >= 2, latencies  # /health was asked while the body was handled
            # Nine probes in ten within 50 ms, none over 250 ms: on two shared cores (server,
            # sender, this test and another test worker) the OS scheduler alone can delay one
            # probe by tens of milliseconds. A body parsed on the event loop stalled it seconds.
            ordered = sorted(latencies)
            assert ordered[int(0.9 * (len(ordered) - 1))] < 0.05, (status, ordered[-5:])
            assert ordered[-1] < 0.25, (status, ordered[-5:])
            if status == 422:
                detail = answer["body"]["detail"]
                assert 0 < len(detail) <= 20
                assert detail[0]["loc"] == ["body", "leads", 0, "events", 0, "ts"]


def _read_all(connection: socket.socket, seconds: float) -> bytes:
    """What the server sends until it closes the connection (or `seconds` pass)."""
    connection.settimeout(seconds)
    received = b""
    with contextlib.suppress(TimeoutError):
        while chunk := connection.recv(4096):
            received += chunk
    return received


def test_slow_headers_and_bodies_are_cut_off_with_408(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = {
        "LEADSCORE_SERVE_RELOAD_INTERVAL_SECONDS": "0",
        "LEADSCORE_SERVE_PREDICTION_LOG_URL": f"sqlite:///{tmp_path / 'predictions.db'}",
        "LEADSCORE_SERVE_HEADER_TIMEOUT_SECONDS": "1",
        "LEADSCORE_SERVE_BODY_TIMEOUT_SECONDS": "1",
    }
    with serving(tmp_path, env) as server:
        wait_for(f"{server.base}/health", server.process)
        address = ("127.0.0.1", int(server.base.rsplit(":", 1)[1]))
        stalls = {
            "silent": b"",
            "half a header": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le",
            "half a body": b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b'\r\nContent-Length: 1000\r\n\r\n{"lead_id": "1", ',
        }
        held = []
        for name, opening in stalls.items():
            connection = socket.create_connection(address)
            connection.sendall(opening)
            held.append((name, connection, time.monotonic()))
        # Meanwhile the service answers everyone else.
        assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200
        for name, connection, opened in held:
            received = _read_all(connection, seconds=10)
            waited = time.monotonic() - opened
            connection.close()
            assert received.startswith(b"HTTP/1.1 408 "), (name, received)
            assert 0.8 < waited < 5, (name, waited)  # cut off at the deadline, not held open
        assert b"did not arrive within 1 s" in received  # the body's deadline says which
        assert httpx.get(f"{server.base}/health", timeout=5).status_code == 200


def test_no_prediction_answered_before_a_sigkill_is_missing_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    funnel, _ = train_into_store(tmp_path, n_leads=4_000, seed=53)
    database = tmp_path / "predictions.db"
    env = {
        "LEADSCORE_SERVE_RELOAD_INTERVAL_SECONDS": "0",
        "LEADSCORE_SERVE_PREDICTION_LOG_URL": f"sqlite:///{database}",
        "LEADSCORE_SERVE_PREDICTION_SPILL_DIR": str(tmp_path / "spill"),
    }
    with serving(tmp_path, env) as server:
        wait_for(f"{server.base}/ready", server.process)
        answered, errors = kill_under_load(
            server.base, server.process.kill, lead_payload(funnel, 3), clients=8, after_s=3.0
        )
    assert errors == 0
    assert len(answered) > 50  # under load when killed
    assert answered - stored_lead_ids(database) == set()
