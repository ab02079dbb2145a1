"""Shared fixtures: a PostgreSQL server for the session, and backend parametrisation.

PostgreSQL comes from ``$FASM_ES_TEST_POSTGRES_URL`` (a URL whose user may
``CREATE DATABASE``) or, failing that, from a throwaway cluster started with the
server binaries found on this machine. Without either, PostgreSQL tests are
skipped, unless ``FASM_ES_REQUIRE_POSTGRES=1`` (as in CI) makes that a failure.
Each test gets a database of its own.

A test that takes ``store_url`` (or ``backend``) runs once per backend;
``@pytest.mark.backends("sqlite", "postgres")`` narrows that, and
``pytest -m "not postgres"`` leaves PostgreSQL out.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

POSTGRES_URL_ENV = "FASM_ES_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "FASM_ES_REQUIRE_POSTGRES"
BACKENDS = ("memory", "sqlite", "postgres")
SERVER_USER = "postgres"


def backend_params(*names: str) -> list[Any]:
    """``pytest.param`` per backend name (all by default), PostgreSQL ones marked ``postgres``."""
    return [
        pytest.param(name, id=name, marks=[pytest.mark.postgres] if name == "postgres" else [])
        for name in names or BACKENDS
    ]


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases on; ``admin_url`` names an existing one."""

    admin_url: str

    def url_for(self, dbname: str) -> str:
        """The admin URL with its database replaced by ``dbname``."""
        return urlsplit(self.admin_url)._replace(path=f"/{dbname}").geturl()

    def execute(self, statement: str) -> None:
        """Run one statement outside a transaction (as CREATE/DROP DATABASE need)."""
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement.encode())


def _server_binaries() -> Path | None:
    """The bin directory of the newest PostgreSQL server installed, if any."""

    def version(bindir: str) -> tuple[int, ...]:
        name = Path(bindir).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    # Debian's layout; a pg_ctl on PATH may be a wrapper of another kind.
    found = sorted(
        (str(Path(p).parent) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=version,
    )
    for bindir in reversed(found):
        if (Path(bindir) / "pg_ctl").exists():
            return Path(bindir)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(pg_ctl).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """A throwaway cluster in a temporary directory, on 127.0.0.1 and a free port."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="fasm-es-pg-"))
        self.data = self.root / "data"
        self.port = 0
        # initdb refuses to run as root: run the server as the postgres system user.
        self.as_root = os.geteuid() == 0
        if self.as_root:
            self._ensure_server_user()
            shutil.chown(self.root, SERVER_USER, SERVER_USER)

    @property
    def url(self) -> str:
        """The URL of the cluster's ``postgres`` database, as its superuser."""
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _ensure_server_user() -> None:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", SERVER_USER],
                check=True,
                capture_output=True,
            )

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{tail}"
            )

    def create(self) -> None:
        """Initialise the cluster and start its server on a free port."""
        self._run(
            "initdb",
            *("-D", str(self.data), "-A", "trust", "-U", SERVER_USER),
            *("-E", "UTF8", "--no-locale", "--no-sync"),
        )
        for attempt in range(3):
            # The port may be taken between choosing it and the server binding it.
            self.port = _free_port()
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def start(self) -> None:
        """Start the server (again) on ``self.port``."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
        )
        log = str(self.root / "server.log")
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", log, "-w", "-t", "60", "-o", options
        )

    def stop(self) -> None:
        """Stop the server at once; the cluster stays on disk."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    def destroy(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _new_cluster(*, required: bool) -> PostgresCluster:
    """A started cluster, or a skip (a failure if ``required``) when that is impossible."""
    bindir = _server_binaries()
    if bindir is None:
        reason = (
            f"no PostgreSQL server: set {POSTGRES_URL_ENV} or install the server "
            "(Debian package postgresql)"
        )
        if required:
            pytest.fail(f"{reason}; {REQUIRE_POSTGRES_ENV}=1 requires PostgreSQL tests to run")
        pytest.skip(reason)
    cluster = PostgresCluster(bindir)
    try:
        cluster.create()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        cluster.destroy()
        message = f"could not start a PostgreSQL cluster with {bindir}: {exc}"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (see the module docstring for where it comes from)."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        yield PostgresServer(url)
        return
    cluster = _new_cluster(required=os.environ.get(REQUIRE_POSTGRES_ENV) == "1")
    try:
        yield PostgresServer(cluster.url)
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A cluster of the test's own, which it may stop and start (for outage tests).

    It needs the server binaries even when ``$FASM_ES_TEST_POSTGRES_URL`` names a
    server; in that case their absence skips the test rather than failing it.
    """
    required = os.environ.get(REQUIRE_POSTGRES_ENV) == "1" and POSTGRES_URL_ENV not in os.environ
    cluster = _new_cluster(required=required)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    dbname = f"fasm_test_{uuid.uuid4().hex[:16]}"
    postgres_server.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield postgres_server.url_for(dbname)
    finally:
        # FORCE: a store the test left open must not keep the database alive.
        postgres_server.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``backends`` marker (for ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        "backends(*names): run a test that takes `backend` or `store_url` only on these "
        f"backends (default: all of {', '.join(BACKENDS)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that needs ``backend`` once per backend (see the ``backends`` marker)."""
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("backends")
        metafunc.parametrize("backend", backend_params(*(marker.args if marker else ())))


@pytest.fixture
def store_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """The URL of a fresh, empty store on ``backend`` (PostgreSQL: a new database)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
