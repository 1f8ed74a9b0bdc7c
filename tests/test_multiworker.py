"""`leadscore serve` with two worker processes on loopback: Prometheus metrics shared across the
workers (multiprocess mode), counted exactly, and a killed worker's counts kept."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from pipelines.training import TrainingRun
from simulator.funnel import SimulatedFunnel
from tests.conftest import train_into_store
from tests.server import RunningServer, serving, wait_for
from tests.test_serve import lead_payload

# Real servers under load: one at a time (one xdist worker), so that their latency bars measure
# the server, not another server's load on the same two cores.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]

WORKERS = 2
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SimulatedFunnel, str]]:
    """A store with one model registered as champion, the funnel it learned from, its version."""
    workdir = tmp_path_factory.mktemp("multiworker_store")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        funnel, run = train_into_store(workdir, n_leads=2_000, seed=71)
        assert isinstance(run, TrainingRun)
        yield workdir, funnel, run.registration.version


def scrape(base: str) -> Samples:
    """Every sample of GET /metrics, by name and labels."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def serving_pids(samples: Samples) -> dict[int, float]:
    """The version each worker serves, by process id (the liveall gauge has one per process)."""
    return {
        int(dict(labels)["pid"]): value
        for (name, labels), value in samples.items()
        if name == "leadscore_model_version"
    }


def predict_requests_by_worker(metrics_dir: Path) -> dict[int, float]:
    """POST /predict answers counted by each worker, from its own file in the shared folder."""
    counted: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        counted[pid] = sum(
            s.value
            for family in MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
            for s in family.samples
            if s.name == "leadscore_requests_total" and s.labels.get("route") == "/predict"
        )
    return counted


def wait_until(what: str, check: Any, server: RunningServer, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert server.process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


def test_two_workers_count_every_request_once(
    store: tuple[Path, SimulatedFunnel, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir, funnel, version = store
    # As operators start it: `leadscore serve --workers 2` makes its own metrics folder
    # (under TMPDIR, here the test's folder, to look into and to clean up).
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    env = {
        "LEADSCORE_SERVE_WORKERS": str(WORKERS),
        "LEADSCORE_SERVE_RELOAD_INTERVAL_SECONDS": "0",
        "LEADSCORE_SERVE_PREDICTION_LOG_URL": f"sqlite:///{tmp_path / 'predictions.db'}",
        "TMPDIR": str(tmp_path),
    }
    leads = [lead_payload(funnel, position) for position in range(40)]
    with serving(workdir, env) as server:
        base = server.base
        wait_for(f"{base}/ready", server.process)
        # Both workers loaded the champion: one version series per live worker process (0
        # until its model is loaded).
        pids = wait_until(
            "both workers never loaded the model",
            lambda: (
                len(served := serving_pids(scrape(base))) == WORKERS
                and set(served.values()) == {float(version)}
                and served
            ),
            server,
        )
        (metrics_dir,) = tmp_path.glob("leadscore-metrics-*")

        # Requests from several threads at once, each on its own connection, so that both
        # workers accept some; rounds until each has answered.
        tiers: collections.Counter[str] = collections.Counter()
        statuses: collections.Counter[int] = collections.Counter()
        lock = threading.Lock()

        def send(body: dict[str, Any]) -> None:
            response = httpx.post(f"{base}/predict", json=body, timeout=30)
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    tiers.update(p["tier"] for p in response.json()["predictions"])

        def one_round(round_number: int) -> None:
            bodies: list[dict[str, Any]] = [
                *leads[round_number % 4 :: 4],  # ten single leads
                {"leads": leads[:7]},  # a batch
                {"lead_id": "no-creation-time"},  # refused: 422
            ]
            senders = [threading.Thread(target=send, args=(body,)) for body in bodies]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join()

        rounds = 0
        while rounds < 3 or min(predict_requests_by_worker(metrics_dir).values(), default=0) == 0:
            assert rounds < 20, predict_requests_by_worker(metrics_dir)
            one_round(rounds)
            rounds += 1
        # A request is counted just after its answer is sent: wait until the last ones are.
        answered = sum(statuses.values())

        def settled() -> dict[int, float] | None:
            counted = predict_requests_by_worker(metrics_dir)
            return counted if sum(counted.values()) == answered else None

        by_worker = wait_until("the workers never counted every answer", settled, server)
        assert set(by_worker) == set(pids) and min(by_worker.values()) > 0, by_worker
        assert set(statuses) == {200, 422}, statuses
        assert statuses[200] == 11 * rounds and statuses[422] == rounds
        assert sum(tiers.values()) == 17 * rounds

        # What any worker answers on /metrics is the sum over both, exactly.
        def exact(samples: Samples) -> None:
            for status, count in statuses.items():
                requests = sample(
                    samples,
                    "leadscore_requests_total",
                    route="/predict",
                    method="POST",
                    status=str(status),
                )
                assert requests == count, (status, requests, count)
            latency = sample(
                samples, "leadscore_request_seconds_count", route="/predict", status="200"
            )
            assert latency == statuses[200]
            scored = {
                dict(labels)["tier"]: value
                for (name, labels), value in samples.items()
                if name == "leadscore_predictions_total"
            }
            assert scored == {tier: float(count) for tier, count in tiers.items()}

        for _ in range(4):  # each on a new connection: whichever worker answers, the same sums
            exact(scrape(base))

        # A worker killed outright is replaced; what it counted is still counted, and the
        # version series are those of the live workers only.
        killed = next(iter(pids))
        os.kill(killed, signal.SIGKILL)
        live = wait_until(
            "the killed worker was never replaced",
            lambda: len(others := set(serving_pids(scrape(base))) - {killed}) == WORKERS and others,
            server,
        )
        samples = scrape(base)
        exact(samples)
        assert predict_requests_by_worker(metrics_dir)[killed] == by_worker[killed]
        assert set(serving_pids(samples)) == live, "a dead worker's version is still reported"
    assert server.exit_code in (0, -signal.SIGTERM), server.log[-2000:]
