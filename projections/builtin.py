"""Built-in projections: the latest state of every stream, and an audit trail.

:class:`LatestState` folds the machine's STF over each stream, exactly as
replay does (:func:`fasm_es.fold.apply_record`), and keeps one row per stream:
its id, version, position, when its last input was accepted, and its state
as JSON (encoded through the machine's declared state type). Memory stays
bounded: recently used stream states are cached (``cache_size``), any other
is read back from the table when its next record arrives.

:class:`AuditTrail` keeps one row per record: who (actor), when (accepted
at), which stream and version, which input (type and JSON value, or the
completed action id and result), which actions it emitted, and its outcome.
Only accepted inputs are ever recorded (a rejection appends nothing), so
every row's ``accepted`` is true; the column states it for auditors. Query
it by actor, stream and time range with :meth:`AuditTrail.query`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.orm import Session

from fasm_es.actions import Tracked
from fasm_es.fold import StreamState, apply_record, initial
from fasm_es.inputs import Completed, Normal
from fasm_es.machine import StateMachine
from fasm_es.record import Record
from projections.columns import UTCDateTime
from projections.context import Context
from projections.definition import Projection, check_identifier

S = TypeVar("S")

DEFAULT_CACHE_SIZE = 10_000


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- latest state per stream ------------------------------------------------------------


class LatestState(Projection, Generic[S]):
    """One row per stream: its version and its state as JSON, folded by the machine's STF.

    The table (default ``stream_state``) has columns ``stream`` (primary
    key), ``version``, ``position``, ``accepted_at`` and ``state``. Read a
    stream's state back, decoded, with :meth:`state`.
    """

    def __init__(
        self,
        machine: StateMachine[S, Any, Any, Any, Any],
        *,
        name: str = "latest_state",
        table: str = "stream_state",
        stream_prefix: str | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.state_table = Table(
            check_identifier("table", table),
            MetaData(),
            Column("stream", Text, primary_key=True),
            Column("version", BigInteger, nullable=False),
            Column("position", BigInteger, nullable=False),
            Column("accepted_at", UTCDateTime, nullable=False),
            Column("state", Text, nullable=False),
        )
        super().__init__(name, machine, [self.state_table], stream_prefix=stream_prefix)
        self.cache_size = cache_size
        self._adapter: TypeAdapter[S] = TypeAdapter(machine.types.state)
        # Keyed by (table written, stream): a rebuild's states never mix with the live ones.
        self._cache: OrderedDict[tuple[str, str], StreamState[S, Any]] = OrderedDict()
        self._fold_actions = machine.new_actions()
        self.on_record(self._fold)
        self.before_commit(self._write)

    def _fold(self, ctx: Context, record: Record[Any, Any, Any, Any]) -> None:
        table = ctx.table(self.state_table)
        key = (table.name, record.stream)
        dirty: dict[tuple[str, str], tuple[StreamState[S, Any], Record[Any, Any, Any, Any]]]
        dirty = ctx.scratch.setdefault("latest_state", {})
        current = self._cache.get(key)
        # A cached state is used only if it is exactly one version behind: after a
        # rolled-back batch, a reset or a swap, the table is the truth.
        if current is None or current.version != record.version - 1:
            current = self._load(ctx, table, record.stream)
        try:
            apply_record(self.machine, current, record, self._fold_actions)
        except BaseException:
            self._cache.pop(key, None)  # the STF may have changed it before failing
            raise
        self._cache[key] = current
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        dirty[key] = (current, record)

    def _load(self, ctx: Context, table: Table, stream: str) -> StreamState[S, Any]:
        row = ctx.session.execute(
            select(table.c.version, table.c.state).where(table.c.stream == stream)
        ).first()
        if row is None:
            return initial(self.machine, stream)
        return StreamState(stream, self._adapter.validate_json(row.state), row.version)

    def _write(self, ctx: Context) -> None:
        dirty = ctx.scratch.get("latest_state", {})
        for (_, stream), (current, record) in dirty.items():
            ctx.upsert(
                self.state_table,
                {
                    "stream": stream,
                    "version": current.version,
                    "position": record.position,
                    "accepted_at": record.input.meta.accepted_at,
                    "state": self._adapter.dump_json(current.state).decode(),
                },
                key=["stream"],
            )

    def state(self, connection: Connection | Session, stream: str) -> S | None:
        """``stream``'s state as of the view's position (None if it has no record yet)."""
        row = connection.execute(
            select(self.state_table.c.state).where(self.state_table.c.stream == stream)
        ).first()
        return None if row is None else self._adapter.validate_json(row.state)


# -- the audit trail --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit trail: one accepted input and what it did."""

    position: int
    stream: str
    version: int
    accepted_at: datetime
    actor: str | None
    input_type: str
    input: Any
    completes: Any
    actions: list[dict[str, Any]]
    accepted: bool
    correlation_id: str | None
    causation_id: str | None


