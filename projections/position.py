"""Where each projection is in the log, kept in the view's own database.

Two bookkeeping tables live beside the read models:

- ``fasm_projection_positions``: one row per projection (and one per rebuild
  in progress, keyed ``name@rebuild``) holding the position of the last
  record applied, and the record it stopped at if a handler failed;
- ``fasm_projection_skips``: one audit line per record an operator skipped
  (projection, position, stream, version, type, reason, who, when).

A batch locks its position row first (``FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` locks the whole file), and its rows and new position then
commit in one transaction: that is the exactly-once guarantee. Two runners of
one projection therefore take turns rather than apply a record twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from projections.columns import UTCDateTime
from projections.database import SQLITE, begin_write

BOOKKEEPING = MetaData()

positions = Table(
    "fasm_projection_positions",
    BOOKKEEPING,
    Column("projection", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("failed_position", BigInteger),
    Column("failed_stream", Text),
    Column("failed_version", BigInteger),
    Column("failed_tag", Text),
    Column("failed_error", Text),
    Column("failed_at", UTCDateTime),
)

skips = Table(
    "fasm_projection_skips",
    BOOKKEEPING,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("projection", String(64), nullable=False, index=True),
    Column("position", BigInteger, nullable=False),
    Column("stream", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("tag", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("skipped_by", Text),
    Column("skipped_at", UTCDateTime, nullable=False),
)

REBUILD_SUFFIX = "@rebuild"
_ERROR_LIMIT = 4000


def rebuild_key(name: str) -> str:
    """The position row of ``name``'s rebuild in progress."""
    return name + REBUILD_SUFFIX


@dataclass(frozen=True, slots=True)
class Failure:
    """The record a projection stopped at, and why."""

    position: int
    stream: str
    version: int
    tag: str
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Position:
    """A stored position: the last record applied, and the failure it stopped at, if any."""

    position: int
    updated_at: datetime | None
    failure: Failure | None


@dataclass(frozen=True, slots=True)
class Skip:
    """One operator skip, as audited in ``fasm_projection_skips``."""

    projection: str
    position: int
    stream: str
    version: int
    tag: str
    reason: str
    skipped_by: str | None
    skipped_at: datetime


def ensure_tables(engine: Engine, tables: tuple[Table, ...] = ()) -> None:
    """Create the bookkeeping tables and ``tables`` if they do not exist yet."""
    every = (*BOOKKEEPING.sorted_tables, *tables)
    for attempt in range(3):
        try:
            with engine.begin() as connection:
                for table in every:
                    table.create(connection, checkfirst=True)
            return
        except DBAPIError:
            # Another process created one of them between the check and the create.
            if attempt == 2:
                raise


def _insert_missing(dialect: str, key: str, now: datetime) -> object:
    stmt = (sqlite.insert if dialect == SQLITE else postgresql.insert)(positions)
    return stmt.values(projection=key, position=0, updated_at=now).on_conflict_do_nothing(
        index_elements=["projection"]
    )


def lock(session: Session, key: str, now: datetime, *, first: bool = True) -> Position:
    """Lock ``key``'s position row for this transaction (creating it at 0) and read it.

    With ``first`` (the default) this must be the transaction's first statement;
    pass ``first=False`` to lock a second row in the same transaction.
    """
    if first:
        begin_write(session)
    dialect = session.get_bind().dialect.name
    session.execute(_insert_missing(dialect, key, now))  # type: ignore[call-overload]
    row = session.execute(
        select(positions).where(positions.c.projection == key).with_for_update()
    ).one()
    return _position(row)


def read(connection: Connection | Session, key: str) -> Position | None:
    """``key``'s stored position without locking it, or None if it has none."""
    row = connection.execute(select(positions).where(positions.c.projection == key)).first()
    return None if row is None else _position(row)


def _position(row: object) -> Position:
    m = row._mapping  # type: ignore[attr-defined]
    failure = None
    if m["failed_position"] is not None:
        failure = Failure(
            m["failed_position"],
            m["failed_stream"],
            m["failed_version"],
            m["failed_tag"],
            m["failed_error"],
            m["failed_at"],
        )
    return Position(m["position"], m["updated_at"], failure)


_CLEARED = {
    "failed_position": None,
    "failed_stream": None,
    "failed_version": None,
    "failed_tag": None,
    "failed_error": None,
    "failed_at": None,
}


def advance(session: Session, key: str, position: int, now: datetime) -> None:
    """Store ``position`` as applied (clearing any failure) in the caller's transaction."""
    session.execute(
        update(positions)
        .where(positions.c.projection == key)
        .values(position=position, updated_at=now, **_CLEARED)
    )


def record_failure(session: Session, key: str, failure: Failure) -> None:
    """Store the record ``key`` stopped at, in the caller's transaction."""
    error = failure.error
    if len(error) > _ERROR_LIMIT:
        error = error[: _ERROR_LIMIT - 3] + "..."
    session.execute(
        update(positions)
        .where(positions.c.projection == key)
        .values(
            failed_position=failure.position,
            failed_stream=failure.stream,
            failed_version=failure.version,
            failed_tag=failure.tag,
            failed_error=error,
            failed_at=failure.at,
        )
    )


def forget(session: Session, key: str) -> None:
    """Delete ``key``'s position row (in the caller's transaction)."""
    session.execute(positions.delete().where(positions.c.projection == key))


def record_skip(session: Session, skip: Skip) -> None:
    """Write the audit line of an operator skip (in the caller's transaction)."""
    session.execute(
        insert(skips).values(
            projection=skip.projection,
            position=skip.position,
            stream=skip.stream,
            version=skip.version,
            tag=skip.tag,
            reason=skip.reason,
            skipped_by=skip.skipped_by,
            skipped_at=skip.skipped_at,
        )
    )


def skipped(connection: Connection | Session, projection: str) -> list[Skip]:
    """Every record skipped in ``projection``, oldest first."""
    rows = connection.execute(
        select(skips).where(skips.c.projection == projection).order_by(skips.c.id)
    )
    return [
        Skip(
            r.projection,
            r.position,
            r.stream,
            r.version,
            r.tag,
            r.reason,
            r.skipped_by,
            r.skipped_at,
        )
        for r in rows
    ]
