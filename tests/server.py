"""A real `leadscore serve` (uvicorn) on loopback for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, server: subprocess.Popen[bytes], seconds: float = 60) -> httpx.Response:
    """GET `url` until it answers 200; fails if the server exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        assert server.poll() is None, "the server exited"
        assert time.monotonic() < deadline, f"{url} never answered 200"
        time.sleep(0.2)


@dataclass
class RunningServer:
    base: str
    process: subprocess.Popen[bytes]
    exit_code: int | None = None
    log: str = ""


@contextmanager
def serving(workdir: Path, env: dict[str, str] | None = None) -> Iterator[RunningServer]:
    """`python -m pipelines serve` on a free port of 127.0.0.1, stopped with SIGTERM on exit;
    `exit_code` and `log` (stderr) are filled in after the stop."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines",
            "serve",
            "--port",
            str(port),
            "--workdir",
            str(workdir),
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = RunningServer(f"http://127.0.0.1:{port}", process)
    try:
        yield running
    finally:
        process.terminate()
        try:
            running.exit_code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        running.log = process.stderr.read().decode() if process.stderr else ""
