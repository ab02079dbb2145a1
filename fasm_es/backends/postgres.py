"""PostgreSQL backend on the ``eventsourcing`` PostgreSQL recorder (psycopg 3).

Records live in ``fasm_records`` and snapshots in ``fasm_snapshots`` (in the
URL's schema, ``public`` by default), keyed by ``(stream, version)``; the
global position is the recorder's ``notification_id``. The recorder locks the
table for writes during each append, so positions are handed out in commit
order and a reader following the log never skips a record committed later with
a lower position. Positions may have gaps (a rolled-back append consumes
sequence numbers); they only ever increase. Stream ids are listed in the
database's collation order.

URL form::

    postgresql://user:password@host:port/database?schema=NAME&connect_timeout=5&pool_size=2

``postgres://`` works too; ``?host=/run/postgresql&port=5432`` in the query
names a Unix socket directory (and the port its socket file is named for).

Errors: a URL that is malformed, unreachable or refused raises
:class:`~fasm_es.errors.DatabaseURLError` at open, within the connect timeout;
a server that goes away later raises :class:`~fasm_es.errors.StoreUnavailable`
(retryable) from the operation that met it, also within the connect timeout.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from psycopg import errors as pg_errors
from psycopg.sql import SQL, Composed, Identifier

from fasm_es.backends.common import check_consecutive, conflict_for
from fasm_es.errors import DatabaseURLError, StoreError, StoreUnavailable
from fasm_es.record import EncodedRecord, RawRecord, RawSnapshot
from fasm_es.store import redact

TABLE = "fasm_records"
SNAPSHOT_TABLE = "fasm_snapshots"
SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
OPTIONS = ("schema", "host", "port", "connect_timeout", "pool_size")
DEFAULT_CONNECT_TIMEOUT = 5.0
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
DDL_LOCK = 0x46534D5F44444C
"""Advisory lock key under which a process creates the store's schema and tables."""

# The recorder retries a failed append up to 10 times, each try waiting up to
# the pool timeout: an outage would stall an append for about a minute. Call
# it once and report StoreUnavailable at once instead; the caller decides.
_insert_once: Callable[..., Sequence[int] | None] = inspect.unwrap(
    PostgresApplicationRecorder.insert_events
)
_insert_snapshot_once: Callable[..., object] = inspect.unwrap(
    PostgresAggregateRecorder.insert_events
)


@dataclass(frozen=True)
class PostgresParams:
    """Connection parameters parsed from a PostgreSQL URL."""

    dbname: str
    host: str
    port: int
    user: str
    password: str
    schema: str = "public"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    pool_size: int = 2


def _url_error(url: str, problem: str) -> DatabaseURLError:
    return DatabaseURLError(
        f"malformed PostgreSQL URL {redact(url)!r}: {problem} "
        "(use postgresql://user:password@host:port/database)"
    )


