"""The runtime engine: a machine's streams served durably, with actions carried out.

::

    async with Engine(Payments(), "sqlite:///payments.db", handlers={Charge: charge}) as engine:
        record = await engine.submit("acct-1", Process(amount=500, user="ann"))

An :class:`Engine` owns, for one machine on one event store:

- a bounded cache of stream states (streams load from their newest snapshot
  plus the records after it);
- **group commit** (:mod:`fasm_es.group_commit`): concurrent submits, on any
  streams, share one transaction; each caller is answered once its record is
  committed; optimistic-concurrency conflicts are retried a bounded number of
  times on the reloaded stream;
- **dispatch** (:mod:`fasm_es.dispatch`): after commit, each tracked action
  goes to the handler registered for its type, with its idempotency key
  (stream, action id); the result comes back as a ``Completed`` input;
  failures retry with backoff and jitter, then the action is *stuck* (listed
  by :meth:`Engine.stuck`, re-dispatched by :meth:`Engine.retry`), never dropped;
  the stuck list is also saved, and retry requests read, for operators in
  other processes (:mod:`fasm_es.stuck`, ``fasm-es stuck`` and ``fasm-es retry``);
- **completions are idempotent**: a completion for an id that is not
  outstanding (a duplicate, a late one, an unknown one) never reaches the
  STF; :meth:`Engine.complete` raises
  :class:`~fasm_es.errors.CompletionNotOutstanding`, a handler's result is
  dropped quietly, and both are counted in :meth:`Engine.stats` and listed by
  :meth:`Engine.ignored_completions`;
- **untracked actions** (:mod:`fasm_es.subscribers`) go to subscribers after
  commit, at most once, or at least once from the log for a subscriber that
  asks;
- **time**: an injectable clock stamps every input, and durable timers
  (:mod:`fasm_es.timers`) complete at the time they name, across restarts;
- **partitions** (optional, :mod:`fasm_es.partition`): engine processes
  sharing one PostgreSQL store split the streams between them; a submit for
  a stream served elsewhere raises :class:`~fasm_es.errors.StreamNotOwned`;
- **restore at start**: the streams with tracked actions outstanding are found
  from a checkpointed index (:mod:`fasm_es.outstanding`) plus the records
  after it, their states are loaded, and what the machine's ``restore`` (or
  the default, the outstanding actions themselves) emits is dispatched again,
  with the same idempotency keys;
- **unknown outcomes**: a commit that fails in a way that may have stored it
  (the database went away during commit) answers its callers with the error
  and leaves its streams in doubt; the engine rereads them as soon as the
  store answers and dispatches what they have outstanding, so a record
  stored that way has its tracked actions carried out. (Its untracked
  actions reach only the at-least-once subscribers, which read the log.)

Stream ids starting with ``$fasm-es/`` are reserved for the engine.
:class:`~fasm_es.sync.SyncEngine` offers the same with blocking calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from fasm_es.actions import Tracked
from fasm_es.clock import Clock, SystemClock
from fasm_es.dispatch import (
    Dispatcher,
    DispatchStats,
    Handler,
    IdempotencyKey,
    RetryPolicy,
    StuckAction,
)
from fasm_es.errors import CompletionNotOutstanding
from fasm_es.group_commit import CommitStats, GroupCommit
from fasm_es.inputs import ActionId, Completed, Normal
from fasm_es.machine import StateMachine
from fasm_es.outstanding import (
    RESERVED_PREFIX,
    Checkpoints,
    OutstandingTracker,
    StoreCheckpoints,
)
from fasm_es.record import Record
from fasm_es.restore import RestorePlan, plan_restore
from fasm_es.store import EventStore, open_store
from fasm_es.streams import DEFAULT_MAX_RECORD_BYTES, Streams, check_stream_id
from fasm_es.stuck import StuckReporter
from fasm_es.subscribers import FollowerStatus, LogFollower, Subscriber, Subscriptions
from fasm_es.timers import Timer, TimerFired, timer_handler

log = logging.getLogger("fasm_es.engine")


class StreamOwnership(Protocol):
    """Which streams this engine serves, when several engine processes share one store.

    :class:`~fasm_es.partition.PartitionLease` is the implementation. The
    engine calls ``attach`` at start (before restore) and ``detach`` at stop,
    restores only the streams it ``owns``, and lets ``check`` refuse a submit
    (raising :class:`~fasm_es.errors.StreamNotOwned`) for any other stream.
    """

    async def attach(self, engine: Engine[Any, Any, Any, Any, Any]) -> None:
        """Take this engine's first share of the streams."""
        ...

    async def detach(self) -> None:
        """Give every stream up."""
        ...

    def owns(self, stream: str) -> bool:
        """Whether this engine serves ``stream`` now."""
        ...

    def check(self, stream: str) -> None:
        """Raise :class:`~fasm_es.errors.StreamNotOwned` unless this engine serves ``stream``."""
        ...