class AuditTrail(Projection):
    """One row per record: who, when, which input, which actions, and the outcome.

    The table (default ``audit_trail``) is keyed by position and indexed by
    actor, stream and acceptance time. ``input`` holds the input's JSON (for
    a completion, the result's), ``completes`` the completed tracked action's
    id, and ``actions`` a JSON list of ``{"id", "type", "action"}`` (no
    ``id`` for untracked actions).
    """

    def __init__(
        self,
        machine: StateMachine[Any, Any, Any, Any, Any],
        *,
        name: str = "audit_trail",
        table: str = "audit_trail",
        stream_prefix: str | None = None,
    ) -> None:
        check_identifier("table", table)
        self.audit_table = Table(
            table,
            MetaData(),
            Column("position", BigInteger, primary_key=True, autoincrement=False),
            Column("stream", Text, nullable=False),
            Column("version", BigInteger, nullable=False),
            Column("accepted_at", UTCDateTime, nullable=False),
            Column("actor", String(255)),
            Column("input_type", String(255), nullable=False),
            Column("input", Text, nullable=False),
            Column("completes", Text),
            Column("actions", Text, nullable=False),
            Column("accepted", Boolean, nullable=False),
            Column("correlation_id", String(255)),
            Column("causation_id", String(255)),
            Index(f"ix_{table}_actor", "actor", "accepted_at"),
            Index(f"ix_{table}_stream", "stream", "version"),
            Index(f"ix_{table}_accepted_at", "accepted_at"),
        )
        super().__init__(name, machine, [self.audit_table], stream_prefix=stream_prefix)
        types = machine.types
        self._input: TypeAdapter[Any] = TypeAdapter(types.input)
        self._result: TypeAdapter[Any] = TypeAdapter(types.tracked_result)
        self._tracked: TypeAdapter[Any] = TypeAdapter(types.tracked_action)
        self._untracked: TypeAdapter[Any] = TypeAdapter(types.untracked_action)
        self.on_record(self._append)

    def _append(self, ctx: Context, record: Record[Any, Any, Any, Any]) -> None:
        inp = record.input
        meta = inp.meta
        completes: str | None = None
        if isinstance(inp, Normal):
            value = self._input.dump_python(inp.value, mode="json")
        else:
            assert isinstance(inp, Completed)
            value = self._result.dump_python(inp.result, mode="json")
            completes = _json(inp.id)
        actions = []
        for action in record.actions:
            if isinstance(action, Tracked):
                dumped = self._tracked.dump_python(action.action, mode="json")
                actions.append(
                    {"id": action.id, "type": type(action.action).__name__, "action": dumped}
                )
            else:
                dumped = self._untracked.dump_python(action.action, mode="json")
                actions.append({"type": type(action.action).__name__, "action": dumped})
        ctx.insert(
            self.audit_table,
            {
                "position": record.position,
                "stream": record.stream,
                "version": record.version,
                "accepted_at": meta.accepted_at,
                "actor": meta.actor,
                "input_type": record.tag.split("@", 1)[0],
                "input": _json(value),
                "completes": completes,
                "actions": _json(actions),
                "accepted": True,
                "correlation_id": meta.correlation_id,
                "causation_id": meta.causation_id,
            },
        )

    def query(
        self,
        connection: Connection | Session,
        *,
        actor: str | None = None,
        stream: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Audit rows in log order, filtered by actor, stream and ``since <= accepted_at < until``.

        ``since`` and ``until`` must be timezone-aware.
        """
        t = self.audit_table
        stmt = select(t).order_by(t.c.position)
        if actor is not None:
            stmt = stmt.where(t.c.actor == actor)
        if stream is not None:
            stmt = stmt.where(t.c.stream == stream)
        if since is not None:
            stmt = stmt.where(t.c.accepted_at >= since)
        if until is not None:
            stmt = stmt.where(t.c.accepted_at < until)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [
            AuditEntry(
                position=r.position,
                stream=r.stream,
                version=r.version,
                accepted_at=r.accepted_at,
                actor=r.actor,
                input_type=r.input_type,
                input=json.loads(r.input),
                completes=None if r.completes is None else json.loads(r.completes),
                actions=json.loads(r.actions),
                accepted=r.accepted,
                correlation_id=r.correlation_id,
                causation_id=r.causation_id,
            )
            for r in connection.execute(stmt)
        ]
