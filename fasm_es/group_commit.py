"""Group commit: inputs submitted concurrently are committed together, in one transaction.

Callers queue their input and wait. One writer takes everything queued (up
to ``max_batch``), runs the STF on each input in turn (building on the
previous one when they share a stream), appends all accepted records in one
store transaction, and only then answers each caller: with its committed
record, or with the exception its own input raised (a rejection, a completion
that is not outstanding). A rejected input costs the others nothing.

The blocking work (STF, encoding, the store call) runs in one dedicated
thread, so the event loop stays free and the batches are strictly ordered.

**Conflicts.** If another process appended to one of the batch's streams
first, the transaction stores nothing. Each input of the batch is then
re-run on its stream reloaded from the log and committed on its own; an
input of the stream that conflicted gets up to ``conflict_retries`` such
retries, and a caller whose input still conflicts gets
:class:`~fasm_es.errors.ConcurrencyConflict`. No input is lost or applied twice.

**Idempotency keys.** An input submitted with an ``idempotency_key`` that a
record of the same stream already carries is not applied again: the caller
gets that original record. Keys are recognised while the original record is
among the stream's last ``idempotency_window`` records (they are read from
the log, so this holds across restarts and between engines); older ones may
be forgotten. Two submits with one key in flight at once get one answer.

**Unknown outcomes.** A transaction that fails for any other reason (the
database went away during commit) may still have been stored. Its callers
get the error; its streams are kept *in doubt* (:attr:`GroupCommit.in_doubt`)
and ``on_doubt`` is called, so the engine can reread them and dispatch what
the log shows outstanding: a record stored this way has its tracked actions
carried out like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from fasm_es.errors import CompletionNotOutstanding, ConcurrencyConflict, Rejection
from fasm_es.inputs import Input
from fasm_es.record import Record
from fasm_es.streams import Staged, Streams

log = logging.getLogger("fasm_es.engine")

T = TypeVar("T")
AnyRecord = Record[Any, Any, Any, Any]

IGNORED_KEPT = 100
"""How many of the most recent refused completions are kept for inspection."""


@dataclass(slots=True, eq=False)
class Submission:
    """One queued input and, once the writer is done with it, its outcome."""

    stream: str
    input: Input[Any, Any]
    key: str | None
    future: asyncio.Future[AnyRecord]
    record: AnyRecord | None = None
    error: BaseException | None = None
    same_as: Submission | None = None
    duplicate: bool = False


@dataclass(slots=True)
class CommitStats:
    """Counters of the writer (a copy is part of ``Engine.stats()``)."""

    submitted: int = 0
    committed: int = 0
    rejected: int = 0
    errors: int = 0
    duplicates_by_key: int = 0
    completions_duplicate: int = 0
    completions_unknown: int = 0
    batches: int = 0
    largest_batch: int = 0
    conflicts: int = 0
    unknown_outcomes: int = 0


class _StreamKeys:
    """The keys of one stream's recent records, complete up to version ``upto``."""

    __slots__ = ("keys", "upto")

    def __init__(self) -> None:
        self.keys: OrderedDict[str, AnyRecord] = OrderedDict()
        self.upto = 0


class KeyIndex:
    """The idempotency keys of each stream's recent records, read from the log when first needed.

    Each stream's keys are known to be complete up to a version. A lookup
    first reads the records between that version and the stream's current
    one (as the cache holds it, which a reload after another writer's
    append moves forward), so a key another engine stored is found.
    """

    def __init__(self, streams: Streams[Any, Any, Any, Any, Any], window: int, max_streams: int):
        if window < 1:
            raise ValueError(f"idempotency_window must be >= 1, got {window}")
        self._streams = streams
        self.window = window
        self.max_streams = max_streams
        self._by_stream: OrderedDict[str, _StreamKeys] = OrderedDict()

    def lookup(self, stream: str, key: str) -> AnyRecord | None:
        """The record of ``stream`` that carried ``key``, if recent enough."""
        known = self._by_stream.get(stream)
        if known is None:
            known = self._by_stream[stream] = _StreamKeys()
            if len(self._by_stream) > self.max_streams:
                self._by_stream.popitem(last=False)
        else:
            self._by_stream.move_to_end(stream)
        version = self._streams.version(stream)
        if version > known.upto:
            after = max(known.upto, version - self.window)
            for record in self._streams.records(stream, after=after, upto=version):
                self._remember(known, record)
            known.upto = version
        return known.keys.get(key)

    def _remember(self, known: _StreamKeys, record: AnyRecord) -> None:
        key = record.meta.idempotency_key
        if key is not None:
            known.keys.setdefault(key, record)
            while len(known.keys) > self.window:
                known.keys.popitem(last=False)

    def add(self, record: AnyRecord) -> None:
        """Remember a freshly committed record's key (if its stream's keys are loaded)."""
        known = self._by_stream.get(record.stream)
        if known is None or record.version != known.upto + 1:
            return  # not loaded, or records are missing between: the next lookup reads them
        self._remember(known, record)
        known.upto = record.version

    def forget(self, stream: str) -> None:
        """Drop a stream's keys (another writer may have appended): reread them when needed."""
        self._by_stream.pop(stream, None)

    def clear(self) -> None:
        """Drop every stream's keys (streams taken over from another engine)."""
        self._by_stream.clear()


