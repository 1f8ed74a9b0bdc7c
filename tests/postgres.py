"""A real, throwaway PostgreSQL server for tests: Debian's `postgresql` binaries, a fresh cluster
in a temporary folder, reached through a unix socket in that folder only (no TCP port to collide
on, so each pytest-xdist worker runs its own), stopped and deleted at the end.

PostgreSQL refuses to run as root: when the tests run as root (as in a container), the cluster
belongs to the `postgres` system user and its programs run through `runuser`. The binaries come
from $PG_BINDIR, else the newest /usr/lib/postgresql/N/bin, else `initdb` and `pg_ctl` on PATH.
`start_postgres` raises `PostgresUnavailable` with the reason when there are none or the server
does not start; the `postgres_server` fixture turns that into a skip.
"""

from __future__ import annotations

import itertools
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
SYSTEM_USER = "postgres"  # who runs the server when the tests run as root
TIMEOUT_SECONDS = 60
# A throwaway cluster: nothing to keep through a crash, so no waiting for the disk.
INITDB_LOCALE = ("--encoding=UTF8", "--no-locale")  # byte order, whatever the machine's locale
SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresUnavailable(Exception):
    """No PostgreSQL server binaries, or the server would not start (the message says which)."""


def server_binaries() -> Path | None:
    """The folder holding `initdb`, `pg_ctl` and `postgres`; None when there is none."""
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        candidates = [Path(explicit)]
    else:
        versions = Path("/usr/lib/postgresql").glob("*/bin")
        candidates = sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


@dataclass
class PostgresServer:
    """A running cluster in `root` (data in `root/data`, socket and log in `root`)."""

    bindir: Path
    root: Path
    run_as: str | None  # the system user running the server, when we are root
    _names: itertools.count[int] = field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` (psycopg 3, through the socket)."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.root}"

    def create_database(self, prefix: str = "store") -> str:
        """A new, empty database; its SQLAlchemy URL."""
        name = f"{prefix}_{next(self._names)}"
        with psycopg.connect(
            host=str(self.root), user=SUPERUSER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            # Immediate: the cluster is deleted next, nothing in it needs a clean shutdown.
            _run(self, "pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        except PostgresUnavailable as error:
            logger.warning("could not stop the test PostgreSQL: %s", error)
        shutil.rmtree(self.root, ignore_errors=True)


def _run(server: PostgresServer, program: str, *args: str) -> None:
    command = [str(server.bindir / program), *args]
    if server.run_as is not None:
        command = ["runuser", "-u", server.run_as, "--", *command]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", None) or getattr(error, "stdout", None) or error
        raise PostgresUnavailable(f"{program} failed: {str(detail).strip()[-500:]}") from None


def start_postgres() -> PostgresServer:
    """Create and start a throwaway cluster; `PostgresUnavailable` says why when it cannot."""
    bindir = server_binaries()
    if bindir is None:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (install Debian's `postgresql`, or set $PG_BINDIR)"
        )
    run_as = None
    root = Path(tempfile.mkdtemp(prefix="leadscore-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            shutil.rmtree(root)
            raise PostgresUnavailable(
                f"running as root and there is no `{SYSTEM_USER}` user to run PostgreSQL as"
            ) from None
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = SYSTEM_USER
    server = PostgresServer(bindir=bindir, root=root, run_as=run_as)
    data = root / "data"
    try:
        _run(server, "initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", *INITDB_LOCALE)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{root}'\n")
            conf.writelines(f"{name} = {value}\n" for name, value in SETTINGS.items())
        log = root / "server.log"
        _run(server, "pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "30", "start")
    except PostgresUnavailable as error:
        log_tail = _tail(root / "server.log")
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"{error}{log_tail}") from None
    logger.info("test PostgreSQL from %s running in %s", bindir, root)
    return server


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f" (server log: {' | '.join(lines[-3:])})" if lines else ""
