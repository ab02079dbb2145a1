"""One batch: records read after the stored position, handled, and committed with the new position.

The whole of a batch is one transaction on the view database: the position
row is locked first, the records after it are read from the log, decoded and
handed to the handlers, the buffered rows are written, and the new position
is stored. A crash anywhere before the commit loses the batch and its
position together; the next run applies the same records again. So no record
is skipped and none is counted twice (DESIGN guarantee 7).

When a record fails (it cannot be decoded, or a handler raises) the batch is
rolled back, the records before the failing one are applied and committed
with the failure noted beside the position, and :class:`ProjectionFailed`
names the record. A failure that surfaces only when buffered rows are
written (a constraint, say) is pinned on its record by running the batch
again one record at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy import Engine, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fasm_es.actions import Tracked
from fasm_es.clock import Clock
from fasm_es.errors import RecordDecodeError, StoreUnavailable, UnknownRecordType
from fasm_es.inputs import Normal
from fasm_es.record import RawRecord, Record
from fasm_es.store import EventStore
from projections.context import Context, TableRef, cached
from projections.definition import Projection
from projections.errors import ProjectionFailed
from projections.position import Failure, Position, advance, lock, read, record_failure
from projections.writes import Statements, Writes


@dataclass(frozen=True, slots=True)
class Target:
    """Where a batch writes: a position row and the tables the declared ones stand for."""

    key: str
    resolve: Callable[[TableRef], Table]


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch did: records read (applied or passed over) and the position stored."""

    records: int
    position: int


class _RecordFailed(Exception):
    def __init__(self, index: int, raw: RawRecord, error: str) -> None:
        super().__init__(error)
        self.index = index
        self.raw = raw
        self.error = error


class _Unattributed(Exception):
    """A failure at the end of the batch that no single record can be blamed for yet."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is the database being unavailable or busy, not a bad record."""
    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        text = str(exc.orig).lower()
        return "database is locked" in text or "database is busy" in text
    return False


def _describe(exc: BaseException, where: str) -> str:
    return f"{where} raised {type(exc).__name__}: {exc}"


def read_batch(
    store: EventStore, after: int, size: int, upto: int | None = None
) -> list[RawRecord]:
    """Up to ``size`` records after position ``after`` (and at most ``upto``)."""
    return list(islice(store.read_log(after=after, upto=upto, page_size=size), size))


