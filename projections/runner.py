"""Running a projection: catch up from its stored position, then follow the log.

::

    runner = Runner(points, store="sqlite:///shop.db", view="sqlite:///views.db")
    runner.catch_up()              # apply everything in the log so far
    runner.follow(stop)            # then keep applying new records until stop is set

and the operations on it: :meth:`Runner.status`, :meth:`Runner.reset`,
:meth:`Runner.rebuild` and :meth:`Runner.skip`. Several processes may run
the same projection: batches lock the position, so they take turns and no
record is applied twice.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from sqlalchemy import Engine, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from fasm_es.clock import Clock, SystemClock
from fasm_es.errors import DatabaseURLError
from fasm_es.store import EventStore, open_store
from projections.batch import Applier, Target, is_transient, read_batch
from projections.context import TableRef
from projections.database import open_view
from projections.definition import Projection
from projections.errors import SkipRefused
from projections.position import (
    Skip,
    advance,
    ensure_tables,
    lock,
    read,
    rebuild_key,
    record_skip,
    skipped,
)
from projections.progress import progress_bar
from projections.rebuild import RebuildResult, rebuild
from projections.status import Status, status
from projections.wakeup import wakeup_for

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
DEFAULT_POLL_INTERVAL = 1.0


class Runner:
    """Runs one projection from one event store into one view database.

    ``store`` is an open :class:`~fasm_es.EventStore` or a store URL (then the
    runner opens it and closes it in :meth:`close`). ``view`` is the
    read-model database: a SQLAlchemy URL or engine (SQLite or PostgreSQL);
    it defaults to the store's own database. ``batch_size`` records commit
    per transaction; ``poll_interval`` is how often a follower looks for new
    records when nothing wakes it.

    Raises :class:`~fasm_es.errors.DatabaseURLError` for a URL that cannot be used.
    """

    def __init__(
        self,
        projection: Projection,
        store: EventStore | str,
        view: str | URL | Engine | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        clock: Clock | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.projection = projection
        self._owns_store = isinstance(store, str)
        self.store = open_store(store) if isinstance(store, str) else store
        if view is None:
            if self.store.url.startswith("memory:"):
                raise DatabaseURLError(
                    "an in-memory event store has no database for the view: pass view= "
                    "(for example sqlite:///views.db)"
                )
            view = self.store.url
        self.engine = open_view(view)
        self._owns_engine = self.engine is not view
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.clock: Clock = clock or SystemClock()
        self.applier = Applier(
            projection,
            self.store,
            self.engine,
            Target(projection.name, projection.table),
            self.clock,
        )
        self._ready = False

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the view's tables and the bookkeeping tables if missing (idempotent)."""
        if not self._ready:
            ensure_tables(self.engine, self.projection.tables)
            self._ready = True

    def _refresh_skips(self) -> frozenset[int]:
        with Session(self.engine) as session:
            found = frozenset(s.position for s in skipped(session, self.projection.name))
        self.applier.skipped = found
        return found

    # -- running -------------------------------------------------------------------------

    def catch_up(self, *, upto: int | None = None, progress: bool = False) -> int:
        """Apply every record after the stored position (up to ``upto``); return how many.

        Commits every ``batch_size`` records together with the position.
        Raises :class:`~projections.ProjectionFailed` naming the record that
        failed; everything before it stays applied.
        """
        self.setup()
        self._refresh_skips()
        total = 0
        start = self.applier.stored().position
        description = f"catching up {self.projection.name}"
        with progress_bar(progress, description, start, self.store.last_position) as advance_bar:
            while True:
                result = self.applier.batch(self.batch_size, upto=upto)
                total += result.records
                advance_bar(result.position)
                if result.records < self.batch_size:
                    return total

    def follow(self, stop: threading.Event | None = None, *, retry_after: float = 1.0) -> None:
        """Catch up, then apply new records as they arrive, until ``stop`` is set.

        Wakes on PostgreSQL's NOTIFY from the event store, else polls every
        ``poll_interval`` seconds. A database that is unavailable or busy is
        waited for (retried every ``retry_after`` seconds); a failing record
        stops the follower with :class:`~projections.ProjectionFailed`.
        """
        stop = stop or threading.Event()
        wakeup = wakeup_for(self.store)
        try:
            while not stop.is_set():
                try:
                    self.catch_up()
                except Exception as exc:
                    # Connection trouble is waited out; anything else is a bug to report.
                    if not is_transient(exc) and not isinstance(
                        exc, OperationalError | InterfaceError
                    ):
                        raise
                    log.warning("projection %s: %s; retrying", self.projection.name, exc)
                    stop.wait(retry_after)
                    continue
                wakeup.wait(self.poll_interval, stop)
        finally:
            wakeup.close()

    # -- operations ----------------------------------------------------------------------

    def status(self) -> Status:
        """Position, head of the log, lag in records and seconds, and any failure."""
        self.setup()
        with Session(self.engine) as session:
            stored = read(session, self.projection.name)
            rebuilding = read(session, rebuild_key(self.projection.name))
            count = len(skipped(session, self.projection.name))
        return status(
            self.projection.name,
            stored if stored is not None else self.applier.stored(),
            self.store,
            self.clock,
            rebuilding=rebuilding,
            skipped=count,
        )

    def reset(self) -> None:
        """Empty the view and set the position to 0, in one transaction.

        The tables are dropped and created from their declarations. Readers
        see an empty view that fills as the projection catches up again; use
        :meth:`rebuild` to keep the old view visible meanwhile.
        """
        self.setup()
        with Session(self.engine) as session, session.begin():
            lock(session, self.projection.name, self.clock.now())
            connection = session.connection()
            for table in self.projection.tables:
                table.drop(connection, checkfirst=True)
                table.create(connection)
            advance(session, self.projection.name, 0, self.clock.now())

    def rebuild(self, *, restart: bool = False, progress: bool = False) -> RebuildResult:
        """Rebuild the view from the first record into fresh tables, swapped in once caught up.

        Readers see the old complete view until the swap. An interrupted
        rebuild resumes where it stopped unless ``restart``. ``progress``
        shows a progress bar. Raises :class:`~projections.ProjectionFailed`
        if a record fails (the live view is left as it was).
        """
        self.setup()
        return rebuild(
            self.projection,
            self.store,
            self.engine,
            self.clock,
            batch_size=self.batch_size,
            skipped=self._refresh_skips(),
            restart=restart,
            progress=progress,
        )

    def skip(self, position: int, reason: str, *, by: str | None = None) -> Skip:
        """Skip the record at ``position`` deliberately, with an audit line.

        Only the next record of the projection (or of its rebuild in
        progress) may be skipped, typically the one it stopped at. The skip
        is written to ``fasm_projection_skips`` (projection, position,
        stream, version, type, ``reason``, ``by``, when) in the transaction
        that moves the position past it, and every later rebuild passes over
        it too. Raises :class:`~projections.SkipRefused` for any other record
        or an empty reason.
        """
        if not reason.strip():
            raise SkipRefused("a skip needs a reason: it is written to the skip audit")
        self.setup()
        name = self.projection.name
        with Session(self.engine) as session, session.begin():
            live = lock(session, name, self.clock.now())
            fresh = read(session, rebuild_key(name))
            live_next = read_batch(self.store, live.position, 1)
            fresh_next = read_batch(self.store, fresh.position, 1) if fresh is not None else []
            candidates = {r.position: r for r in (*live_next, *fresh_next)}
            raw = candidates.get(position)
            if any(s.position == position for s in skipped(session, name)):
                raise SkipRefused(f"projection {name!r}: position {position} is already skipped")
            if raw is None:
                nexts = ", ".join(str(p) for p in sorted(candidates)) or "none (caught up)"
                raise SkipRefused(
                    f"projection {name!r} cannot skip position {position}: only the next record "
                    f"to apply may be skipped (next: {nexts})"
                )
            done = Skip(
                name, raw.position, raw.stream, raw.version, raw.tag, reason, by, self.clock.now()
            )
            record_skip(session, done)
            if live_next and live_next[0].position == position:
                advance(session, name, position, self.clock.now())
            # A rebuild passes over every audited skip, so its position needs no move.
        log.warning(
            "projection %s: record at position %d (stream %r version %d) skipped by %s: %s",
            name,
            raw.position,
            raw.stream,
            raw.version,
            by or "an operator",
            reason,
        )
        return done

    def skips(self) -> list[Skip]:
        """Every record skipped in this projection, oldest first."""
        self.setup()
        with Session(self.engine) as session:
            return skipped(session, self.projection.name)

    def rows(self, table: TableRef) -> list[tuple[object, ...]]:
        """Every row of one of the view's tables, ordered by its primary key (for checks)."""
        declared = self.projection.table(table)
        order = list(declared.primary_key.columns) or list(declared.columns)
        with self.engine.connect() as connection:
            return [tuple(r) for r in connection.execute(select(declared).order_by(*order))]

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connections the runner opened (its view engine, and its store)."""
        if self._owns_engine:
            self.engine.dispose()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
