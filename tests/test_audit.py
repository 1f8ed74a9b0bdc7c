"""`make audit` says what it audited: an advisory database it cannot reach is reported as such,
never as "no known vulnerabilities". pip-audit runs for real; the advisory database is a closed
loopback port, or a local server answering OSV's query API."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipelines.audit import FINDINGS, UNREACHABLE, AuditUnavailable, audit, summarize

PINNED = "requests==2.31.0\nidna==3.7\n"
ADVISORY: dict[str, object] = {
    "id": "GHSA-9wx4-h78v-vm56",
    "summary": "Requests keeps verify=False for later requests to the same host",
    "affected": [
        {
            "package": {"name": "requests", "ecosystem": "PyPI"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.32.0"}]}],
        }
    ],
}


@pytest.fixture
def requirements(tmp_path: Path) -> Path:
    path = tmp_path / "constraints.txt"
    path.write_text(PINNED)
    return path


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port held by a socket that never listens: connections to it are refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def osv_server(advisories: dict[str, list[dict[str, object]]]) -> ThreadingHTTPServer:
    """A local server answering OSV's `POST /v1/query` with `advisories` by package name."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            vulns = advisories.get(query["package"]["name"], [])
            body = json.dumps({"vulns": vulns} if vulns else {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_an_unreachable_advisory_database_is_reported_and_fails(
    requirements: Path, closed_port: int
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.audit",
            "--requirements",
            str(requirements),
            "--service",
            "osv",
            "--osv-url",
            f"http://127.0.0.1:{closed_port}/v1/query",
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == UNREACHABLE
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback
    assert lines[0].startswith("audit: could not reach the OSV advisory database")
    assert "nothing was audited" in lines[0] and "Connection refused" in lines[0]
    assert "No known vulnerabilities" not in done.stdout + done.stderr


def audit_against(
    advisories: dict[str, list[dict[str, object]]],
    requirements: Path,
    caplog: pytest.LogCaptureFixture,
) -> int:
    """`audit` with the OSV service at a local server that knows `advisories`."""
    server = osv_server(advisories)
    url = f"http://127.0.0.1:{server.server_port}/v1/query"
    try:
        with caplog.at_level(logging.INFO, logger="pipelines.audit"):
            return audit(requirements, "osv", url, timeout=5)
    finally:
        server.shutdown()


def test_findings_are_listed_and_fail(requirements: Path, caplog: pytest.LogCaptureFixture) -> None:
    code = audit_against({"requests": [ADVISORY]}, requirements, caplog)
    assert code == FINDINGS
    assert "vulnerable: requests 2.31.0: GHSA-9wx4-h78v-vm56 (fixed in 2.32.0)" in caplog.messages
    assert caplog.messages[-1].startswith("audit: 2 of 2 pinned packages audited")
    assert "1 known vulnerabilities" in caplog.messages[-1]


def test_a_clean_audit_says_how_many_packages_it_audited(
    requirements: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = audit_against({}, requirements, caplog)
    assert code == 0
    assert caplog.messages == [
        "audit: 2 of 2 pinned packages audited against the OSV advisory database: "
        "0 known vulnerabilities, 0 packages not audited"
    ]


def test_a_service_that_knows_none_of_the_packages_audited_nothing() -> None:
    """What pip-audit reports when PyPI's service answers "not found" for every package (a proxy
    in the way): "No known vulnerabilities found", exit 0. Its JSON report, as it writes it."""
    reason = "Dependency not found on PyPI and could not be audited: {} ({})"
    report: dict[str, Any] = {
        "dependencies": [
            {"name": name, "version": version, "skip_reason": reason.format(name, version)}
            for name, version in (("requests", "2.31.0"), ("idna", "3.7"))
        ],
        "fixes": [],
    }
    with pytest.raises(AuditUnavailable, match="none of the 2 pinned packages"):
        summarize(report, "pypi")
    report["dependencies"][1] = {"name": "idna", "version": "3.7", "vulns": []}
    result = summarize(report, "pypi")  # one answered: audited, the other listed as not
    assert (result.audited, result.vulnerabilities) == (1, [])
    assert result.not_audited == [f"requests 2.31.0: {reason.format('requests', '2.31.0')}"]