class Applier:
    """Applies batches of one projection to one target."""

    def __init__(
        self,
        projection: Projection,
        store: EventStore,
        engine: Engine,
        target: Target,
        clock: Clock,
        skipped: frozenset[int] = frozenset(),
    ) -> None:
        self.projection = projection
        self.skipped = skipped
        """Positions an operator skipped (audited): passed over by every target."""
        self.store = store
        self.engine = engine
        self.target = Target(target.key, cached(target.resolve))
        self.clock = clock
        self.statements = Statements(engine.dialect)
        self.passed_over_unknown = 0

    def batch(self, size: int, *, upto: int | None = None) -> BatchResult:
        """Apply the next batch of at most ``size`` records; raise ProjectionFailed on a bad one."""
        raws: list[RawRecord] | None = None
        expected = 0
        limit: int | None = None
        failure: Failure | None = None
        one_by_one = False
        while True:
            try:
                with Session(self.engine) as session, session.begin():
                    stored = lock(session, self.target.key, self.clock.now())
                    if raws is None:
                        raws = read_batch(self.store, stored.position, size, upto)
                        expected = stored.position
                    elif stored.position != expected:
                        # Another runner moved the position between our two tries: start afresh.
                        raws, limit, failure, one_by_one = None, None, None, False
                        continue
                    todo = raws if limit is None else raws[:limit]
                    self._apply(session, todo, one_by_one=one_by_one)
                    if todo:
                        advance(session, self.target.key, todo[-1].position, self.clock.now())
                    if failure is not None:
                        record_failure(session, self.target.key, failure)
                    position = todo[-1].position if todo else stored.position
            except _RecordFailed as failed:
                limit = failed.index
                failure = Failure(
                    failed.raw.position,
                    failed.raw.stream,
                    failed.raw.version,
                    failed.raw.tag,
                    failed.error,
                    self.clock.now(),
                )
                continue
            except _Unattributed:
                one_by_one = True
                continue
            if failure is not None:
                raise ProjectionFailed(
                    self.projection.name,
                    failure.stream,
                    failure.version,
                    failure.position,
                    failure.tag,
                    failure.error,
                )
            return BatchResult(len(todo), position)

    def apply_in(self, session: Session, raws: Sequence[RawRecord]) -> bool:
        """Apply ``raws`` in the caller's transaction; False if one failed (roll it back then)."""
        try:
            self._apply(session, raws, one_by_one=False)
        except (_RecordFailed, _Unattributed):
            return False
        return True

    def stored(self) -> Position:
        """The target's stored position (locking nothing)."""
        with Session(self.engine) as session:
            found = read(session, self.target.key)
        return found if found is not None else Position(0, None, None)

    def _apply(self, session: Session, raws: Sequence[RawRecord], *, one_by_one: bool) -> None:
        # The hot loop of catch-up: lookups are hoisted and calls kept few on purpose.
        projection = self.projection
        writes = Writes(self.statements)
        ctx = Context(session, self.target.resolve, writes)
        wants = None if projection.wants_everything else projection.wants
        skipped = self.skipped
        input_handlers = projection.input_handlers if projection.handles_inputs else None
        result_handlers = projection.result_handlers if projection.handles_results else None
        action_handlers = projection.action_handlers if projection.handles_actions else None
        record_handlers = projection.record_handlers
        for index, raw in enumerate(raws):
            if (wants is not None and not wants(raw.stream, raw.tag)) or (
                skipped and raw.position in skipped
            ):
                continue
            record = self._decode(index, raw)
            if record is None:
                continue
            ctx.record = record
            ctx.stream, ctx.version, ctx.position = raw.stream, raw.version, raw.position
            # The handler running, named only if it fails.
            current: Callable[..., Any] | None = None
            try:
                inp = record.input
                if isinstance(inp, Normal):
                    if input_handlers is not None:
                        for current in input_handlers(inp.value):
                            current(ctx, inp.value)
                elif result_handlers is not None:
                    for current in result_handlers(inp.result):
                        current(ctx, inp.result)
                if action_handlers is not None:
                    for action in record.actions:
                        handlers = action_handlers(action.action)
                        if handlers:
                            ctx.action_id = action.id if isinstance(action, Tracked) else None
                            for current in handlers:
                                current(ctx, action.action)
                    ctx.action_id = None
                for current in record_handlers:
                    current(ctx, record)
                if one_by_one:
                    current = None
                    self._finish(ctx, session, writes)
            except Exception as exc:
                if is_transient(exc):
                    raise
                where = (
                    "a before_commit hook or writing the buffered rows"
                    if current is None
                    else projection.describe_handler(current)
                )
                raise _RecordFailed(index, raw, _describe(exc, where)) from exc
        if not one_by_one:
            try:
                self._finish(ctx, session, writes)
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise _Unattributed() from exc

    def _decode(self, index: int, raw: RawRecord) -> Record[Any, Any, Any, Any] | None:
        """The decoded record; None to pass over it (an unknown type, if told to)."""
        try:
            return self.projection.codec.decode(raw)
        except UnknownRecordType as exc:
            if self.projection.ignore_unknown_types:
                self.passed_over_unknown += 1
                return None
            raise _RecordFailed(index, raw, f"cannot be decoded: {exc}") from exc
        except RecordDecodeError as exc:
            raise _RecordFailed(index, raw, f"cannot be decoded: {exc}") from exc

    def _finish(self, ctx: Context, session: Session, writes: Writes) -> None:
        for hook in self.projection.commit_hooks:
            hook(ctx)
        writes.flush(session)
        ctx.scratch.clear()
