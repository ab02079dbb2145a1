"""Submitting inputs to a machine's streams in one store: the synchronous core path.

:class:`Streams` loads a stream's state (cached, else folded from the log),
runs the STF, and on success appends one record and returns it. On rejection
nothing is appended and the cached state is dropped, so the state it holds is
always the fold of the log (DESIGN guarantee 2), even when the STF mutated
state before raising. The runtime engine builds on this path.
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fasm_es.actions import Tracked, Untracked
from fasm_es.clock import Clock, SystemClock
from fasm_es.errors import (
    ConcurrencyConflict,
    RecordDecodeError,
    RecordTooLarge,
    ReplayDivergence,
)
from fasm_es.fold import StreamState, apply_record, fold_stored, initial, restore_actions
from fasm_es.inputs import ActionId, Completed, Input, Metadata, Normal
from fasm_es.machine import StateMachine, drive
from fasm_es.record import Codec, EncodedRecord, Record
from fasm_es.snapshot import SnapshotCodec
from fasm_es.store import EventStore

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
A = TypeVar("A")
R = TypeVar("R")
U = TypeVar("U")

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
"""The default bound on one stored record's body (input, actions, metadata): 1 MiB."""


def check_stream_id(stream: object) -> None:
    """Raise ``ValueError`` unless ``stream`` is a usable stream id.

    A stream id is a non-empty string that every backend stores as it is:
    no NUL character (PostgreSQL text cannot hold one) and valid Unicode (no
    lone surrogates, which cannot be encoded).
    """
    if not isinstance(stream, str) or not stream:
        raise ValueError(f"a stream id must be a non-empty string, got {stream!r}")
    if "\x00" in stream:
        raise ValueError(f"a stream id may not contain a NUL character, got {stream!r}")
    try:
        stream.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"a stream id must be valid Unicode (no lone surrogates), got {stream!r}"
        ) from None


class SnapshotWarning(UserWarning):
    """A snapshot could not be read or written; the log is used instead."""


@dataclass(frozen=True, slots=True)
class Staged(Generic[I, A, R, U]):
    """An input the STF accepted, encoded and waiting for :meth:`Streams.commit`."""

    input: Input[I, R]
    actions: tuple[Tracked[A] | Untracked[U], ...]
    encoded: EncodedRecord