def _positive(url: str, name: str, value: str, convert: Callable[[str], Any]) -> Any:
    try:
        number = convert(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise _url_error(url, f"option {name}={value!r} must be a positive number")
    return number


def postgres_params(url: str) -> PostgresParams:
    """Parse ``url`` into connection parameters; raise DatabaseURLError if malformed."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise _url_error(url, f"scheme {parts.scheme!r} is not postgresql://")
    try:
        netloc_port = parts.port
    except ValueError:
        raise _url_error(url, "the port is not a number from 1 to 65535") from None
    dbname = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if "/" in dbname:
        raise _url_error(url, f"database name {dbname!r} contains '/'")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in OPTIONS:
            raise _url_error(url, f"unknown option {name!r} (known: {', '.join(OPTIONS)})")
        options[name] = value
    port = netloc_port or 5432
    if "port" in options:
        port = _positive(url, "port", options["port"], int)
        if port > 65535:
            raise _url_error(url, "the port is not a number from 1 to 65535")
    schema = options.get("schema", "").strip() or "public"
    # Lowercase only: the recorder looks its composite type up by unquoted name.
    if not SCHEMA_NAME.fullmatch(schema):
        raise _url_error(
            url, f"schema {schema!r} must be lowercase letters, digits and '_' (at most 63)"
        )
    return PostgresParams(
        dbname=dbname,
        host=options.get("host") or unquote(parts.hostname or ""),
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        schema=schema,
        connect_timeout=_positive(
            url, "connect_timeout", options.get("connect_timeout", "5"), float
        ),
        pool_size=_positive(url, "pool_size", options.get("pool_size", "2"), int),
    )


def _what_to_check(message: str, dbname: str) -> str:
    """Advice for a failed connection, from libpq's message (which carries no SQLSTATE)."""
    text = message.lower()
    if "database" in text and "does not exist" in text:
        return f"create the database (createdb {dbname}) or fix the database name in the URL"
    if any(word in text for word in ("role", "password", "authentication", "pg_hba")):
        return "check the user name and password in the URL, and the server's pg_hba.conf"
    if "fatal" in text:
        # The server answered but refused, for a reason not recognised above.
        return "check the user name, password and database name in the URL"
    return "check the host and port in the URL, and that the server is running and reachable"


class PostgresBackend:
    """A store in one PostgreSQL table; several processes and machines may share it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.params = params = postgres_params(url)
        self._closed = False
        self._probe()
        try:
            self.datastore = PostgresDatastore(
                dbname=params.dbname,
                host=params.host,
                port=params.port,
                user=params.user,
                password=params.password,
                connect_timeout=params.connect_timeout,
                pool_size=params.pool_size,
                # Replace pooled connections that died (server restart,
                # failover) before use, so one outage does not fail later calls.
                pre_ping=True,
                schema=params.schema,
                originator_id_type="text",
            )
            self.recorder = PostgresApplicationRecorder(self.datastore, events_table_name=TABLE)
            self.snapshots = PostgresAggregateRecorder(
                self.datastore, events_table_name=SNAPSHOT_TABLE
            )
            self._create_tables()
        except (PersistenceError, psycopg.Error) as exc:
            raise DatabaseURLError(
                f"cannot prepare PostgreSQL database {redact(url)!r}: {exc} (check that the "
                f"user may create tables in schema {params.schema!r})"
            ) from exc
        table = SQL("{}.{}").format(Identifier(params.schema), Identifier(TABLE))
        self._sql_stream = SQL(
            "SELECT originator_version, notification_id, topic, state FROM {} "
            "WHERE originator_id = %s AND originator_version > %s "
        ).format(table)
        self._sql_log = SQL(
            "SELECT originator_id, originator_version, notification_id, topic, state FROM {} "
            "WHERE notification_id > %s "
        ).format(table)
        self._sql_last_version = SQL(
            "SELECT MAX(originator_version) AS n FROM {} WHERE originator_id = %s"
        ).format(table)
        self._sql_last_versions = SQL(
            "SELECT originator_id, MAX(originator_version) AS n FROM {} "
            "WHERE originator_id = ANY(%s) GROUP BY originator_id"
        ).format(table)
        self._sql_last_position = SQL("SELECT MAX(notification_id) AS n FROM {}").format(table)
        self._sql_streams = SQL(
            "SELECT DISTINCT originator_id FROM {} WHERE originator_id > %s "
            "ORDER BY originator_id LIMIT %s"
        ).format(table)
        self._sql_snapshot = SQL(
            "SELECT originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = %s AND originator_version <= %s "
            "ORDER BY originator_version DESC LIMIT 1"
        ).format(Identifier(params.schema), Identifier(SNAPSHOT_TABLE))
        self._sql_delete_snapshots = SQL(
            "DELETE FROM {}.{} WHERE originator_id = %s AND originator_version < %s"
        ).format(Identifier(params.schema), Identifier(SNAPSHOT_TABLE))

    def _create_tables(self) -> None:
        # Processes starting together on a new database collide in CREATE SCHEMA /
        # CREATE TABLE IF NOT EXISTS (unique violations in PostgreSQL's catalogue,
        # "tuple concurrently updated"): one at a time, under an advisory lock
        # held by a connection of its own, released when it closes.
        p = self.params
        with psycopg.connect(
            dbname=p.dbname,
            host=p.host,
            port=p.port,
            user=p.user,
            password=p.password,
            connect_timeout=max(2, round(p.connect_timeout)),
            autocommit=True,
        ) as lock:
            lock.execute("SELECT pg_advisory_lock(%s::bigint)", (DDL_LOCK,))
            if p.schema != "public":
                self._execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(p.schema)))
            self.recorder.create_table()
            self.snapshots.create_table()

    def _probe(self) -> None:
        """Connect once with a short timeout, so a wrong URL fails here with the server's reason."""
        p = self.params
        try:
            psycopg.connect(
                dbname=p.dbname,
                host=p.host,
                port=p.port,
                user=p.user,
                password=p.password,
                # libpq counts whole seconds and treats values under 2 as 2.
                connect_timeout=max(2, round(p.connect_timeout)),
            ).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().replace("\n\t", " ").replace("\n", " ")
            raise DatabaseURLError(
                f"cannot connect to PostgreSQL database {redact(self.url)!r}: {reason} "
                f"({_what_to_check(reason, p.dbname or p.user)})"
            ) from exc

    @contextmanager
    def _errors(self, doing: str, then: str = "then retry") -> Iterator[None]:
        """Turn the recorder's errors into StoreError subclasses that name the database."""
        if self._closed:
            raise StoreError(f"PostgreSQL store {redact(self.url)!r} is closed: {doing}")
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailable(
                f"PostgreSQL database {redact(self.url)!r}: {doing} failed: {exc} "
                f"(the server is unreachable, went away or timed out: check that it is "
                f"running, {then})"
            ) from exc
        except PersistenceError as exc:
            raise StoreError(
                f"PostgreSQL database {redact(self.url)!r}: {doing} failed: {exc}"
            ) from exc

    def _execute(self, statement: Composed) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(statement)

    def _query(self, doing: str, statement: Composed, params: Sequence[Any]) -> list[Any]:
        with self._errors(doing), self.datastore.get_connection() as conn:
            return conn.execute(statement, params).fetchall()

    def insert(self, records: Sequence[EncodedRecord]) -> list[int]:
        check_consecutive(records)
        events = [StoredEvent(r.stream, r.version, r.tag, r.body) for r in records]
        with self._errors(
            f"appending {len(records)} record(s)",
            "then re-read the stream before retrying: if the connection broke during "
            "commit, the records may be stored",
        ):
            try:
                ids = _insert_once(self.recorder, events)
            except IntegrityError as exc:
                if not isinstance(exc.__cause__, pg_errors.UniqueViolation):
                    raise
                taken = next(
                    (r for r in records if self.last_version(r.stream) >= r.version),
                    records[0],
                )
                raise conflict_for(taken, "version already stored") from exc
        assert ids is not None and len(ids) == len(records)
        return list(ids)

    def select_stream(self, stream: str, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        statement = self._sql_stream
        params: list[Any] = [stream, gt]
        if lte is not None:
            statement += SQL("AND originator_version <= %s ")
            params.append(lte)
        statement += SQL("ORDER BY originator_version LIMIT %s")
        params.append(limit)
        rows = self._query(f"reading stream {stream!r}", statement, params)
        return [
            RawRecord(
                stream,
                r["originator_version"],
                r["notification_id"],
                r["topic"],
                bytes(r["state"]),
            )
            for r in rows
        ]

    def select_log(self, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        statement = self._sql_log
        params: list[Any] = [gt]
        if lte is not None:
            statement += SQL("AND notification_id <= %s ")
            params.append(lte)
        statement += SQL("ORDER BY notification_id LIMIT %s")
        params.append(limit)
        rows = self._query("reading the log", statement, params)
        return [
            RawRecord(
                r["originator_id"],
                r["originator_version"],
                r["notification_id"],
                r["topic"],
                bytes(r["state"]),
            )
            for r in rows
        ]

    def last_version(self, stream: str) -> int:
        rows = self._query(f"reading stream {stream!r}", self._sql_last_version, [stream])
        return int(rows[0]["n"] or 0)

    def last_versions(self, streams: Sequence[str]) -> dict[str, int]:
        rows = self._query(
            f"reading the versions of {len(streams)} stream(s)",
            self._sql_last_versions,
            [list(streams)],
        )
        return {r["originator_id"]: int(r["n"]) for r in rows}

    def last_position(self) -> int:
        rows = self._query("reading the log", self._sql_last_position, [])
        return int(rows[0]["n"] or 0)

    def select_streams(self, gt: str, limit: int) -> list[str]:
        rows = self._query("listing streams", self._sql_streams, [gt, limit])
        return [r["originator_id"] for r in rows]

    def insert_snapshot(self, snapshot: RawSnapshot) -> None:
        event = StoredEvent(snapshot.stream, snapshot.version, snapshot.tag, snapshot.body)
        with self._errors(f"saving a snapshot of stream {snapshot.stream!r}"):
            try:
                _insert_snapshot_once(self.snapshots, [event])
            except IntegrityError as exc:
                # A snapshot of that version is already stored: keep it.
                if not isinstance(exc.__cause__, pg_errors.UniqueViolation):
                    raise

    def delete_snapshots(self, stream: str, before: int) -> int:
        with (
            self._errors(f"deleting old snapshots of stream {stream!r}"),
            self.datastore.get_connection() as conn,
        ):
            cursor = conn.execute(self._sql_delete_snapshots, [stream, before])
            return int(cursor.rowcount)

    def select_snapshot(self, stream: str, lte: int | None) -> RawSnapshot | None:
        # bigint's maximum stands for "no upper bound", keeping one statement.
        upper = (1 << 63) - 1 if lte is None else lte
        rows = self._query(
            f"reading snapshots of stream {stream!r}", self._sql_snapshot, [stream, upper]
        )
        if not rows:
            return None
        r = rows[0]
        return RawSnapshot(stream, r["originator_version"], r["topic"], bytes(r["state"]))

    def close(self) -> None:
        """Close the connection pool; later calls raise StoreError."""
        self._closed = True
        self.datastore.close()
