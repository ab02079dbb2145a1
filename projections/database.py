"""The read-model database: opening it by URL, and what differs between SQLite and PostgreSQL.

A view may live in the event store's database or in any other one SQLAlchemy
can reach; only SQLite and PostgreSQL are supported, because batches need a
write lock taken up front and upserts need ``ON CONFLICT``:

- SQLite files are opened in WAL mode (readers never wait for a batch) with
  ``synchronous=NORMAL``: a power cut may lose the last batches, but a batch
  and its position are lost together, so the runner simply applies them again.
  Each batch starts with ``BEGIN IMMEDIATE``, so two writers queue instead of
  failing half-way.
- PostgreSQL URLs use psycopg 3 (``postgresql://`` is read as
  ``postgresql+psycopg://``); the position row is locked ``FOR UPDATE``.
  The event store's ``?schema=NAME`` option becomes the search path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from fasm_es.errors import DatabaseURLError
from fasm_es.store import redact

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
SUPPORTED = (SQLITE, POSTGRESQL)
_STORE_ONLY_OPTIONS = ("schema", "pool_size")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def open_view(view: str | URL | Engine) -> Engine:
    """An engine on the read-model database named by ``view`` (a URL or an engine).

    Raises :class:`~fasm_es.errors.DatabaseURLError` for a malformed URL or a
    database other than SQLite or PostgreSQL.
    """
    if isinstance(view, Engine):
        _check_dialect(view.dialect.name, str(view.url))
        if view.dialect.name == SQLITE and view.url.database not in (None, "", ":memory:"):
            # Our own engine on the same file, so the pragmas below apply to
            # the projection's connections and not to the caller's.
            return _sqlite_engine(view.url)
        return view
    try:
        url = make_url(view)
    except ArgumentError as exc:
        raise DatabaseURLError(
            f"malformed view database URL {redact(str(view))!r}: {exc} (use "
            "sqlite:///path/to/views.db or postgresql://user:password@host:port/database)"
        ) from exc
    backend = url.get_backend_name()
    if backend == "postgres":
        backend = POSTGRESQL
        url = url.set(drivername=POSTGRESQL)
    _check_dialect(backend, str(view))
    if backend == SQLITE:
        return _sqlite_engine(url)
    return _postgres_engine(url)


def _check_dialect(name: str, url: str) -> None:
    if name not in SUPPORTED:
        raise DatabaseURLError(
            f"view database {redact(url)!r} is {name}: projections run on SQLite or "
            "PostgreSQL (sqlite:///path/to/views.db or postgresql://user:password@host/db)"
        )


def _sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    engine = (
        # One shared connection: an in-memory database exists only inside it.
        create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        if in_memory
        else create_engine(url)
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    return engine


def _postgres_engine(url: URL) -> Engine:
    schema = url.query.get("schema")
    url = url.set(drivername="postgresql+psycopg").difference_update_query(_STORE_ONLY_OPTIONS)
    connect_args: dict[str, Any] = {}
    if isinstance(schema, str) and schema:
        connect_args["options"] = f"-c search_path={schema}"
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True)


def begin_write(session: Session) -> None:
    """Take the database's write lock at the start of a batch (SQLite); no-op elsewhere.

    Must be the first statement of the session's transaction. On PostgreSQL
    the lock that matters is the position row's, taken ``FOR UPDATE``.
    """
    if session.get_bind().dialect.name == SQLITE:
        session.execute(text("BEGIN IMMEDIATE"))


def upsert(
    dialect: str, table: Table, key: Sequence[str], columns: Sequence[str], *, add: bool = False
) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of every non-key column given.

    The update sets each column to the new value, or with ``add`` adds the new
    value to the stored one (a counter).
    """
    stmt = (sqlite.insert if dialect == SQLITE else postgresql.insert)(table)
    updates = {
        c: (table.c[c] + stmt.excluded[c]) if add else stmt.excluded[c]
        for c in columns
        if c not in key
    }
    if not updates:
        return stmt.on_conflict_do_nothing(index_elements=list(key))
    return stmt.on_conflict_do_update(index_elements=list(key), set_=updates)
