"""Prometheus metrics of the API and the ASGI middleware that times every request and refuses
oversized bodies while they are read."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Metrics:
    """Prometheus metrics of one app (its own registry, or the multiprocess collector)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        target = None if self.multiprocess else self.registry
        self.requests = Counter(
            "leadscore_requests", "Requests by route and status", ["route", "method", "status"],
            registry=target,
        )  # fmt: skip
        self.latency = Histogram(
            "leadscore_request_seconds", "Request latency by route and status",
            ["route", "status"], registry=target,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )  # fmt: skip
        self.predictions = Counter(
            "leadscore_predictions", "Leads scored by tier", ["tier"], registry=target
        )
        self.log_rows = Counter(
            "leadscore_prediction_log_rows",
            "Prediction rows by what became of them: written to the store, spilled to a local "
            "file while the store fails, replayed from it, failed, dropped",
            ["outcome"], registry=target,
        )  # fmt: skip
        self.log_wait = Histogram(
            "leadscore_prediction_log_wait_seconds",
            "How long an answer waits for its predictions to be recorded (stored or spilled)",
            registry=target,
            buckets=(
                0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0008, 0.001, 0.0015, 0.002,
                0.005, 0.01, 0.05, 0.25, 1, 5,
            ),
        )  # fmt: skip
        self._request_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.model_version = Gauge(
            "leadscore_model_version", "Registered version being served", registry=target,
            multiprocess_mode="liveall",
        )  # fmt: skip

    def observe_request(self, route: str, method: str, status: str, seconds: float) -> None:
        """One request counted and timed. The labelled children are kept: finding them again
        through `labels` costs a few microseconds per request."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(route, method, status),
                self.latency.labels(route, status),
            )
        children[0].inc()
        children[1].observe(seconds)

    def count_log_rows(self, outcome: str, rows: int) -> None:
        """For `PredictionLog(on_rows=...)`: called from its writer thread."""
        self.log_rows.labels(outcome).inc(rows)

    def render(self) -> bytes:
        if self.multiprocess:
            _forget_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"])
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


def _forget_dead_workers(directory: str) -> None:
    """Drop the live-only gauges of worker processes that are gone (a worker killed and
    replaced by uvicorn): prometheus_client leaves that to whoever sees a process die, and
    nothing else here does. Their counters stay in the totals."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            prometheus_multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's
            pass


# Always answered, however busy the service is: a load balancer must see it alive.
_ALWAYS_ADMITTED = frozenset({"/health", "/ready", "/metrics"})
BUSY_RETRY_AFTER_SECONDS = 1


class BodyLimitAndMetrics:
    """Pure ASGI middleware: refuses oversized bodies (413) while they are read, refuses
    requests beyond `max_in_flight` at once (503 with Retry-After: a queue that only grows
    would answer everyone late), and times every request."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        metrics: Metrics,
        max_in_flight: int = 64,
        body_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.body_timeout = body_timeout
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and int(declared) > self.max_body_bytes:
            await _send_json(send, 413, {"detail": f"body over {self.max_body_bytes} bytes"})
            self.metrics.requests.labels("unmatched", scope["method"], "413").inc()
            return
        if scope["path"] in _ALWAYS_ADMITTED:
            await self._timed(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await _send_json(
                send,
                503,
                {"detail": f"busy: {self.max_in_flight} requests in flight; retry shortly"},
                [(b"retry-after", str(BUSY_RETRY_AFTER_SECONDS).encode())],
            )
            self.metrics.requests.labels("busy", scope["method"], "503").inc()
            return
        self.in_flight += 1
        try:
            await self._timed(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        body_done = False
        deadline = time.monotonic() + self.body_timeout

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:  # only waiting for a disconnect now: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(_loop_time(deadline)):
                    message = await receive()
            except TimeoutError:
                raise _BodyTooSlow(self.body_timeout) from None
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise _BodyTooLarge()
            body_done = not message.get("more_body", False)
            return message

        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_status)
        except _BodyTooLarge:
            status = 413
            await _send_json(send, 413, {"detail": f"body over {self.max_body_bytes} bytes"})
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe_request(
                path, scope["method"], str(status), time.perf_counter() - started
            )


def _loop_time(monotonic_deadline: float) -> float:
    """A `time.monotonic()` deadline on the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


class _BodyTooSlow(HTTPException):
    """Raised while FastAPI reads the body; answered 408, and the connection closed (the rest
    of the body may still come)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            status_code=408,
            detail=f"the request body did not arrive within {seconds:g} s",
            headers={"Connection": "close"},
        )


class _BodyTooLarge(HTTPException):
    """Raised while FastAPI reads the body; as an HTTPException it passes through as a 413."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="request body too large")


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
