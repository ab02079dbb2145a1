"""Rebuilding a projection from the first record into fresh tables, swapped in once caught up.

1. Fresh copies of the projection's tables are created (``<table>__rebuild``)
   with their own position row (``<name>@rebuild``), starting at 0.
2. Batches apply the whole log to the copies, exactly as the live runner
   does to the live tables (same handlers, same exactly-once commits). The
   live view is untouched and stays complete meanwhile; a live runner may
   keep following.
3. Once a batch finds the log nearly exhausted, one transaction locks the
   live position, applies the last few records to the copies, drops the
   live tables, renames the copies to the live names, and sets the live
   position to the copies'. Readers see the old view until that commits and
   the new one after; never a half-built one.

A rebuild that is interrupted (a crash, a failing handler) keeps its copies
and position: running it again resumes, unless ``restart`` asks to begin
anew. Records an operator skipped are passed over here too (they are in the
skip audit). A rebuild only runs handlers against its own tables, so it has
no side effect outside the view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, Table
from sqlalchemy.orm import Session

from fasm_es.clock import Clock
from fasm_es.store import EventStore
from projections.batch import Applier, Target, read_batch
from projections.context import TableRef
from projections.database import begin_write
from projections.definition import Projection
from projections.position import advance, forget, lock, read, rebuild_key
from projections.progress import progress_bar
from projections.shadow import create, existing, shadow_tables, swap


@dataclass(frozen=True, slots=True)
class RebuildResult:
    """What a rebuild did: records read into the fresh tables, and the position swapped in."""

    records: int
    position: int
    resumed: bool


class _NotCaughtUp(Exception):
    """The swap found more to do than one batch: go back to batches."""


def _resolver(projection: Projection, shadows: dict[str, Table]) -> Callable[[TableRef], Table]:
    def resolve(ref: TableRef) -> Table:
        return shadows[projection.table(ref).name]

    return resolve


def _prepare(
    engine: Engine,
    projection: Projection,
    shadows: dict[str, Table],
    clock: Clock,
    *,
    restart: bool,
) -> bool:
    """Create the fresh tables and position, or find them from an interrupted rebuild."""
    key = rebuild_key(projection.name)
    with Session(engine) as session, session.begin():
        begin_write(session)
        stored = read(session, key)
        connection = session.connection()
        present = existing(connection, shadows.values())
        if not restart and stored is not None and len(present) == len(shadows):
            return True
        create(connection, shadows.values())
        forget(session, key)
        lock(session, key, clock.now(), first=False)
        return False


def rebuild(
    projection: Projection,
    store: EventStore,
    engine: Engine,
    clock: Clock,
    *,
    batch_size: int,
    skipped: frozenset[int],
    restart: bool = False,
    progress: bool = False,
) -> RebuildResult:
    """Rebuild ``projection`` into fresh tables and swap them in (see the module docstring).

    Raises :class:`~projections.ProjectionFailed` if a record fails; the live
    view is then unchanged and running the rebuild again resumes it.
    """
    shadows = shadow_tables(projection.tables, engine.dialect.name)
    resumed = _prepare(engine, projection, shadows, clock, restart=restart)
    key = rebuild_key(projection.name)
    applier = Applier(
        projection, store, engine, Target(key, _resolver(projection, shadows)), clock, skipped
    )
    start = applier.stored().position
    records = 0
    description = f"rebuilding {projection.name}"
    with progress_bar(progress, description, start, store.last_position) as advance_bar:
        while True:
            result = applier.batch(batch_size)
            records += result.records
            advance_bar(result.position)
            if result.records >= batch_size:
                continue
            try:
                last, position = _swap(
                    projection, store, engine, clock, applier, shadows, batch_size
                )
            except _NotCaughtUp:
                continue
            advance_bar(position)
            return RebuildResult(records + last, position, resumed)


def _swap(
    projection: Projection,
    store: EventStore,
    engine: Engine,
    clock: Clock,
    applier: Applier,
    shadows: dict[str, Table],
    batch_size: int,
) -> tuple[int, int]:
    """Apply the last records and swap the fresh tables in, in one transaction."""
    key = rebuild_key(projection.name)
    with Session(engine) as session, session.begin():
        lock(session, projection.name, clock.now())
        fresh = lock(session, key, clock.now(), first=False)
        raws = read_batch(store, fresh.position, batch_size)
        if len(raws) >= batch_size or (raws and not applier.apply_in(session, raws)):
            # Too much arrived meanwhile, or a record failed: the batch path
            # applies it, or stops at it with the failure recorded.
            raise _NotCaughtUp()
        position = raws[-1].position if raws else fresh.position
        swap(session.connection(), projection.tables, shadows)
        advance(session, projection.name, position, clock.now())
        forget(session, key)
    return len(raws), position
