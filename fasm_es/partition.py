"""Streams partitioned between engine processes sharing one PostgreSQL store.

::

    lease = PartitionLease("postgresql://app@db/payments", name="node-a")
    async with Engine(Payments(), "postgresql://app@db/payments", partitions=lease) as engine:
        ...

Every stream belongs to one of ``partitions`` fixed partitions, chosen by a
stable hash of its id (BLAKE2b, the same in every process and release). An
engine process serves a partition while it holds that partition's
PostgreSQL **session-level advisory lock**, on a connection of its own; the
database is the only arbiter, no consensus is built here:

- **Sharing.** Every process also holds one shared "member" lock, so each
  can count the live members. Each poll (``poll_interval`` seconds) a
  process aims at ``ceil(partitions / members)`` partitions: it takes free
  ones (``pg_try_advisory_lock``) when it has fewer, and gives back the ones
  over its share when it has more, so a newcomer gets its share within a
  few polls.
- **Failover.** When a process dies its session ends and PostgreSQL
  releases its locks; the others see fewer members and free partitions at
  their next poll, take them, and restore them: cached states and
  idempotency keys are dropped and every tracked action outstanding on the
  partition's streams is dispatched again (``Engine.adopt``), under the same
  idempotency keys.
- **Refusal.** ``Engine.submit`` for a stream outside the held partitions
  raises :class:`~fasm_es.errors.StreamNotOwned`; :meth:`PartitionLease.owner_of`
  names the process that serves it (its ``application_name``).
- **Losing the connection.** If the lock connection breaks (a database
  restart), the locks may be gone: the process stops serving every
  partition at once, reconnects at the next poll and takes its share again.

The lease decides who *serves* a stream; it is not what keeps the log
right. Between a holder's death (or a give-back) and the next owner's first
write, two processes may briefly write one stream; the store's optimistic
concurrency still lets only one append each version, so a handover costs a
retried conflict at worst, never a lost or doubled input. Handler results
are committed by the process that ran the handler even after its partition
moved: the first completion of an id wins, later ones are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import socket
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg

from fasm_es.backends.postgres import postgres_params
from fasm_es.errors import DatabaseURLError, StreamNotOwned
from fasm_es.store import redact

if TYPE_CHECKING:
    from fasm_es.engine import Engine

log = logging.getLogger("fasm_es.partition")

DEFAULT_PARTITIONS = 64
LOCK_SPACE = 0x46534D50
"""First key of the partition locks (``pg_advisory_lock(LOCK_SPACE, partition)``)."""
APPLICATION_PREFIX = "fasm-es:"

_DATABASE = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
_MEMBERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    f"AND {_DATABASE} AND classid::bigint = %s AND objid::bigint = 0 AND objsubid = 2"
)
_HELD = (
    "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
    f"AND {_DATABASE} AND classid::bigint = %s AND objsubid = 2"
)
_OWNER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    f"WHERE l.locktype = 'advisory' AND l.granted AND l.{_DATABASE} "
    "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 2"
)


def partition_of(stream: str, partitions: int) -> int:
    """The partition of ``stream`` among ``partitions``: stable across processes and runs."""
    digest = hashlib.blake2b(stream.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


class PartitionLease:
    """This process's share of the partitions, held as PostgreSQL advisory locks.

    ``url`` names the PostgreSQL database the engines share (the store's).
    ``name`` identifies this process to the others (default: host and pid);
    it is the lock connection's ``application_name``. Every process sharing a
    store must use the same ``partitions`` and ``lock_space``. Pass the lease
    to :class:`~fasm_es.engine.Engine` as ``partitions=``; the engine attaches
    it at start and detaches it at stop.

    Raises :class:`~fasm_es.errors.DatabaseURLError` for a URL that is not a
    PostgreSQL one: advisory locks are PostgreSQL's.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        partitions: int = DEFAULT_PARTITIONS,
        poll_interval: float = 1.0,
        lock_space: int = LOCK_SPACE,
    ) -> None:
        if not 1 <= partitions < 2**31:
            raise ValueError(f"partitions must be from 1 to 2**31 - 1, got {partitions}")
        if not 0 <= lock_space < 2**31 - 1:
            raise ValueError(f"lock_space must be from 0 to 2**31 - 2, got {lock_space}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        if url.split(":", 1)[0].lower() not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise DatabaseURLError(
                f"partitioning needs the PostgreSQL store the engines share, not "
                f"{redact(url)!r}: advisory locks are PostgreSQL's"
            )
        self.url = url
        self.params = postgres_params(url)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.partitions = partitions
        self.poll_interval = poll_interval
        self.lock_space = lock_space
        self.member_space = lock_space + 1
        self.taken_over = 0
        """Partitions taken since start (the first share included)."""
        self._owned: frozenset[int] = frozenset()
        self._conn: psycopg.Connection[Any] | None = None
        self._engine: Engine[Any, Any, Any, Any, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()  # one thread at a time on the lock connection
        # Where this process starts looking for free partitions: spread, so
        # processes joining together do not all race for partition 0.
        self._offset = partition_of(self.name, partitions)

    # -- what the engine asks -----------------------------------------------------------

    def owns(self, stream: str) -> bool:
        """Whether this process serves ``stream`` now."""
        return partition_of(stream, self.partitions) in self._owned

    def check(self, stream: str) -> None:
        """Raise :class:`~fasm_es.errors.StreamNotOwned` unless this process serves ``stream``."""
        partition = partition_of(stream, self.partitions)
        if partition not in self._owned:
            raise StreamNotOwned(stream, partition, self.name)

    def owned(self) -> frozenset[int]:
        """The partitions held now."""
        return self._owned

    async def attach(self, engine: Engine[Any, Any, Any, Any, Any]) -> None:
        """Join, take a first share (the engine's start restores it), then keep polling."""
        if self._task is not None:
            raise RuntimeError(f"partition lease {self.name!r} is already attached")
        self._engine = engine
        try:
            members, held = await asyncio.to_thread(self._survey)
            taken = await asyncio.to_thread(self._take, self._wanted(members, held))
        except psycopg.Error as exc:
            await asyncio.to_thread(self._disconnect)
            raise DatabaseURLError(
                f"partition lease {self.name!r}: cannot take partitions on "
                f"{redact(self.url)!r}: {exc}"
            ) from exc
        self._owned = frozenset(taken)
        self.taken_over += len(taken)
        self._task = asyncio.get_running_loop().create_task(
            self._poll(), name=f"fasm-es partitions {self.name}"
        )

    async def detach(self) -> None:
        """Stop polling and give every partition back (closing the lock connection)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._owned = frozenset()
        await asyncio.to_thread(self._disconnect)
        self._engine = None

    # -- balancing ------------------------------------------------------------------------

    async def rebalance(self) -> tuple[frozenset[int], frozenset[int]]:
        """One poll: give back what is over this process's share, take free partitions up to it.

        Returns the partitions (taken, given back). Partitions taken are
        adopted by the engine: their outstanding tracked actions are
        dispatched again. Raises ``psycopg.Error`` if the database cannot be
        reached; every partition is then given up until it can.
        """
        try:
            members, held = await asyncio.to_thread(self._survey)
        except psycopg.Error:
            await self._lost()
            raise
        share = math.ceil(self.partitions / max(members, 1))
        released: frozenset[int] = frozenset()
        if len(self._owned) > share:
            # Stop serving first, then unlock: never serve a partition not held.
            released = frozenset(sorted(self._owned, key=self._preference)[share:])
            self._owned -= released
            try:
                await asyncio.to_thread(self._give_back, released)
            except psycopg.Error:
                await self._lost()
                raise
        taken: frozenset[int] = frozenset()
        if len(self._owned) < share:
            wanted = self._wanted(members, held)
            try:
                taken = frozenset(await asyncio.to_thread(self._take, wanted))
            except psycopg.Error:
                await self._lost()
                raise
            self._owned |= taken
            self.taken_over += len(taken)
        if taken and self._engine is not None:
            log.info("partition lease %s: took partitions %s", self.name, sorted(taken))
            await self._engine.adopt(lambda s: partition_of(s, self.partitions) in taken)
        if released:
            log.info("partition lease %s: gave back partitions %s", self.name, sorted(released))
        return taken, released

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.rebalance()
            except psycopg.Error as exc:
                log.warning("partition lease %s: %s; retrying at the next poll", self.name, exc)
            except Exception:
                log.exception("partition lease %s: poll failed", self.name)

    def _preference(self, partition: int) -> int:
        return (partition - self._offset) % self.partitions

    def _wanted(self, members: int, held: set[int]) -> list[int]:
        """Free partitions to try, in this process's order of preference, up to its share."""
        share = math.ceil(self.partitions / max(members, 1))
        free = [p for p in range(self.partitions) if p not in held and p not in self._owned]
        free.sort(key=self._preference)
        return free[: max(0, share - len(self._owned))]

    async def _lost(self) -> None:
        if self._owned:
            log.warning(
                "partition lease %s: lost the lock connection; serving no partition until "
                "it is back",
                self.name,
            )
        self._owned = frozenset()
        await asyncio.to_thread(self._disconnect)

    # -- the lock connection (blocking; run in a thread) ----------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        """The lock connection; connects (and joins) if there is none. Hold ``_lock``."""
        conn = self._conn
        if conn is not None:
            if conn.closed or conn.broken:
                # Its session, and every lock it held, may be gone: the caller must
                # stop serving before a new connection takes partitions again.
                self._close()
                raise psycopg.OperationalError("the partition lock connection was lost")
            return conn
        p = self.params
        conn = psycopg.connect(
            dbname=p.dbname,
            host=p.host,
            port=p.port,
            user=p.user,
            password=p.password,
            connect_timeout=max(2, round(p.connect_timeout)),
            application_name=(APPLICATION_PREFIX + self.name)[:63],
            autocommit=True,
            # Notice a peer that vanished without closing the connection.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
        self._conn = conn
        # Every member holds this one lock in shared mode: pg_locks counts the members.
        conn.execute("SELECT pg_advisory_lock_shared(%s::int4, 0)", (self.member_space,))
        return conn

    def _disconnect(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()  # ends the session: PostgreSQL releases every lock it held

    def _survey(self) -> tuple[int, set[int]]:
        """(live members, partitions held by anyone), as PostgreSQL sees them now."""
        with self._lock:
            conn = self._connection()
            members = conn.execute(_MEMBERS, (self.member_space,)).fetchone()
            held = conn.execute(_HELD, (self.lock_space,)).fetchall()
        return int(members[0]) if members else 1, {int(row[0]) for row in held}

    def _take(self, partitions: Iterable[int]) -> set[int]:
        taken = set()
        with self._lock:
            conn = self._connection()
            for partition in partitions:
                row = conn.execute(
                    "SELECT pg_try_advisory_lock(%s::int4, %s::int4)",
                    (self.lock_space, partition),
                ).fetchone()
                if row is not None and row[0]:
                    taken.add(partition)
        return taken

    def _give_back(self, partitions: Iterable[int]) -> None:
        with self._lock:
            conn = self._connection()
            for partition in partitions:
                conn.execute(
                    "SELECT pg_advisory_unlock(%s::int4, %s::int4)", (self.lock_space, partition)
                )

    # -- for operators and routing ------------------------------------------------------

    def members(self) -> int:
        """How many engine processes hold a lease on this database now (blocking)."""
        return self._survey()[0]

    def owner_of(self, stream: str) -> str | None:
        """The name of the process serving ``stream`` now, or None if no one holds it (blocking)."""
        partition = partition_of(stream, self.partitions)
        if partition in self._owned:
            return self.name
        try:
            with self._lock:
                row = self._connection().execute(_OWNER, (self.lock_space, partition)).fetchone()
        except psycopg.Error:
            return None
        if row is None or not str(row[0]).startswith(APPLICATION_PREFIX):
            return None
        return str(row[0])[len(APPLICATION_PREFIX) :]

    def __repr__(self) -> str:
        held = f"{len(self._owned)} of {self.partitions} partitions"
        return f"PartitionLease({self.name!r}, {held})"