class Streams(Generic[S, I, A, R, U]):
    """The streams of one machine in one event store.

    ``cache_size`` bounds how many stream states are kept in memory (least
    recently used are dropped and refolded on next use). ``conflict_retries``
    bounds how often a submit reloads and re-runs the STF after another writer
    appended to the same stream first. ``max_record_bytes`` bounds one stored
    record's body (input, emitted actions, metadata; ``None``: no bound): an
    input whose record would be larger is refused with
    :class:`~fasm_es.errors.RecordTooLarge` and nothing is appended. Safe to
    share between threads.
    """

    def __init__(
        self,
        machine: StateMachine[S, I, A, R, U],
        store: EventStore,
        *,
        clock: Clock | None = None,
        cache_size: int = 10_000,
        conflict_retries: int = 5,
        max_record_bytes: int | None = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        if max_record_bytes is not None and max_record_bytes < 1:
            raise ValueError(f"max_record_bytes must be >= 1 or None, got {max_record_bytes}")
        self.machine = machine
        self.max_record_bytes = max_record_bytes
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.codec: Codec[I, A, R, U] = Codec.for_machine(machine)
        self.snapshots: SnapshotCodec[S, A] = SnapshotCodec.for_machine(machine)
        self.cache_size = cache_size
        self.conflict_retries = conflict_retries
        self._cache: OrderedDict[str, StreamState[S, A]] = OrderedDict()
        self._lock = threading.RLock()

    # -- reading ---------------------------------------------------------------------

    def records(
        self, stream: str, *, after: int = 0, upto: int | None = None
    ) -> Iterator[Record[I, A, R, U]]:
        """Yield ``stream``'s decoded records with ``after < version <= upto``."""
        for raw in self.store.read_stream(stream, after=after, upto=upto):
            yield self.codec.decode(raw)

    def load(self, stream: str, *, at: int | None = None) -> StreamState[S, A]:
        """Fold ``stream`` (up to version ``at``) from its newest usable snapshot plus the tail.

        Returns a fresh object, not the cached one. A snapshot that cannot be
        decoded any more is skipped with a :class:`SnapshotWarning` and the
        stream is folded from its first record.
        """
        start = self._load_snapshot(stream, at) if self.machine.snapshot_every else None
        after = start.version if start is not None else 0
        raws = self.store.read_stream(stream, after=after, upto=at)
        return fold_stored(self.machine, self.codec, stream, raws, start)

    def _load_snapshot(self, stream: str, at: int | None) -> StreamState[S, A] | None:
        raw = self.store.load_snapshot(stream, at=at)
        if raw is None:
            return None
        try:
            return self.snapshots.decode(raw)
        except RecordDecodeError as exc:
            warnings.warn(
                f"{exc}; ignoring the snapshot and folding the stream from its first record",
                SnapshotWarning,
                stacklevel=3,
            )
            return None

    def _save_snapshot(self, stream: str, version: int) -> None:
        every = self.machine.snapshot_every
        current = self._cache.get(stream)
        if (
            every is None
            or current is None
            or current.version != version  # a later input is already staged
            or current.version - current.snapshot_version < every
        ):
            return
        try:
            self.store.save_snapshot(self.snapshots.encode(current))
        except Exception as exc:  # a snapshot is an optimisation: never fail a commit for it
            warnings.warn(
                f"stream {stream!r} version {version}: snapshot not saved: {exc}",
                SnapshotWarning,
                stacklevel=3,
            )
            return
        current.snapshot_version = version

    def state(self, stream: str, *, at: int | None = None) -> S:
        """A copy of ``stream``'s state now, or after version ``at`` (time travel)."""
        if at is not None:
            return self.load(stream, at=at).state
        with self._lock:
            return copy.deepcopy(self._current(stream).state)

    def peek(self, stream: str) -> S:
        """The held state itself, without a copy: for read-only inspection (tests,
        simulation). Mutating it would corrupt the cache."""
        with self._lock:
            return self._current(stream).state

    def version(self, stream: str) -> int:
        """The stream's current version (0 when it has no records)."""
        with self._lock:
            return self._current(stream).version

    def outstanding(self, stream: str) -> dict[ActionId, A]:
        """Tracked actions the log shows as emitted and not completed, by id."""
        with self._lock:
            return dict(self._current(stream).outstanding)

    def restore(self, stream: str) -> tuple[Tracked[A] | Untracked[U], ...]:
        """The actions the machine's ``restore`` (or the default) re-issues for ``stream``."""
        with self._lock:
            return restore_actions(self.machine, self._current(stream))

    def _current(self, stream: str) -> StreamState[S, A]:
        cached = self._cache.get(stream)
        if cached is None:
            cached = self.load(stream)
            self._cache[stream] = cached
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(stream)
        return cached

    def preload(self, streams: Sequence[str]) -> int:
        """Cache the initial state of those of ``streams`` that have no records yet.

        One read of the store answers for all of them, where loading each
        would take its own reads (snapshot and records). Streams already
        cached, or with records, are left to load when first used. Another
        writer creating one of them meanwhile is caught by optimistic
        concurrency, as for any cached state. Returns how many were cached.
        """
        with self._lock:
            missing = [s for s in dict.fromkeys(streams) if s not in self._cache]
        if len(missing) < 2:
            return 0  # one stream loads as cheaply by itself
        existing = self.store.last_versions(missing)
        added = 0
        with self._lock:
            for stream in missing:
                if stream in existing or stream in self._cache:
                    continue
                self._cache[stream] = initial(self.machine, stream)
                added += 1
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return added

    def forget(self, stream: str | None = None) -> None:
        """Drop the cached state of ``stream`` (or of every stream)."""
        with self._lock:
            if stream is None:
                self._cache.clear()
            else:
                self._cache.pop(stream, None)

    # -- writing ---------------------------------------------------------------------

    def meta(
        self,
        *,
        actor: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Metadata:
        """Metadata stamped now by this instance's clock."""
        return Metadata(
            accepted_at=self.clock.now(),
            actor=actor,
            correlation_id=correlation_id,
            causation_id=causation_id,
            idempotency_key=idempotency_key,
        )

    def normal(self, value: I | Any, **meta: str | None) -> Normal[I]:
        """A validated normal input stamped now (``meta``: actor, correlation_id,
        causation_id, idempotency_key); raises InvalidInput before any STF runs."""
        return Normal(self.codec.validate_input(value), self.meta(**meta))

    def completion(self, action_id: ActionId, result: R | Any, **meta: str | None) -> Completed[R]:
        """A validated completion of ``action_id`` stamped now (``meta`` as for :meth:`normal`)."""
        return Completed(action_id, self.codec.validate_result(result), self.meta(**meta))

    def submit(
        self,
        stream: str,
        value: I | Any,
        *,
        actor: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Record[I, A, R, U]:
        """Submit a normal input; return its record once committed.

        ``value`` is validated against the declared input type first (a dict
        or JSON-able value is parsed into it); an invalid one raises
        :class:`~fasm_es.errors.InvalidInput` naming the field, before the STF
        runs. A :class:`~fasm_es.errors.Rejection` from the STF propagates and
        nothing is appended.
        """
        return self.apply(
            stream,
            self.normal(
                value,
                actor=actor,
                correlation_id=correlation_id,
                causation_id=causation_id,
                idempotency_key=idempotency_key,
            ),
        )

    def complete(
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
        """Submit the result of tracked action ``action_id``; return its record.

        Raises :class:`~fasm_es.errors.CompletionNotOutstanding` (and appends
        nothing, without running the STF) when the id is not outstanding.
        """
        return self.apply(
            stream,
            self.completion(
                action_id,
                result,
                actor=actor,
                correlation_id=correlation_id,
                causation_id=causation_id,
                idempotency_key=idempotency_key,
            ),
        )

    def apply(self, stream: str, inp: Input[I, R]) -> Record[I, A, R, U]:
        """Run the STF on ``inp`` and append the record; the core of submit and complete.

        Retries after a :class:`~fasm_es.errors.ConcurrencyConflict` (reload the
        stream, re-run the STF) up to ``conflict_retries`` times, then raises it.
        """
        with self._lock:
            attempt = 0
            while True:
                staged = self.stage(stream, inp)
                try:
                    (record,) = self.commit([staged])
                except ConcurrencyConflict:
                    attempt += 1
                    if attempt > self.conflict_retries:
                        raise
                    continue
                return record

    def stage(self, stream: str, inp: Input[I, R]) -> Staged[I, A, R, U]:
        """Run the STF on ``inp`` against the cached state and encode its record.

        The cached stream state advances at once, so a second input staged for
        the same stream builds on this one; :meth:`commit` makes it durable.
        If the STF rejects or fails, the stream's cache is dropped (the next
        use refolds the log) and the exception propagates; nothing is staged.
        Callers hold no lock between stage and commit only if they alone
        write through this instance (the engine does).
        """
        check_stream_id(stream)
        with self._lock:
            current = self._current(stream)
            if isinstance(inp, Completed):
                if (
                    inp.id not in current.outstanding
                    and self.store.last_version(stream) > current.version
                ):
                    # Another writer appended since this cache was loaded (it may
                    # have emitted the id): judge the completion against the log.
                    self._cache.pop(stream, None)
                    current = self._current(stream)
                current.check_completion(inp.id)
            actions = self.machine.new_actions()
            try:
                drive(self.machine.stf(current.state, inp, actions), self.machine.name, "stf")
                emitted = actions.to_tuple()
                version = current.version + 1
                encoded = self.codec.encode(stream, version, current.last_hash, inp, emitted)
                limit = self.max_record_bytes
                if limit is not None and len(encoded.body) > limit:
                    raise RecordTooLarge(stream, len(encoded.body), limit)
            except BaseException:
                # The STF may have mutated the cached state before failing.
                self._cache.pop(stream, None)
                raise
            completed_id = inp.id if isinstance(inp, Completed) else None
            current.record_outcome(completed_id, emitted, version, encoded.hash)
            return Staged(inp, emitted, encoded)

    def commit(self, staged: Sequence[Staged[I, A, R, U]]) -> list[Record[I, A, R, U]]:
        """Append staged records in one transaction; return them with their positions.

        On any failure every stream in the batch is dropped from the cache,
        so its state is refolded from the log. A conflict stores nothing; any
        other error (the database went away during commit) may have stored
        the batch all the same: its outcome is unknown until the streams are
        read again (the engine does, see :mod:`fasm_es.group_commit`).
        """
        try:
            positions = self.store.append([s.encoded for s in staged])
        except BaseException:
            with self._lock:
                for s in staged:
                    self._cache.pop(s.encoded.stream, None)
            raise
        if self.machine.snapshot_every is not None:
            newest = {s.encoded.stream: s.encoded.version for s in staged}
            with self._lock:
                for stream, version in newest.items():
                    self._save_snapshot(stream, version)
        return [
            Record(e.stream, e.version, position, e.tag, s.input, s.actions, e.hash)
            for s, position in zip(staged, positions, strict=True)
            for e in (s.encoded,)
        ]

    def verify_replay(self, stream: str) -> StreamState[S, A]:
        """Refold ``stream`` from its first record and check it against what was recorded.

        Each record must re-emit exactly its recorded actions, and the folded
        state must equal the state this instance holds for the stream (if it
        holds one). Raises :class:`~fasm_es.errors.ReplayDivergence` naming
        the stream, version and first difference; returns the folded state.
        """
        current = initial(self.machine, stream)
        actions = self.machine.new_actions()
        for record in self.records(stream):
            apply_record(self.machine, current, record, actions, check_actions=True)
        with self._lock:
            live = self._cache.get(stream)
            if live is not None and live.version == current.version and live.state != current.state:
                raise ReplayDivergence(
                    stream,
                    current.version,
                    f"the live state {live.state!r} differs from the replayed {current.state!r}",
                )
        return current
