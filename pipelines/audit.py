"""`make audit`: pip-audit on the pinned set, saying what it audited.

pip-audit prints "No known vulnerabilities found" and exits 0 even when it audited nothing: with
PyPI's service, a package the service does not answer for is only listed as skipped. Behind a
proxy that answers "not found" for everything, every package is. This runs pip-audit on the
pinned requirements (`--no-deps`, no pip), reads its JSON report and ends with one of:

- the advisory database could not be reached (no connection, or not one package known to it),
  so nothing was audited: one line saying so, exit 2;
- known vulnerabilities, one line each, and packages that could not be audited: exit 1;
- every package audited, none with a known vulnerability: exit 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

UNREACHABLE = 2
FINDINGS = 1
SERVICES = {"pypi": "PyPI", "osv": "OSV"}  # pip-audit's names, and how to say them
# What pip-audit's last words are when its HTTP request never got an answer.
_CONNECTION_ERRORS = (
    "ConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "Timeout",
    "Max retries exceeded",
    "NameResolutionError",
    "Failed to resolve",
)


class AuditUnavailable(Exception):
    """Nothing was audited: the message says why."""


@dataclass(frozen=True)
class AuditResult:
    audited: int
    vulnerabilities: list[str]  # "name version: ID (fixed in ...)"
    not_audited: list[str]  # "name version: reason"


def run_pip_audit(
    requirements: Path, service: str, osv_url: str | None, timeout: int
) -> dict[str, Any]:
    """pip-audit's JSON report on `requirements`; `AuditUnavailable` when it has none."""
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--requirement",
        str(requirements),
        "--no-deps",
        "--disable-pip",
        "--progress-spinner",
        "off",
        "--format",
        "json",
        "--vulnerability-service",
        service,
        "--timeout",
        str(timeout),
    ]
    if osv_url is not None:
        command += ["--osv-url", osv_url]
    where = f"{SERVICES[service]} advisory database" + (f" at {osv_url}" if osv_url else "")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if any(marker in done.stderr for marker in _CONNECTION_ERRORS):
            raise AuditUnavailable(
                f"could not reach the {where}, so nothing was audited ({last[:300]})"
            ) from None
        raise AuditUnavailable(f"pip-audit failed, so nothing was audited ({last[:300]})") from None
    return report


def summarize(report: dict[str, Any], service: str) -> AuditResult:
    """What pip-audit's JSON report says: audited packages, vulnerabilities, packages skipped.
    `AuditUnavailable` when the service answered for none of the packages."""
    dependencies = report.get("dependencies", [])
    if dependencies and all("skip_reason" in dependency for dependency in dependencies):
        raise AuditUnavailable(
            f"could not reach the {SERVICES[service]} advisory database: it answered for none "
            f"of the {len(dependencies)} pinned packages (e.g. {dependencies[0]['skip_reason']}),"
            " so nothing was audited"
        )
    audited, vulnerabilities, not_audited = 0, [], []
    for dependency in dependencies:
        name = f"{dependency['name']} {dependency.get('version', '')}".strip()
        if "skip_reason" in dependency:
            not_audited.append(f"{name}: {dependency['skip_reason']}")
            continue
        audited += 1
        for vuln in dependency.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            vulnerabilities.append(f"{name}: {vuln['id']} (fixed in {fixed})")
    return AuditResult(audited, vulnerabilities, not_audited)


def audit(requirements: Path, service: str, osv_url: str | None, timeout: int) -> int:
    """Audit and log what was done; the exit code (0 clean, 1 findings, 2 nothing audited)."""
    try:
        result = summarize(run_pip_audit(requirements, service, osv_url, timeout), service)
    except AuditUnavailable as error:
        logger.error("audit: %s", error)
        return UNREACHABLE
    for line in result.vulnerabilities:
        logger.warning("vulnerable: %s", line)
    for line in result.not_audited:
        logger.warning("not audited: %s", line)
    logger.info(
        "audit: %d of %d pinned packages audited against the %s advisory database: "
        "%d known vulnerabilities, %d packages not audited",
        result.audited,
        result.audited + len(result.not_audited),
        SERVICES[service],
        len(result.vulnerabilities),
        len(result.not_audited),
    )
    return FINDINGS if result.vulnerabilities or result.not_audited else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=Path("constraints.txt"))
    parser.add_argument("--service", choices=list(SERVICES), default="pypi")
    parser.add_argument("--osv-url", default=None, help="another OSV API address")
    parser.add_argument("--timeout", type=int, default=15, help="socket timeout, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.requirements.is_file():
        logger.error("audit: no such requirements file: %s", args.requirements)
        return UNREACHABLE
    return audit(args.requirements, args.service, args.osv_url, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
