"""What a handler is given: the record being projected, and the view it writes to.

A :class:`Context` lives for one batch; its record fields change as the batch
moves from record to record, so a handler reads them during its call and
does not keep the context. Handlers write through :attr:`Context.session`
(any SQLAlchemy statement) or through the buffered :meth:`Context.insert` and
:meth:`Context.upsert`, which send rows to the database many at a time
(``executemany``) and are the fast path for catch-up. Buffered rows are
written before the session is handed out again and before the batch
commits, so a handler that reads through the session sees them.

Always name tables through :meth:`Context.table` (or pass a declared table,
model class or table name to ``insert``/``upsert``): during a rebuild the
same handler writes into fresh tables, and ``table()`` is what points it
there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from fasm_es.inputs import ActionId, Metadata
from fasm_es.record import Record
from projections.writes import Writes

TableRef = Table | type[Any] | str
"""A declared table: the ``Table``, its declarative model class, or its name."""


def cached(resolve: Callable[[TableRef], Table]) -> Callable[[TableRef], Table]:
    """``resolve`` remembering its answers (handlers name their tables on every record)."""
    found: dict[TableRef, Table] = {}

    def lookup(ref: TableRef) -> Table:
        table = found.get(ref)
        if table is None:
            table = found[ref] = resolve(ref)
        return table

    return lookup


class Context:
    """The record a handler is called for, and the view it writes to.

    Record fields: :attr:`record` (the decoded record: input, actions, hash),
    :attr:`stream`, :attr:`version`, :attr:`position`, :attr:`tag`,
    :attr:`meta` and its :attr:`accepted_at` and :attr:`actor`. While an
    action handler runs, :attr:`action_id` is the tracked action's id (None
    for an untracked one).
    """

    __slots__ = (
        "_inserts",
        "_resolve",
        "_session",
        "_writes",
        "action_id",
        "position",
        "record",
        "scratch",
        "stream",
        "version",
    )

    def __init__(
        self,
        session: Session,
        resolve: Callable[[TableRef], Table],
        writes: Writes,
    ) -> None:
        self._session = session
        self._resolve = resolve
        self._writes = writes
        self._inserts = writes.inserts
        self.record: Record[Any, Any, Any, Any] = None  # type: ignore[assignment]
        self.stream = ""
        """The record's stream id."""
        self.version = 0
        """The record's version in its stream."""
        self.position = 0
        """The record's global position in the log."""
        self.action_id: ActionId | None = None
        self.scratch: dict[str, Any] = {}
        """Per-batch scratch space for handlers and ``before_commit`` hooks; dropped with
        the batch (so a rolled-back batch leaves nothing behind in it)."""

    @property
    def session(self) -> Session:
        """The batch's session (its transaction commits with the position); rows buffered
        by :meth:`insert` and :meth:`upsert` are written before it is returned."""
        if self._writes:
            self._writes.flush(self._session)
        return self._session

    def table(self, ref: TableRef) -> Table:
        """The table to read and write for the declared table ``ref`` (fresh during a rebuild)."""
        return self._resolve(ref)

    def insert(self, table: TableRef, values: Mapping[str, Any]) -> None:
        """Insert one row into ``table`` (buffered and sent with many others, so pass a
        mapping of its own: it is read when the batch is written)."""
        resolved = self._resolve(table)
        rows = self._inserts.get(resolved)
        if rows is None:
            rows = self._inserts[resolved] = []
        rows.append(values)

    def upsert(self, table: TableRef, values: Mapping[str, Any], *, key: Sequence[str]) -> None:
        """Insert the row, or update the existing one whose ``key`` columns match.

        ``key`` must be the columns of a primary key or unique constraint.
        Columns not in ``values`` keep their value on update. Buffered.
        """
        self._writes.upsert(self._resolve(table), values, tuple(key))

    def add(self, table: TableRef, key: Mapping[str, Any], amounts: Mapping[str, Any]) -> None:
        """Add ``amounts`` to the columns of the row whose columns ``key`` match.

        A missing row is inserted with ``key`` and ``amounts`` (its other
        columns take their defaults). ``key`` must name a primary key or
        unique constraint. Buffered; additions to one row in a batch are
        summed first. Do not upsert and add the same column of one row: the
        two are written in no set order.
        """
        self._writes.add(self._resolve(table), key, amounts)

    @property
    def tag(self) -> str:
        """The record's stored type tag."""
        return self.record.tag

    @property
    def meta(self) -> Metadata:
        """The metadata recorded with the input."""
        return self.record.input.meta

    @property
    def accepted_at(self) -> datetime:
        """When the input was accepted (timezone-aware)."""
        return self.record.input.meta.accepted_at

    @property
    def actor(self) -> str | None:
        """Who submitted the input, if recorded."""
        return self.record.input.meta.actor