S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
A = TypeVar("A")
R = TypeVar("R")
U = TypeVar("U")

HANDLER_ACTOR = "fasm-es/handler"
TIMER_ACTOR = "fasm-es/timer"
RESTORE_CHUNK = 256


@dataclass(frozen=True, slots=True)
class EngineStats:
    """What the engine has done since it started (counters) and holds now."""

    commits: CommitStats
    dispatch: DispatchStats
    subscribers_delivered: int
    subscribers_failed: int
    followers: tuple[FollowerStatus, ...]
    stuck: int
    in_flight: int
    restore_scanned: int
    restored_streams: int
    restored_actions: int
    restore_failed: int

    @property
    def completions_ignored(self) -> int:
        """Completions refused because their id was not outstanding (never reached the STF)."""
        return self.commits.completions_duplicate + self.commits.completions_unknown


@dataclass(slots=True)
class _RestoreCounts:
    scanned: int = 0
    streams: int = 0
    actions: int = 0
    failed: int = 0


class Engine(Generic[S, I, A, R, U]):
    """Serves one machine's streams on one event store (see the module docstring).

    ``store`` is an :class:`EventStore` or a database URL (then the engine
    opens and closes it). ``handlers`` maps tracked action types to handlers;
    :class:`~fasm_es.timers.Timer` actions need none. ``retry`` and ``rng``
    shape handler retries (``rng`` makes the jitter reproducible).
    ``checkpoints`` is where the outstanding index and subscriber positions
    are saved (default: the store itself). ``executor`` runs plain handlers
    and the store writer (default: thread pools of the engine's own).
    ``on_commit(records)`` is called after each transaction, before its
    actions are dispatched and its callers answered. ``partitions`` (a
    :class:`~fasm_es.partition.PartitionLease`) makes this engine serve only
    its share of the streams. ``max_record_bytes`` bounds the stored size of
    one record (see :class:`~fasm_es.streams.Streams`). Every
    ``stuck_interval`` seconds the engine saves its stuck actions for
    operators in other processes (when they changed) and reads their retry
    requests (:mod:`fasm_es.stuck`); None turns both off. Use as
    ``async with Engine(...) as engine`` (or ``start``/``stop``).
    """

    def __init__(
        self,
        machine: StateMachine[S, I, A, R, U],
        store: EventStore | str,
        *,
        handlers: Mapping[type, Handler] | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        cache_size: int = 10_000,
        max_batch: int = 512,
        conflict_retries: int = 5,
        idempotency_window: int = 1000,
        checkpoints: Checkpoints | None = None,
        checkpoint_interval: float = 60.0,
        handler_threads: int = 16,
        executor: Executor | None = None,
        stop_timeout: float = 5.0,
        on_commit: Callable[[Sequence[Record[I, A, R, U]]], None] | None = None,
        partitions: StreamOwnership | None = None,
        max_record_bytes: int | None = DEFAULT_MAX_RECORD_BYTES,
        stuck_interval: float | None = 2.0,
    ) -> None:
        if cache_size < max_batch:
            raise ValueError(
                f"cache_size ({cache_size}) must be at least max_batch ({max_batch}): "
                "a batch keeps the state of each of its streams in the cache"
            )
        self.machine = machine
        self._owns_store = isinstance(store, str)
        self.store = open_store(store) if isinstance(store, str) else store
        self.clock: Clock = clock or SystemClock()
        self.streams: Streams[S, I, A, R, U] = Streams(
            machine,
            self.store,
            clock=self.clock,
            cache_size=cache_size,
            max_record_bytes=max_record_bytes,
        )
        self.partitions = partitions
        self.checkpoints: Checkpoints = (
            StoreCheckpoints(self.store) if checkpoints is None else checkpoints
        )
        self.checkpoint_interval = checkpoint_interval
        self.stop_timeout = stop_timeout
        self._on_commit_hook = on_commit
        self._executor: Executor = executor or ThreadPoolExecutor(
            handler_threads, thread_name_prefix="fasm-es-handler"
        )
        self._rng = rng or random.Random()
        self._policy = retry or RetryPolicy()
        self._commits = GroupCommit(
            self.streams,
            self._after_commit,
            max_batch=max_batch,
            conflict_retries=conflict_retries,
            idempotency_window=idempotency_window,
            executor=executor,
            on_doubt=self._doubted,
        )
        self._retry_sleep = retry_sleep
        self._doubts: asyncio.Task[None] | None = None
        self._dispatcher = Dispatcher(
            self._complete_from_handler,
            clock=self.clock,
            executor=self._executor,
            policy=self._policy,
            rng=self._rng,
            sleep=retry_sleep,
        )
        self._dispatcher.register(Timer, timer_handler(self.clock))
        for action_type, handler in (handlers or {}).items():
            self._dispatcher.register(action_type, handler)
        self._subscriptions = Subscriptions(self._executor)
        self._followers: list[LogFollower] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._index = OutstandingTracker(self.store, self.streams.codec, self.checkpoints)
        self._restored = _RestoreCounts()
        if stuck_interval is not None and stuck_interval <= 0:
            raise ValueError(f"stuck_interval must be > 0 seconds or None, got {stuck_interval}")
        self.stuck_interval = stuck_interval
        self._stuck_reporter = StuckReporter(self.checkpoints, self._index, self.clock)
        self._state = "new"

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Restore (dispatch again what the log shows outstanding), then accept inputs."""
        if self._state != "new":
            raise RuntimeError(f"an engine starts once (this one is {self._state})")
        self._state = "starting"
        self._commits.start()
        try:
            if self.partitions is not None:
                await self.partitions.attach(self)
            self._restored.scanned = await asyncio.to_thread(self._index.advance, load=True)
            if self.stuck_interval is not None:
                await asyncio.to_thread(self._stuck_reporter.begin)
            await self._restore()
        except BaseException:
            await self.stop()
            raise
        for follower in self._followers:
            self._run_follower(follower)
        self._tasks.append(asyncio.create_task(self._checkpoint_loop(), name="fasm-es checkpoint"))
        if self.stuck_interval is not None:
            self._tasks.append(
                asyncio.create_task(self._stuck_loop(self.stuck_interval), name="fasm-es stuck")
            )
        self._state = "running"

    async def stop(self) -> None:
        """Stop dispatching, commit what was submitted, checkpoint, and release resources.

        Actions still being handled stay outstanding in the log: the next start
        dispatches them again.
        """
        if self._state in ("stopping", "stopped"):
            return
        started = self._state == "running"
        self._state = "stopping"
        await self._dispatcher.close()
        await self._commits.close()
        if self._doubts is not None:
            # Streams still in doubt are restored by the next start, like any
            # record whose actions were not dispatched.
            self._doubts.cancel()
            await asyncio.gather(self._doubts, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._subscriptions.close(self.stop_timeout)
        try:
            await asyncio.to_thread(self._index.advance)
        except Exception:
            log.exception("final checkpoint failed (the next start scans more of the log)")
        if started and self.stuck_interval is not None:
            try:
                await asyncio.to_thread(self._stuck_reporter.publish, self._dispatcher.stuck())
            except Exception:
                log.exception("saving the stuck list at stop failed")
        if self.partitions is not None:
            await self.partitions.detach()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_store:
            self.store.close()
        self._state = "stopped"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- inputs ------------------------------------------------------------------------

    async def submit(
        self,
        stream: str,
        value: I | Any,
        *,
        actor: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Record[I, A, R, U]:
        """Submit a normal input; return its record once it is committed.

        ``value`` is validated against the declared input type first
        (:class:`~fasm_es.errors.InvalidInput`, nothing appended). A
        :class:`~fasm_es.errors.Rejection` from the STF is raised here and
        nothing is appended. With ``idempotency_key``, a repeat of a key
        already recorded on the stream returns the original record (see
        :mod:`fasm_es.group_commit` for the window). Raises
        :class:`~fasm_es.errors.ConcurrencyConflict` if other writers kept
        taking the stream's next version through every retry.
        """
        _check_stream(stream)
        inp = self.streams.normal(
            value,
            actor=actor,
            correlation_id=correlation_id,
            causation_id=causation_id,
            idempotency_key=idempotency_key,
        )
        return await self._submit_input(stream, inp, idempotency_key)

    async def complete(
        self,
        stream: str,
        action_id: ActionId,
        result: R | Any,
        *,
        actor: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Record[I, A, R, U]:
        """Submit the result of tracked action ``action_id`` (for results that arrive from outside).

        Raises :class:`~fasm_es.errors.CompletionNotOutstanding` when the id is
        not outstanding (already completed, or never emitted): the STF does not
        see it, nothing is appended, and it is counted and listed by
        :meth:`ignored_completions`.
        """
        _check_stream(stream)
        inp = self.streams.completion(
            action_id,
            result,
            actor=actor,
            correlation_id=correlation_id,
            causation_id=causation_id,
            idempotency_key=idempotency_key,
        )
        return await self._submit_input(stream, inp, idempotency_key)

    async def _submit_input(
        self,
        stream: str,
        inp: Normal[I] | Completed[R],
        key: str | None,
        *,
        check_owner: bool = True,
    ) -> Record[I, A, R, U]:
        if self._state not in ("starting", "running"):
            raise RuntimeError(
                f"the engine is not running (it is {self._state}): "
                "submit inside 'async with Engine(...)'"
            )
        if check_owner and self.partitions is not None:
            self.partitions.check(stream)
        return await self._commits.submit(stream, inp, key)

    async def _complete_from_handler(self, stream: str, action_id: ActionId, result: Any) -> None:
        actor = TIMER_ACTOR if isinstance(result, TimerFired) else HANDLER_ACTOR
        cause = str(IdempotencyKey(stream, action_id))
        inp = self.streams.completion(action_id, result, actor=actor, causation_id=cause)
        # A handler's result is committed even if the stream has moved to another
        # engine meanwhile: optimistic concurrency keeps that safe, and the first
        # completion of an id wins wherever it comes from.
        await self._submit_input(stream, inp, None, check_owner=False)

    # -- after commit -------------------------------------------------------------------

    def _after_commit(self, records: list[Record[I, A, R, U]]) -> None:
        if self._on_commit_hook is not None:
            self._on_commit_hook(records)
        dispatching = self._state in ("starting", "running")
        for record in records:
            if isinstance(record.input, Completed):
                self._dispatcher.settled(record.stream, record.input.id)
            if dispatching:
                for action in record.actions:
                    if isinstance(action, Tracked):
                        self._dispatcher.dispatch(record.stream, action)
        self._subscriptions.deliver(records)
        for follower in self._followers:
            follower.wake()

    # -- restore and the outstanding index -------------------------------------------

    async def checkpoint(self) -> int:
        """Advance the outstanding index over the records since the last checkpoint and save it.

        Runs by itself every ``checkpoint_interval`` seconds and at stop, so a
        start reads only the records after it. Returns the log position reached.
        """
        await asyncio.to_thread(self._index.advance)
        return self._index.index.position

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval)
            try:
                await self.checkpoint()
            except Exception:
                log.exception("checkpoint failed; retrying at the next interval")

    async def adopt(self, select: Callable[[str], bool]) -> None:
        """Serve streams another engine may have written: drop what is cached, restore them.

        Called by the partition lease when it takes partitions over. Cached
        states and idempotency keys are dropped (another engine may have
        appended since they were read), then the outstanding tracked actions
        of the streams ``select`` picks are dispatched again, as at start.
        """
        if self._state != "running":
            return
        await self._commits.exclusive(self._forget_cached)
        await asyncio.to_thread(self._index.advance)
        await self._restore(select)

    def _forget_cached(self) -> None:
        self.streams.forget()
        self._commits.keys.clear()

    async def _restore(self, select: Callable[[str], bool] | None = None) -> None:
        if select is None and self.partitions is not None:
            select = self.partitions.owns
        streams = [s for s in self._index.index.streams() if select is None or select(s)]
        for start in range(0, len(streams), RESTORE_CHUNK):
            chunk = streams[start : start + RESTORE_CHUNK]
            plans = await self._commits.exclusive(self._plan_restores, chunk)
            for plan in plans:
                self._restored.streams += 1
                self._restored.actions += len(plan.dispatch)
                self._carry_out(plan)
        if streams:
            log.info(
                "restore: %d tracked action(s) dispatched again on %d stream(s)",
                self._restored.actions,
                self._restored.streams,
            )

    def _plan_restores(self, streams: list[str]) -> list[RestorePlan]:
        plans = (plan_restore(self.streams, stream) for stream in streams)
        return [plan for plan in plans if plan is not None]

    def _carry_out(self, plan: RestorePlan, *, leave_stuck: bool = False) -> None:
        """Dispatch a restore plan; list its actions as stuck if the machine's restore failed."""
        dispatch = plan.dispatch
        if leave_stuck:
            dispatch = [t for t in dispatch if not self._dispatcher.is_stuck(plan.stream, t.id)]
        self._dispatcher.dispatch_all(plan.stream, dispatch)
        if plan.error is not None:
            self._restored.failed += 1
            log.error("stream %r: %s", plan.stream, plan.error)
            for tracked in plan.stuck:
                self._dispatcher.mark_stuck(plan.stream, tracked, plan.error)

    # -- transactions of unknown outcome -----------------------------------------------

    def _doubted(self) -> None:
        """A transaction failed in a way that may have stored it: settle its streams."""
        if self._state not in ("starting", "running"):
            return
        if self._doubts is None or self._doubts.done():
            self._doubts = asyncio.get_running_loop().create_task(
                self._settle_doubts(), name="fasm-es unknown outcomes"
            )

    def _plan_doubted(self, stream: str) -> RestorePlan | None:
        if self.partitions is not None and not self.partitions.owns(stream):
            return None  # its owner restores it when it takes the stream over
        return plan_restore(self.streams, stream)

    async def _settle_doubts(self) -> None:
        """Reread the streams in doubt and dispatch what they have outstanding, as at a restore.

        A record stored by a transaction whose caller got an error would
        otherwise keep its tracked actions outstanding until the next start.
        While the store stays unreachable this tries again with the handler
        retry policy's backoff.
        """
        failures = 0
        while self._commits.in_doubt and self._state in ("starting", "running"):
            plans, error = await self._commits.exclusive(
                self._commits.settle_doubts, self._plan_doubted
            )
            for made in plans:
                self._carry_out(made, leave_stuck=True)
            if error is None:
                failures = 0
                continue
            failures += 1
            delay = self._policy.delay(min(failures, 30), self._rng)
            log.warning(
                "rereading %d stream(s) after a failed commit failed (%s); retrying in %.3fs",
                len(self._commits.in_doubt),
                error,
                delay,
            )
            await self._retry_sleep(delay)

    # -- handlers and subscribers ------------------------------------------------------

    def register(self, action_type: type, handler: Handler) -> None:
        """Handle tracked actions of ``action_type`` with ``handler(action, key)``."""
        self._dispatcher.register(action_type, handler)

    def subscribe(
        self,
        action_type: type,
        fn: Subscriber,
        *,
        at_least_once: bool = False,
        name: str | None = None,
    ) -> None:
        """Call ``fn(action, record)`` for each untracked action of ``action_type``.

        By default at most once, right after commit. With ``at_least_once``
        the subscriber follows the log from a durable position saved under
        ``name`` (required), retrying a failing call until it succeeds.
        """
        if not at_least_once:
            self._subscriptions.add(action_type, fn)
            return
        if not name:
            raise ValueError("an at-least-once subscriber needs a name for its durable position")
        if any(f.name == name for f in self._followers):
            raise ValueError(f"a subscriber named {name!r} is already subscribed")
        follower = LogFollower(
            name,
            action_type,
            fn,
            store=self.store,
            codec=self.streams.codec,
            checkpoints=self.checkpoints,
            executor=self._executor,
            policy=self._policy,
            rng=self._rng,
        )
        self._followers.append(follower)
        if self._state == "running":
            self._run_follower(follower)

    def _run_follower(self, follower: LogFollower) -> None:
        self._tasks.append(
            asyncio.get_running_loop().create_task(
                follower.run(), name=f"fasm-es subscriber {follower.name}"
            )
        )

    # -- operators ---------------------------------------------------------------------

    def stuck(self) -> list[StuckAction]:
        """Tracked actions whose handler kept failing; each stays outstanding until retried."""
        return self._dispatcher.stuck()

    def retry(self, stream: str, action_id: ActionId) -> None:
        """Dispatch a stuck action again (raises ``LookupError`` if it is not stuck)."""
        self._dispatcher.retry(stream, action_id)

    def in_flight(self) -> list[IdempotencyKey]:
        """Tracked actions being handled now, or waiting to be retried."""
        return self._dispatcher.in_flight()

    async def _stuck_loop(self, interval: float) -> None:
        while True:
            try:
                await self._serve_operators()
            except Exception:
                log.exception("stuck list or retry requests: failed; trying again in %gs", interval)
            await asyncio.sleep(interval)

    async def _serve_operators(self) -> None:
        """Carry out the retry requests made since last time, then save the stuck list."""
        reporter = self._stuck_reporter
        requests = await asyncio.to_thread(reporter.new_requests)
        for request, action in reporter.due(requests, self._dispatcher.stuck()):
            log.info("%s: dispatched again on retry request %d", action.key, request.number)
            self._dispatcher.retry(action.stream, action.action_id)
            reporter.retried(request, action)
        stuck, handling = self._dispatcher.stuck(), self._dispatcher.in_flight()
        await asyncio.to_thread(reporter.publish, stuck, handling)

    def ignored_completions(self) -> list[CompletionNotOutstanding]:
        """The most recent completions refused as not outstanding (newest last)."""
        return list(self._commits.ignored)

    async def state(self, stream: str) -> S:
        """A copy of ``stream``'s committed state."""
        _check_stream(stream)
        return await self._commits.exclusive(self.streams.state, stream)

    async def outstanding(self, stream: str) -> dict[ActionId, A]:
        """``stream``'s tracked actions emitted and not yet completed, by id."""
        _check_stream(stream)
        return await self._commits.exclusive(self.streams.outstanding, stream)

    def stats(self) -> EngineStats:
        """Counters since start, and what is stuck or in flight now."""
        return EngineStats(
            commits=replace(self._commits.stats),
            dispatch=replace(self._dispatcher.stats),
            subscribers_delivered=self._subscriptions.delivered,
            subscribers_failed=self._subscriptions.failed,
            followers=tuple(f.status() for f in self._followers),
            stuck=len(self._dispatcher.stuck()),
            in_flight=len(self._dispatcher.in_flight()),
            restore_scanned=self._restored.scanned,
            restored_streams=self._restored.streams,
            restored_actions=self._restored.actions,
            restore_failed=self._restored.failed,
        )

    async def idle(self, timeout: float | None = None) -> None:
        """Wait until no tracked action is being handled, nothing is queued and nothing is in doubt.

        Timers waiting for their time count as being handled. Raises
        ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self._dispatcher.in_flight() or self._commits.pending() or self._commits.in_doubt:
                await asyncio.sleep(0.005)


def _check_stream(stream: object) -> None:
    check_stream_id(stream)
    assert isinstance(stream, str)
    if stream.startswith(RESERVED_PREFIX):
        raise ValueError(f"stream ids starting with {RESERVED_PREFIX!r} are reserved: {stream!r}")