class GroupCommit:
    """The queue of submitted inputs and the writer that commits them in batches.

    ``on_commit(records)`` is called on the event loop after each successful
    transaction, before any caller is answered. ``on_doubt()`` is called on
    the event loop after a batch that left streams in :attr:`in_doubt`.
    """

    def __init__(
        self,
        streams: Streams[Any, Any, Any, Any, Any],
        on_commit: Callable[[list[AnyRecord]], None],
        *,
        max_batch: int = 512,
        conflict_retries: int = 5,
        idempotency_window: int = 1000,
        executor: Executor | None = None,
        on_doubt: Callable[[], None] | None = None,
    ) -> None:
        if max_batch < 1 or conflict_retries < 0:
            raise ValueError("max_batch must be >= 1 and conflict_retries >= 0")
        self.streams = streams
        self.max_batch = max_batch
        self.conflict_retries = conflict_retries
        self.keys = KeyIndex(streams, idempotency_window, max_streams=streams.cache_size)
        self.stats = CommitStats()
        self.ignored: deque[CompletionNotOutstanding] = deque(maxlen=IGNORED_KEPT)
        self._on_commit = on_commit
        self._on_doubt = on_doubt
        self.in_doubt: set[str] = set()
        """Streams whose last failed transaction may have been stored (changed by the writer)."""
        self._queue: deque[Submission] = deque()
        # One writer thread serialises store access; a caller may supply its own
        # executor (the simulator runs everything inline on one thread).
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="fasm-es-writer"
        )
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._in_batch = 0

    def start(self) -> None:
        """Start the writer on the running event loop."""
        self._writer = asyncio.get_running_loop().create_task(self._run(), name="fasm-es writer")

    async def submit(self, stream: str, inp: Input[Any, Any], key: str | None) -> AnyRecord:
        """Queue ``inp`` for ``stream``; return its record once committed (or raise)."""
        if self._writer is None or self._closing:
            raise RuntimeError("the engine is not running: use 'async with Engine(...)'")
        future: asyncio.Future[AnyRecord] = asyncio.get_running_loop().create_future()
        self._queue.append(Submission(stream, inp, key, future))
        self.stats.submitted += 1
        self._wakeup.set()
        return await future

    def pending(self) -> int:
        """How many inputs are queued and not yet answered."""
        return len(self._queue) + self._in_batch

    async def exclusive(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the writer's thread between batches.

        Reads made this way see only committed records: no input is half-way
        between its STF run and its commit.
        """
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Commit what is queued, then stop the writer and its thread."""
        self._closing = True
        self._wakeup.set()
        if self._writer is not None:
            await self._writer
        self._executor.shutdown(wait=True)

    # -- the writer (event loop side) -------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch: list[Submission] = []
            while self._queue and len(batch) < self.max_batch:
                submission = self._queue.popleft()
                if not submission.future.done():  # a caller that gave up is skipped
                    batch.append(submission)
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            self._in_batch = len(batch)
            try:
                deferred = await loop.run_in_executor(self._executor, self._write, batch)
            except Exception as exc:  # a bug in the writer: fail this batch, keep going
                log.exception("the writer failed on a batch of %d inputs", len(batch))
                for submission in batch:
                    if not submission.future.done():
                        submission.future.set_exception(exc)
                continue
            finally:
                self._in_batch = 0
            committed = [
                s.record
                for s in batch
                if s.record is not None and not s.duplicate and s.same_as is None
            ]
            if committed:
                self.stats.committed += len(committed)
                try:
                    self._on_commit(committed)
                except Exception:  # the records are durable: answer the callers regardless
                    log.exception("after-commit processing failed")
            if self.in_doubt and self._on_doubt is not None:
                self._on_doubt()
            waiting = set(deferred)
            for submission in batch:
                if submission not in waiting:
                    _answer(submission)
            self._queue.extendleft(reversed(deferred))

    # -- the writer (its own thread) ----------------------------------------------------

    def _write(self, batch: Sequence[Submission]) -> list[Submission]:
        """Stage every input, commit the accepted ones; return those to run in the next batch."""
        staged: list[tuple[Submission, Staged[Any, Any, Any, Any]]] = []
        staged_streams: set[str] = set()
        # A failed STF run drops its stream's cached state, including inputs of
        # this batch staged before it: later inputs of that stream wait for the
        # next batch, which reloads the stream with those inputs committed.
        dropped: set[str] = set()
        deferred: list[Submission] = []
        in_batch: dict[tuple[str, str], Submission] = {}
        if len(batch) > 1:
            try:
                self.streams.preload([s.stream for s in batch])
            except Exception:  # an optimisation only: each stream then loads by itself
                log.debug("preloading the batch's new streams failed", exc_info=True)
        for s in batch:
            if s.stream in dropped:
                deferred.append(s)
                continue
            if s.key is not None:
                first = in_batch.get((s.stream, s.key))
                if first is not None:
                    s.same_as = first
                    self.stats.duplicates_by_key += 1
                    continue
                if self._answered_by_key(s):
                    continue
                in_batch[(s.stream, s.key)] = s
            try:
                staged.append((s, self.streams.stage(s.stream, s.input)))
            except Exception as exc:
                self._failed(s, exc)
                if s.stream in staged_streams:
                    dropped.add(s.stream)
                continue
            staged_streams.add(s.stream)
        if staged:
            self._commit(staged)
        return deferred

    def _answered_by_key(self, s: Submission) -> bool:
        assert s.key is not None
        try:
            original = self.keys.lookup(s.stream, s.key)
        except Exception as exc:
            self._failed(s, exc)
            return True
        if original is None:
            return False
        s.record, s.error, s.duplicate = original, None, True
        self.stats.duplicates_by_key += 1
        return True

    def _commit(self, staged: list[tuple[Submission, Staged[Any, Any, Any, Any]]]) -> None:
        try:
            records = self.streams.commit([st for _, st in staged])
        except ConcurrencyConflict as conflict:
            self.stats.conflicts += 1
            self._commit_one_by_one([s for s, _ in staged], conflict)
            return
        except Exception as exc:
            self.stats.unknown_outcomes += 1
            for s, _ in staged:
                # The append may have been stored before the error (a connection
                # lost during commit): reread the keys, so a retry finds it.
                self._doubt(s.stream)
                self._failed(s, exc)
            return
        for (s, _), record in zip(staged, records, strict=True):
            s.record = record
            self.keys.add(record)

    def _commit_one_by_one(
        self, submissions: list[Submission], conflict: ConcurrencyConflict
    ) -> None:
        """After a conflict: each input on its reloaded stream, in order, with bounded retries.

        An input of the stream that conflicted has used its first try; the
        others, caught in the same transaction, have not.
        """
        for s in submissions:
            s.error = conflict
            tries = self.conflict_retries + (0 if s.stream == conflict.stream else 1)
            for _ in range(tries):
                self.keys.forget(s.stream)
                if s.key is not None and self._answered_by_key(s):
                    break
                try:
                    staged = self.streams.stage(s.stream, s.input)
                except Exception as exc:
                    self._failed(s, exc)
                    break
                try:
                    (record,) = self.streams.commit([staged])
                except ConcurrencyConflict as exc:
                    self.stats.conflicts += 1
                    s.error = exc
                    continue
                except Exception as exc:
                    self.stats.unknown_outcomes += 1
                    self._doubt(s.stream)
                    self._failed(s, exc)
                    break
                s.record, s.error = record, None
                self.keys.add(record)
                break
            else:
                self.stats.errors += 1
                log.warning(
                    "stream %r: input still conflicts after %d retries: %s",
                    s.stream,
                    self.conflict_retries,
                    s.error,
                )

    def _doubt(self, stream: str) -> None:
        self.keys.forget(stream)
        self.in_doubt.add(stream)

    def settle_doubts(
        self, plan: Callable[[str], T | None]
    ) -> tuple[list[T], BaseException | None]:
        """Reread each stream in doubt and ``plan`` it (in the writer's thread, between batches).

        Returns the plans made and the error that stopped it, if any; the
        streams not yet planned stay in doubt.
        """
        plans: list[T] = []
        for stream in sorted(self.in_doubt):
            self.streams.forget(stream)
            self.keys.forget(stream)
            try:
                made = plan(stream)
            except Exception as exc:
                return plans, exc
            self.in_doubt.discard(stream)
            if made is not None:
                plans.append(made)
        return plans, None

    def _failed(self, s: Submission, exc: Exception) -> None:
        s.error = exc
        if isinstance(exc, CompletionNotOutstanding):
            self.ignored.append(exc)
            if exc.reason == "completed":
                self.stats.completions_duplicate += 1
            else:
                self.stats.completions_unknown += 1
        elif isinstance(exc, Rejection):
            self.stats.rejected += 1
        else:
            self.stats.errors += 1


def _answer(s: Submission) -> None:
    source = s.same_as if s.same_as is not None else s
    if s.future.done():
        return
    if source.error is not None:
        s.future.set_exception(source.error)
    elif source.record is not None:
        s.future.set_result(source.record)
    else:  # the first of two same-key submits was deferred: cannot happen, but never hang
        s.future.set_exception(RuntimeError(f"stream {s.stream!r}: input was not processed"))
