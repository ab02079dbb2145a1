"""Snapshots: loading is snapshot + tail, bad snapshots fall back to a full replay."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from examples.counter import Counter, CounterState, Increment
from fasm_es import (
    Actions,
    Completed,
    EventStore,
    Input,
    ManualClock,
    Normal,
    NoTracked,
    RawRecord,
    SnapshotWarning,
    StateMachine,
    Streams,
    open_store,
    upcaster,
)
from fasm_es.outstanding import StoreCheckpoints
from fasm_es.record import Codec, EncodedRecord, RawSnapshot
from fasm_es.snapshot import SnapshotCodec
from fasm_es.store import DEFAULT_PAGE_SIZE


class CountingStore(EventStore):
    """An EventStore that counts the stream records it hands out."""

    def __init__(self, inner: EventStore) -> None:
        super().__init__(inner.backend, inner.url)
        self.records_read = 0

    def read_stream(
        self,
        stream: str,
        *,
        after: int = 0,
        upto: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[RawRecord]:
        for raw in super().read_stream(stream, after=after, upto=upto, page_size=page_size):
            self.records_read += 1
            yield raw


class Snappy(Counter):
    snapshot_every = 10


def bulk_counter_stream(store: EventStore, stream: str, count: int) -> None:
    """Append ``count`` valid counter records fast (real encoding and hash chain)."""
    codec: Codec[Any, Any, Any, Any] = Codec(Counter.types, Counter.schema)
    meta = Streams(Counter(), store, clock=ManualClock()).meta()
    machine = Counter()
    prev = ""
    batch: list[EncodedRecord] = []
    value = 0
    for version in range(1, count + 1):
        actions = machine.new_actions()
        state = CounterState(value=value)
        machine.stf(state, Normal(Increment(by=1), meta), actions)
        value = state.value
        encoded = codec.encode(stream, version, prev, Normal(Increment(by=1), meta), list(actions))
        prev = encoded.hash
        batch.append(encoded)
        if len(batch) == 10_000:
            store.append(batch)
            batch = []
    store.append(batch)


def test_long_stream_loads_from_snapshot_and_reads_only_the_tail(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'long.db'}"
    with open_store(url) as store:
        bulk_counter_stream(store, "long", 100_000)
        full = Streams(Counter(), store).load("long")
        assert full.state.value == 100_000
        at = Streams(Counter(), store).load("long", at=99_950)
        store.save_snapshot(SnapshotCodec(Counter.types, Counter.schema).encode(at))

    counting = CountingStore(open_store(url))
    loaded = Streams(Counter(), counting).load("long")
    assert counting.records_read == 50
    assert loaded.state == full.state
    assert (loaded.version, loaded.last_hash) == (full.version, full.last_hash)
    counting.close()


def test_snapshots_are_taken_every_n_records(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        counters = Streams(Snappy(), store)
        for _ in range(25):
            counters.submit("c", Increment())
        newest = store.load_snapshot("c")
        older = store.load_snapshot("c", at=19)
    assert newest is not None and newest.version == 20
    assert older is not None and older.version == 10


def test_snapshots_off_when_snapshot_every_is_none(tmp_path: Path) -> None:
    class NoSnapshots(Counter):
        snapshot_every = None

    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        counters = Streams(NoSnapshots(), store)
        for _ in range(25):
            counters.submit("c", Increment())
        assert store.load_snapshot("c") is None


def test_time_travel_uses_an_older_snapshot(tmp_path: Path) -> None:
    counting = CountingStore(open_store(f"sqlite:///{tmp_path / 't.db'}"))
    counters = Streams(Snappy(), counting)
    for _ in range(35):
        counters.submit("c", Increment(by=2))
    counting.records_read = 0
    assert Streams(Snappy(), counting).state("c", at=23).value == 46
    assert counting.records_read == 3  # snapshot at 20, then 21..23
    counting.close()


def test_undecodable_snapshot_falls_back_to_full_replay(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    with open_store(f"sqlite:///{path}") as store:
        counters = Streams(Snappy(), store)
        for _ in range(12):
            counters.submit("c", Increment())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE fasm_snapshots SET state=?", (b'{"state":{"value":"many"}}',))

    counting = CountingStore(open_store(f"sqlite:///{path}"))
    with pytest.warns(SnapshotWarning, match="ignoring the snapshot"):
        loaded = Streams(Snappy(), counting).load("c")
    assert loaded.state.value == 12
    assert counting.records_read == 12
    counting.close()


def test_snapshot_of_an_unknown_version_falls_back(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'v.db'}") as store:
        counters = Streams(Snappy(), store)
        for _ in range(10):
            counters.submit("c", Increment())
        snap = store.load_snapshot("c")
        assert snap is not None
        store.save_snapshot(RawSnapshot("c", 11, "Snapshot@9", snap.body))
        counters.submit("c", Increment())
        with pytest.warns(SnapshotWarning, match="newer"):
            assert Streams(Snappy(), store).load("c").state.value == 11


class Job(BaseModel):
    n: int


class Board(BaseModel):
    next_id: int = 0
    done: list[int] = []


class Start(BaseModel):
    pass


class Jobs(StateMachine[Board, Start, Job, bool, NoTracked]):
    snapshot_every = 3

    def stf(
        self, state: Board, input: Input[Start, bool], actions: Actions[Job, NoTracked]
    ) -> None:
        if isinstance(input, Completed):
            state.done.append(int(input.id))
            return
        actions.track(state.next_id, Job(n=state.next_id))
        state.next_id += 1


def test_snapshot_keeps_outstanding_and_completed_ids(store_url: str) -> None:
    with open_store(store_url) as store:
        jobs = Streams(Jobs(), store)
        for _ in range(4):
            jobs.submit("j", Start())
        jobs.complete("j", 1, True)
        jobs.complete("j", 3, True)  # version 6: a snapshot is taken here
        snap = store.load_snapshot("j")
        assert snap is not None and snap.version == 6
        fresh = Streams(Jobs(), store)
        assert fresh.outstanding("j") == {0: Job(n=0), 2: Job(n=2)}
        from fasm_es import CompletionNotOutstanding

        with pytest.raises(CompletionNotOutstanding) as info:
            fresh.complete("j", 3, True)
        assert info.value.reason == "completed"


class BoardV2(BaseModel):
    next_id: int = 0
    finished: list[int] = []


class JobsV2(StateMachine[BoardV2, Start, Job, bool, NoTracked]):
    """The state field ``done`` was renamed ``finished``: snapshots need an upcaster."""

    name = "Jobs"
    snapshot_every = 3
    schema_versions = {"Snapshot": 2}

    @staticmethod
    @upcaster("Snapshot", 1)
    def rename_done(body: dict[str, Any]) -> dict[str, Any]:
        body["state"]["finished"] = body["state"].pop("done")
        return body

    def stf(
        self, state: BoardV2, input: Input[Start, bool], actions: Actions[Job, NoTracked]
    ) -> None:
        if isinstance(input, Completed):
            state.finished.append(int(input.id))
            return
        actions.track(state.next_id, Job(n=state.next_id))
        state.next_id += 1


def test_old_snapshot_is_upcast(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'up.db'}"
    with open_store(url) as store:
        old = Streams(Jobs(), store)
        for _ in range(2):
            old.submit("j", Start())
        old.complete("j", 0, True)  # version 3: snapshot in the v1 shape
        old.submit("j", Start())
    counting = CountingStore(open_store(url))
    new = Streams(JobsV2(), counting).load("j")
    assert counting.records_read == 1  # the tail after the upcast snapshot
    assert new.state == BoardV2(next_id=3, finished=[0])
    assert new.outstanding == {1: Job(n=1), 2: Job(n=2)}
    counting.close()


def test_snapshot_round_trip_on_every_backend(store_url: str) -> None:
    with open_store(store_url) as store:
        counters = Streams(Snappy(), store)
        for _ in range(10):
            counters.submit("c", Increment(by=3))
        assert store.load_snapshot("nothing") is None
        snap = store.load_snapshot("c")
        assert snap is not None and snap.version == 10
        store.save_snapshot(snap)  # saving the same version again is harmless
        decoded = SnapshotCodec(Snappy.types, Snappy.schema).decode(snap)
        assert decoded.state == CounterState(value=30)


def test_old_snapshots_can_be_pruned_on_every_backend(store_url: str) -> None:
    with open_store(store_url) as store:
        for version in (2, 4, 6):
            store.save_snapshot(RawSnapshot("c", version, "S", b'{"v": %d}' % version))
        store.save_snapshot(RawSnapshot("other", 2, "S", b"{}"))
        assert store.prune_snapshots("c", keep_from=6) == 2
        assert store.prune_snapshots("c", keep_from=6) == 0
        newest = store.load_snapshot("c")
        assert newest is not None and (newest.version, newest.body) == (6, b'{"v": 6}')
        assert store.load_snapshot("c", at=5) is None  # versions 2 and 4 are gone
        assert store.load_snapshot("other") is not None  # other streams are untouched


def test_checkpoints_keep_one_row_per_key(store_url: str) -> None:
    """The engine saves its checkpoints every minute: older ones must not pile up."""
    with open_store(store_url) as store:
        checkpoints = StoreCheckpoints(store)
        for position in range(1, 21):
            checkpoints.save("$fasm-es/test", position, b"%d" % position)
        assert checkpoints.load("$fasm-es/test") == (20, b"20")
        assert store.load_snapshot("$fasm-es/test", at=19) is None
