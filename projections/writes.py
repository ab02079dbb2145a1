"""Buffered writes: rows handlers insert or upsert, sent to the database many at a time.

Catch-up speed is mostly the cost per row, so the rows a batch buffers are
sent with the driver's ``executemany`` on a statement compiled once per
table and set of columns. Each value still goes through its column type's
bind processor, exactly as SQLAlchemy would send it; only SQLAlchemy's
per-row bookkeeping is skipped. A table whose missing columns have
Python-side defaults goes through ``Session.execute`` instead, so SQLAlchemy
computes those defaults.

Upserts of one key in one batch are merged (later values over earlier ones)
before they are sent, which has the same effect as running them in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from projections.database import upsert as upsert_statement
from projections.errors import ProjectionDefinitionError

Processor = Callable[[Any], Any] | None


class _Plan:
    """A statement compiled for one dialect and set of columns, and how to bind a row."""

    __slots__ = ("columns", "getter", "named", "processors", "sql")

    def __init__(
        self, sql: str, columns: tuple[str, ...], processors: tuple[Processor, ...], named: bool
    ) -> None:
        self.sql = sql
        self.columns = columns
        self.processors = processors if any(processors) else ()
        self.named = named
        self.getter = itemgetter(*columns)

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any] | None:
        """The driver's parameters for ``rows``, or None if a row has other columns."""
        width = len(self.columns)
        if any(len(row) != width for row in rows):
            return None
        getter, processors = self.getter, self.processors
        try:
            if width == 1:
                values = [(getter(row),) for row in rows]
            else:
                values = [getter(row) for row in rows]
        except KeyError:
            return None
        if processors:
            values = [
                tuple(v if p is None else p(v) for p, v in zip(processors, row, strict=True))
                for row in values
            ]
        if self.named:
            return [dict(zip(self.columns, row, strict=True)) for row in values]
        return values


class Statements:
    """Compiled statements for one view database, kept across batches."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._statements: dict[tuple[Any, ...], tuple[Insert, _Plan | None]] = {}

    def insert(self, table: Table, columns: tuple[str, ...]) -> tuple[Insert, _Plan | None]:
        """The insert of ``columns`` into ``table``, and its plan (None: leave it to SQLAlchemy)."""
        cache_key = ("insert", table, columns)
        found = self._statements.get(cache_key)
        if found is None:
            stmt = insert(table)
            found = self._statements[cache_key] = (stmt, self._compile(stmt, table, columns))
        return found

    def upsert(
        self, table: Table, key: tuple[str, ...], columns: tuple[str, ...], *, add: bool
    ) -> tuple[Insert, _Plan | None]:
        """The upsert (or, with ``add``, the addition) of ``columns`` on ``key``, and its plan."""
        cache_key = ("upsert", table, key, columns, add)
        found = self._statements.get(cache_key)
        if found is None:
            stmt = upsert_statement(self.dialect.name, table, key, columns, add=add)
            found = self._statements[cache_key] = (stmt, self._compile(stmt, table, columns))
        return found

    def _compile(self, stmt: Insert, table: Table, columns: tuple[str, ...]) -> _Plan | None:
        given = set(columns)
        if not given <= set(table.c.keys()):
            return None  # SQLAlchemy names the unknown column
        for column in table.columns:
            if column.key not in given and (
                column.default is not None or column.onupdate is not None
            ):
                return None  # a Python-side default: SQLAlchemy computes it per row
        dialect = self.dialect
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
        escaped = {v: k for k, v in (compiled.escaped_bind_names or {}).items()}
        if compiled.positional:
            names = tuple(escaped.get(n, n) for n in compiled.positiontup or ())
        else:
            names = tuple(escaped.get(n, n) for n in compiled.bind_names.values())
        if set(names) != given or len(names) != len(given):
            return None
        if not compiled.positional and escaped:
            return None
        processors = tuple(
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        )
        return _Plan(compiled.string, names, processors, not compiled.positional)


Buffered = dict[tuple[Table, tuple[str, ...], bool], dict[tuple[Any, ...], dict[str, Any]]]
"""Upserts and additions by (table, key columns, is an addition), then by key value."""


class Writes:
    """Rows buffered by :class:`~projections.Context` ``insert``/``upsert``/``add``, not sent yet.

    Upserts of one key are merged (later values win) and additions to one key
    summed, which has the same effect as sending them one after the other.
    """

    __slots__ = ("_merged", "_statements", "inserts")

    def __init__(self, statements: Statements) -> None:
        self._statements = statements
        self.inserts: dict[Table, list[Mapping[str, Any]]] = {}
        """Rows to insert, by table, in order (:class:`~projections.Context` appends to it)."""
        self._merged: Buffered = {}

    def __bool__(self) -> bool:
        return bool(self.inserts or self._merged)

    def insert(self, table: Table, values: Mapping[str, Any]) -> None:
        """Buffer one row to insert into ``table``."""
        rows = self.inserts.get(table)
        if rows is None:
            self.inserts[table] = rows = []
        rows.append(values)

    def upsert(self, table: Table, values: Mapping[str, Any], key: tuple[str, ...]) -> None:
        """Buffer an insert-or-update of the row whose ``key`` columns hold ``values``'s."""
        rows = self._merged.setdefault((table, key, False), {})
        key_value = _key_of(table, values, key, "upsert into")
        earlier = rows.get(key_value)
        if earlier is None:
            rows[key_value] = dict(values)
        else:
            earlier.update(values)

    def add(self, table: Table, key: Mapping[str, Any], amounts: Mapping[str, Any]) -> None:
        """Buffer adding ``amounts`` to the row with ``key`` (inserted with them if missing)."""
        columns = tuple(key)
        rows = self._merged.setdefault((table, columns, True), {})
        key_value = tuple(key.values())
        earlier = rows.get(key_value)
        if earlier is None:
            rows[key_value] = {**key, **amounts}
            return
        for column, amount in amounts.items():
            earlier[column] = earlier[column] + amount if column in earlier else amount

    def flush(self, session: Session) -> None:
        """Send every buffered row: inserts, then upserts and additions."""
        inserts, merged = dict(self.inserts), self._merged
        self.inserts.clear()  # the same dict: the context appends to it
        self._merged = {}
        statements = self._statements
        for table, rows in inserts.items():
            _send(session, *statements.insert(table, tuple(rows[0])), rows)
        for (table, key, add), by_key in merged.items():
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in by_key.values():
                groups.setdefault(tuple(sorted(row)), []).append(row)
            for columns, group in groups.items():
                _send(session, *statements.upsert(table, key, columns, add=add), group)


def _key_of(
    table: Table, values: Mapping[str, Any], key: tuple[str, ...], doing: str
) -> tuple[Any, ...]:
    try:
        return tuple(values[k] for k in key)
    except KeyError as exc:
        raise ProjectionDefinitionError(
            f"{doing} {table.name!r}: the values lack key column {exc.args[0]!r} (key {list(key)})"
        ) from None


def _send(
    session: Session, stmt: Insert, plan: _Plan | None, rows: Sequence[Mapping[str, Any]]
) -> None:
    parameters = plan.parameters(rows) if plan is not None else None
    if parameters is None:
        session.execute(stmt, rows)
    else:
        assert plan is not None
        session.connection().exec_driver_sql(plan.sql, parameters)
