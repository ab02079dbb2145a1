"""Fresh tables for a rebuild, and swapping them in for the live ones.

A rebuild writes into copies of the projection's tables named
``<table>__rebuild``. Their index names (and, on PostgreSQL, their named
constraints, whose indexes share one namespace with every other index) are
replaced by short derived names so they can exist beside the live ones.

The swap runs in one transaction: drop each live table, rename its fresh
copy to the live name, and give indexes and constraints their declared
names back. Readers see either the old complete view or the new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, Index, MetaData, Table, inspect, text

from projections.database import POSTGRESQL

SUFFIX = "__rebuild"
_PREFIX = "fasm_rb_"


def shadow_name(name: str) -> str:
    """The name of ``name``'s fresh copy during a rebuild."""
    return name + SUFFIX


def _derived(name: str) -> str:
    return _PREFIX + hashlib.sha256(name.encode()).hexdigest()[:20]


def shadow_tables(tables: Iterable[Table], dialect: str) -> dict[str, Table]:
    """Fresh copies of ``tables`` (not created yet), keyed by the live table's name."""
    metadata = MetaData()
    copies: dict[str, Table] = {}
    for table in tables:
        copy = table.to_metadata(metadata, name=shadow_name(table.name))
        # Indexes pair up by what they index: a copy's own name may follow the new table name.
        live_indexes = sorted(table.indexes, key=_index_signature)
        fresh_indexes = sorted(copy.indexes, key=_index_signature)
        for live, fresh in zip(live_indexes, fresh_indexes, strict=True):
            fresh.name = _derived(str(live.name))  # type: ignore[assignment]
        if dialect == POSTGRESQL:
            for constraint in copy.constraints:
                if isinstance(constraint.name, str):
                    constraint.name = _derived(constraint.name)
        copies[table.name] = copy
    return copies


def _index_signature(index: Index) -> tuple[str, ...]:
    return (str(index.unique), *(str(getattr(e, "name", e)) for e in index.expressions))


def existing(connection: Connection, tables: Iterable[Table]) -> list[Table]:
    """Those of ``tables`` that exist in the database."""
    present = set(inspect(connection).get_table_names())
    return [t for t in tables if t.name in present]


def swap(connection: Connection, live: Iterable[Table], shadows: Mapping[str, Table]) -> None:
    """Replace each live table with its fresh copy, in the caller's transaction."""
    dialect = connection.dialect.name
    for table in live:
        fresh = shadows[table.name]
        table.drop(connection, checkfirst=True)
        old, new = _quote(connection, fresh.name), _quote(connection, table.name)
        connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
        if dialect == POSTGRESQL:
            _restore_postgres_names(connection, table, fresh)
        else:
            _restore_sqlite_indexes(connection, table, fresh)


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _restore_sqlite_indexes(connection: Connection, table: Table, fresh: Table) -> None:
    # SQLite cannot rename an index: drop the copy's and build the declared one.
    for index in fresh.indexes:
        connection.execute(text(f"DROP INDEX IF EXISTS {_quote(connection, str(index.name))}"))
    for index in table.indexes:
        index.create(connection)


def _restore_postgres_names(connection: Connection, table: Table, fresh: Table) -> None:
    derived: dict[str, str] = {}
    for index in table.indexes:
        derived[_derived(str(index.name))] = str(index.name)
    for constraint in table.constraints:
        if isinstance(constraint.name, str):
            derived[_derived(constraint.name)] = constraint.name

    def declared(name: str) -> str:
        if name in derived:
            return derived[name]
        return name.replace(fresh.name, table.name)

    quoted = _quote(connection, table.name)
    constraint_rows = connection.execute(
        text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) "
            "AND contype <> 'n'"
        ),
        {"t": quoted},
    ).all()
    renamed: set[str] = set()
    for (name,) in constraint_rows:
        wanted = declared(name)
        if wanted != name:
            connection.execute(
                text(
                    f"ALTER TABLE {quoted} RENAME CONSTRAINT {_quote(connection, name)} "
                    f"TO {_quote(connection, wanted)}"
                )
            )
        # A constraint's index is renamed with it.
        renamed.add(name)
    index_rows = connection.execute(
        text(
            "SELECT indexname FROM pg_indexes "
            "WHERE tablename = :t AND schemaname = current_schema()"
        ),
        {"t": table.name},
    ).all()
    for (name,) in index_rows:
        wanted = declared(name)
        if name in renamed or wanted == name:
            continue
        connection.execute(
            text(f"ALTER INDEX {_quote(connection, name)} RENAME TO {_quote(connection, wanted)}")
        )


def create(connection: Connection, tables: Iterable[Table]) -> None:
    """Create ``tables`` (dropping any left by an abandoned rebuild first)."""
    for table in tables:
        table.drop(connection, checkfirst=True)
        table.create(connection)


def drop(connection: Connection, tables: Iterable[Table]) -> None:
    """Drop ``tables`` if they exist."""
    for table in tables:
        table.drop(connection, checkfirst=True)
