"""DESIGN.md section 2, guarantees 1, 2, 3, 5, 6 and 8, on the synchronous submit path.

Each guarantee has a check function and tests named after it. For 1, 2 and 5
a test also runs the check against a deliberately broken implementation and
asserts the check fails, so a check that could never fail would be noticed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from machines import (
    Charge,
    ChargeCard,
    Entry,
    Fragile,
    FragileState,
    Increment,
    Incremented,
    Ledger,
    Op,
    OverLimit,
    Payments,
    PaymentsState,
    Refused,
    Tally,
    TallyEmitsTwice,
    TallyState,
    TallyStricter,
    db_rows,
    folded_state,
    fresh_store,
    raw_records,
    sqlite_url,
)

from fasm_es import (
    Actions,
    Codec,
    CompletionNotOutstanding,
    ConcurrencyConflict,
    CorruptRecord,
    EncodedRecord,
    EventStore,
    Input,
    InvalidInput,
    ManualClock,
    Metadata,
    Normal,
    NoTracked,
    Record,
    Rejection,
    ReplayDivergence,
    StoreError,
    Streams,
    UnknownRecordType,
    open_store,
)
from fasm_es.fold import StreamState
from fasm_es.record import GENESIS

AnyStreams = Streams[Any, Any, Any, Any, Any]


def db_file(tmp_path: Path) -> Path:
    """The SQLite file behind ``sqlite_url(tmp_path)``."""
    return tmp_path / "events.db"


# =====================================================================================
# Guarantee 1: accepted means durable
# =====================================================================================


def assert_durable(
    url: str, record: Record[Any, Any, Any, Any], codec: Codec[Any, Any, Any, Any]
) -> None:
    """A store opened afresh on ``url`` reads ``record`` back: input, actions, metadata."""
    with fresh_store(url) as store:
        stored = [r for r in store.read_stream(record.stream) if r.version == record.version]
    assert len(stored) == 1, f"version {record.version} of {record.stream!r} is not stored"
    decoded = codec.decode(stored[0])
    assert decoded.input == record.input
    assert decoded.actions == record.actions
    assert decoded.meta == record.meta
    assert (decoded.tag, decoded.hash, decoded.position) == (
        record.tag,
        record.hash,
        record.position,
    )


def assert_appends_nothing(
    db: Path, attempt: Callable[[], object], expected: type[BaseException]
) -> None:
    """``attempt`` raises ``expected`` and leaves every row of the database file as it was."""
    before = db_rows(db)
    with pytest.raises(expected):
        attempt()
    assert db_rows(db) == before, "a refused input changed the stored data"


def test_guarantee_1_accepted_means_durable(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    clock = ManualClock()
    streams = Streams(Payments(), open_store(url), clock=clock)
    submitted = [
        streams.submit("acct-1", Charge(amount=12), actor="alice", correlation_id="order-1"),
        streams.submit("acct-1", {"amount": 5, "ids": "str"}, idempotency_key="key-2"),
    ]
    clock.advance(3)
    submitted.append(streams.complete("acct-1", 1, {"ok": True}, causation_id="gateway-7"))
    for record in submitted:
        assert_durable(url, record, Codec(Payments.types))
    assert [r.version for r in submitted] == [1, 2, 3]
    assert submitted[0].meta.actor == "alice"
    assert submitted[1].meta.idempotency_key == "key-2"
    assert submitted[2].meta.causation_id == "gateway-7"


def test_guarantee_1_rejected_input_appends_nothing(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    streams.submit("t", Increment(by=99))
    assert_appends_nothing(
        db_file(tmp_path), lambda: streams.submit("t", Increment(by=2)), OverLimit
    )
    assert [r.version for r in streams.records("t")] == [1]


def test_guarantee_1_invalid_input_appends_nothing(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    streams.submit("t", Increment())
    assert_appends_nothing(
        db_file(tmp_path), lambda: streams.submit("t", {"by": "two"}), InvalidInput
    )
    assert_appends_nothing(db_file(tmp_path), lambda: streams.submit("t", [1, 2]), InvalidInput)


class ForgetfulStore(EventStore):
    """Broken on purpose: reports appends as done but keeps them in memory only."""

    def __init__(self, url: str) -> None:
        super().__init__(open_store(url).backend, url)
        self.pending: list[EncodedRecord] = []

    def append(self, records: Sequence[EncodedRecord]) -> list[int]:
        self.pending.extend(records)
        return [1000 + len(self.pending) for _ in records]


class RecordsRejections(Streams[Any, Any, Any, Any, Any]):
    """Broken on purpose: appends a record for a rejected input too."""

    def apply(self, stream: str, inp: Input[Any, Any]) -> Record[Any, Any, Any, Any]:
        try:
            return super().apply(stream, inp)
        except Rejection:
            current = self.load(stream)
            encoded = self.codec.encode(stream, current.version + 1, current.last_hash, inp, ())
            self.store.append([encoded])
            raise


def test_guarantee_1_check_catches_a_store_that_does_not_persist(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    streams = Streams(Tally(), ForgetfulStore(url))
    record = streams.submit("t", Increment())
    with pytest.raises(AssertionError, match="is not stored"):
        assert_durable(url, record, Codec(Tally.types))


def test_guarantee_1_check_catches_an_engine_that_stores_rejections(tmp_path: Path) -> None:
    streams = RecordsRejections(Tally(), open_store(sqlite_url(tmp_path)))
    with pytest.raises(AssertionError, match="changed the stored data"):
        assert_appends_nothing(
            db_file(tmp_path), lambda: streams.submit("t", Increment(by=500)), OverLimit
        )


# =====================================================================================
# Guarantee 2: atomic in memory too
# =====================================================================================


def assert_state_is_fold(streams: AnyStreams, stream: str) -> None:
    """The state the engine holds for ``stream`` equals a from-scratch fold of its log."""
    assert streams.state(stream) == folded_state(streams, stream), (
        f"stream {stream!r}: the engine's state is not the fold of the log"
    )


def test_guarantee_2_atomic_in_memory_after_a_rejection(tmp_path: Path) -> None:
    streams = Streams(Fragile(), open_store(sqlite_url(tmp_path)))
    streams.submit("f", Op(by=5))
    with pytest.raises(Refused):
        streams.submit("f", Op(by=7, then="reject"))
    assert_state_is_fold(streams, "f")
    assert streams.state("f") == FragileState(total=5, history=[5])
    streams.submit("f", Op(by=1))
    # Built on the folded state, not on the one the rejected STF call mutated.
    assert streams.state("f") == FragileState(total=6, history=[5, 1])
    assert_state_is_fold(streams, "f")


def test_guarantee_2_bug_exception_propagates_unchanged_and_state_is_fold(tmp_path: Path) -> None:
    machine = Fragile()
    streams = Streams(machine, open_store(sqlite_url(tmp_path)))
    streams.submit("f", Op(by=5))
    with pytest.raises(ZeroDivisionError) as info:
        streams.submit("f", Op(by=7, then="crash"))
    assert type(info.value) is ZeroDivisionError
    assert_state_is_fold(streams, "f")
    assert [r.version for r in streams.records("f")] == [1]
    streams.submit("f", Op(by=1))
    assert streams.state("f") == FragileState(total=6, history=[5, 1])


def test_guarantee_2_state_is_fold_after_the_append_fails(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    slow = Streams(Fragile(), open_store(url), conflict_retries=0)
    other = Streams(Fragile(), open_store(url))
    slow.submit("f", Op(by=1))
    other.submit("f", Op(by=10))  # slow's cached state is now one record behind
    with pytest.raises(ConcurrencyConflict):
        slow.submit("f", Op(by=100))  # the STF mutated the cached state, then the append lost
    assert_state_is_fold(slow, "f")
    assert slow.state("f") == FragileState(total=11, history=[1, 10])
    slow.submit("f", Op(by=2))
    assert slow.state("f") == FragileState(total=13, history=[1, 10, 2])
    # The other writer is now behind in turn: it re-reads and retries.
    other.submit("f", Op(by=4))
    assert other.state("f") == FragileState(total=17, history=[1, 10, 2, 4])


class FailingStore(EventStore):
    """An append that fails like a full disk would."""

    def __init__(self, url: str) -> None:
        super().__init__(open_store(url).backend, url)
        self.fail = False

    def append(self, records: Sequence[EncodedRecord]) -> list[int]:
        if self.fail:
            raise StoreError("disk full")
        return super().append(records)


def test_guarantee_2_state_is_fold_after_a_store_error(tmp_path: Path) -> None:
    store = FailingStore(sqlite_url(tmp_path))
    streams = Streams(Fragile(), store)
    streams.submit("f", Op(by=3))
    store.fail = True
    with pytest.raises(StoreError, match="disk full"):
        streams.submit("f", Op(by=4))
    store.fail = False
    assert_state_is_fold(streams, "f")
    streams.submit("f", Op(by=5))
    assert streams.state("f") == FragileState(total=8, history=[3, 5])


class KeepsEverything(dict[str, Any]):
    """A cache that ignores evictions: what an engine without guarantee 2 would hold."""

    def pop(self, key: str, default: Any = None) -> Any:
        return self.get(key, default)

    def move_to_end(self, key: str, last: bool = True) -> None:
        """Part of the OrderedDict interface the engine uses."""

    def popitem(self, last: bool = True) -> tuple[str, Any]:
        raise KeyError("never evicts")


def test_guarantee_2_check_catches_an_engine_that_keeps_the_mutated_state(tmp_path: Path) -> None:
    streams = Streams(Fragile(), open_store(sqlite_url(tmp_path)))
    streams._cache = KeepsEverything()  # type: ignore[assignment]
    streams.submit("f", Op(by=5))
    with pytest.raises(Refused):
        streams.submit("f", Op(by=7, then="reject"))
    with pytest.raises(AssertionError, match="not the fold of the log"):
        assert_state_is_fold(streams, "f")


OPS = st.lists(
    st.builds(
        Op, by=st.integers(-5, 20), then=st.sampled_from(["accept", "accept", "reject", "crash"])
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS)
def test_guarantee_2_property_state_is_always_the_fold(ops: list[Op]) -> None:
    streams = Streams(Fragile(), open_store("memory://"))
    accepted: list[int] = []
    for op in ops:
        try:
            streams.submit("f", op)
        except (Refused, ZeroDivisionError):
            pass
        else:
            accepted.append(op.by)
        assert_state_is_fold(streams, "f")
    assert streams.state("f") == FragileState(total=sum(accepted), history=accepted)
    assert [r.version for r in streams.records("f")] == list(range(1, len(accepted) + 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_guarantee_2_property_counter_live_equals_fold(steps: list[int]) -> None:
    streams = Streams(Tally(), open_store("memory://"))
    accepted = 0
    total = 0
    for by in steps:
        try:
            streams.submit("t", Increment(by=by))
        except OverLimit:
            assert total + by > 100
        else:
            accepted += 1
            total += by
        assert_state_is_fold(streams, "t")
    assert streams.state("t") == TallyState(value=total)
    assert len(list(streams.records("t"))) == accepted
    assert streams.verify_replay("t").state == streams.state("t")


# =====================================================================================
# Guarantee 3: replay equals live
# =====================================================================================


class TallyMisreports(Tally):
    """Changed code: the notification's ``previous`` is off by one from a total of 3."""

    def stf(
        self,
        state: TallyState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        assert isinstance(input, Normal)
        previous = state.value
        current = previous + input.value.by
        actions.emit(Incremented(previous=previous + (previous >= 3), current=current))
        state.value = current


def tally_log(url: str) -> AnyStreams:
    """Six accepted increments (0 -> 6) with a rejected one between them."""
    streams = Streams(Tally(), open_store(url))
    for by in (1, 1, 1, 1):
        streams.submit("t", Increment(by=by))
    with pytest.raises(OverLimit):
        streams.submit("t", Increment(by=1000))
    for by in (1, 1):
        streams.submit("t", Increment(by=by))
    return streams


def test_guarantee_3_replay_equals_live(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    live = tally_log(url)
    assert live.verify_replay("t").state == live.state("t") == TallyState(value=6)
    restarted = Streams(Tally(), open_store(url))
    assert restarted.state("t") == live.state("t")
    assert restarted.version("t") == 6


def test_guarantee_3_replay_equals_live_with_tracked_actions(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    live = Streams(Payments(), open_store(url))
    live.submit("p", Charge(amount=5))
    live.submit("p", Charge(amount=6, ids="str"))
    live.complete("p", "c2", {"ok": False})
    replayed = live.verify_replay("p")
    assert replayed.state == live.state("p")
    assert replayed.outstanding == live.outstanding("p")
    restarted = Streams(Payments(), open_store(url))
    assert restarted.restore("p") == live.restore("p")


def test_guarantee_3_replay_divergence_when_actions_change(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    tally_log(url)
    with pytest.raises(ReplayDivergence) as info:
        Streams(TallyEmitsTwice(), open_store(url)).verify_replay("t")
    err = info.value
    assert (err.stream, err.version) == ("t", 3)
    assert "2 actions where 1 were recorded" in err.difference
    assert "'t'" in str(err)
    assert "version 3" in str(err)


def test_guarantee_3_replay_divergence_names_the_first_differing_action(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    tally_log(url)
    with pytest.raises(ReplayDivergence) as info:
        Streams(TallyMisreports(), open_store(url)).verify_replay("t")
    assert info.value.version == 4
    assert "action #0 was recorded as" in info.value.difference
    assert "previous=3" in info.value.difference
    assert "previous=4" in info.value.difference


def test_guarantee_3_replay_divergence_when_a_recorded_input_is_now_rejected(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path)
    tally_log(url)
    with pytest.raises(ReplayDivergence) as info:
        Streams(TallyStricter(), open_store(url)).verify_replay("t")
    assert (info.value.stream, info.value.version) == ("t", 4)
    assert "now rejects" in info.value.difference
    assert "OverLimit" in info.value.difference


# =====================================================================================
# Guarantee 5: completions are idempotent
# =====================================================================================


def assert_completion_refused(
    streams: AnyStreams, machine: Payments, db: Path, stream: str, action_id: Any, reason: str
) -> None:
    """Completing ``action_id`` is reported with ``reason``, runs no STF and appends nothing."""
    streams.state(stream)  # load the stream first, so only the completion could call the STF
    calls = machine.calls
    before = db_rows(db)
    try:
        streams.complete(stream, action_id, {"ok": True})
    except CompletionNotOutstanding as exc:
        assert (exc.stream, exc.action_id, exc.reason) == (stream, action_id, reason)
    else:
        raise AssertionError(f"the completion of {action_id!r} was applied")
    assert machine.calls == calls, "the completion reached the STF"
    assert db_rows(db) == before, "the completion appended something"


def test_guarantee_5_completions_are_idempotent(tmp_path: Path) -> None:
    machine = Payments()
    streams = Streams(machine, open_store(sqlite_url(tmp_path)))
    streams.submit("p", Charge(amount=5))
    streams.submit("p", Charge(amount=7))
    streams.complete("p", 1, {"ok": True})
    db = db_file(tmp_path)
    assert_completion_refused(streams, machine, db, "p", 1, "completed")
    assert_completion_refused(streams, machine, db, "p", 99, "unknown")
    assert_completion_refused(streams, machine, db, "p", "1", "unknown")
    assert_completion_refused(streams, machine, db, "other", 1, "unknown")
    assert streams.state("p") == PaymentsState(next_id=3, pending={"2": 7}, settled=5)


def test_guarantee_5_late_completion_after_a_restart_is_refused(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    first = Streams(Payments(), open_store(url))
    first.submit("p", Charge(amount=5))
    first.complete("p", 1, {"ok": True})
    machine = Payments()
    restarted = Streams(machine, open_store(url))
    assert restarted.restore("p") == ()
    assert_completion_refused(restarted, machine, db_file(tmp_path), "p", 1, "completed")


def test_guarantee_5_check_catches_an_engine_that_applies_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = Payments()
    streams = Streams(machine, open_store(sqlite_url(tmp_path)))
    streams.submit("p", Charge(amount=5))
    streams.complete("p", 1, {"ok": True})
    monkeypatch.setattr(StreamState, "check_completion", lambda self, action_id: None)
    with pytest.raises(AssertionError, match="was applied"):
        assert_completion_refused(streams, machine, db_file(tmp_path), "p", 1, "completed")


# =====================================================================================
# Guarantee 6: optimistic concurrency
# =====================================================================================


class CountingStore(EventStore):
    """Counts the appends another writer beat."""

    def __init__(self, url: str) -> None:
        super().__init__(open_store(url).backend, url)
        self.conflicts = 0

    def append(self, records: Sequence[EncodedRecord]) -> list[int]:
        try:
            return super().append(records)
        except ConcurrencyConflict:
            self.conflicts += 1
            raise


def assert_ledger_consistent(
    streams: Streams[Any, Any, Any, Any, Any], stream: str, accepted: dict[str, int]
) -> None:
    """No accepted entry is lost or applied twice; versions run 1..n; state is the fold."""
    records = list(streams.records(stream))
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    tokens = [r.input.value.token for r in records if isinstance(r.input, Normal)]
    assert sorted(tokens) == sorted(accepted), "an accepted input is missing or doubled"
    streams.forget(stream)
    state = streams.state(stream)
    assert state.tokens == tokens
    assert state.total == sum(accepted.values())
    assert state == folded_state(streams, stream)


def test_guarantee_6_two_writers_alternating(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    stores = [CountingStore(url), CountingStore(url)]
    writers = [Streams(Ledger(), store) for store in stores]
    accepted: dict[str, int] = {}
    for i in range(12):
        token = f"w{i % 2}-{i}"
        record = writers[i % 2].submit("shared", Entry(token=token, amount=i + 1))
        assert record.version == i + 1
        accepted[token] = i + 1
    # From the third submit on, the writer's cache is one record behind each time.
    assert stores[0].conflicts + stores[1].conflicts == 10
    for writer in writers:
        assert_ledger_consistent(writer, "shared", accepted)


def test_guarantee_6_two_writers_cannot_both_append_one_version(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    codec: Codec[Any, Any, Any, Any] = Codec(Ledger.types)
    meta = Metadata(accepted_at=ManualClock().now())
    mine = codec.encode("s", 1, GENESIS, Normal(Entry(token="mine", amount=1), meta), ())
    theirs = codec.encode("s", 1, GENESIS, Normal(Entry(token="theirs", amount=2), meta), ())
    with fresh_store(url) as a, fresh_store(url) as b:
        a.append([mine])
        with pytest.raises(ConcurrencyConflict) as info:
            b.append([theirs])
    assert (info.value.stream, info.value.version) == ("s", 1)
    assert "'s' version 1" in str(info.value)
    assert [r.body for r in raw_records(url, "s")] == [mine.body]


def test_guarantee_6_loser_fails_clearly_when_out_of_retries(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    loser = Streams(Ledger(), open_store(url), conflict_retries=0)
    winner = Streams(Ledger(), open_store(url))
    loser.submit("s", Entry(token="a", amount=1))
    winner.submit("s", Entry(token="b", amount=2))
    before = db_rows(db_file(tmp_path))
    with pytest.raises(ConcurrencyConflict, match="'s' version 2 was appended by another writer"):
        loser.submit("s", Entry(token="c", amount=3))
    assert db_rows(db_file(tmp_path)) == before
    loser.submit("s", Entry(token="c", amount=3))  # re-read after the conflict: now it fits
    assert_ledger_consistent(loser, "s", {"a": 1, "b": 2, "c": 3})


def test_guarantee_6_completion_of_an_action_another_writer_emitted(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    emitter = Streams(Payments(), open_store(url))
    completer = Streams(Payments(), open_store(url))
    assert completer.outstanding("p") == {}  # its cache holds the empty stream
    emitter.submit("p", Charge(amount=5))
    record = completer.complete("p", 1, {"ok": True})
    assert record.version == 2
    assert completer.state("p").settled == 5


@pytest.mark.parametrize("retries", [0, 5])
def test_guarantee_6_many_threads_each_with_its_own_streams(tmp_path: Path, retries: int) -> None:
    url = sqlite_url(tmp_path)
    Streams(Ledger(), open_store(url)).state("shared")  # create the file before the race
    threads_n, per_thread = 4, 10
    accepted: dict[str, int] = {}
    conflicts: list[ConcurrencyConflict] = []
    returned: list[Record[Any, Any, Any, Any]] = []
    unexpected: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(threads_n)

    def writer(n: int) -> None:
        streams = Streams(Ledger(), open_store(url), conflict_retries=retries)
        start.wait()
        for i in range(per_thread):
            token, amount = f"t{n}-{i}", n * 100 + i
            try:
                record = streams.submit("shared", Entry(token=token, amount=amount))
            except ConcurrencyConflict as exc:
                with lock:
                    conflicts.append(exc)
            except BaseException as exc:
                with lock:
                    unexpected.append(exc)
            else:
                with lock:
                    accepted[token] = amount
                    returned.append(record)
        streams.store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert unexpected == []
    assert len(accepted) + len(conflicts) == threads_n * per_thread
    assert accepted, "no submit succeeded"
    # Each returned record is the one stored at its version.
    reader = Streams(Ledger(), open_store(url))
    stored = {r.version: r for r in reader.records("shared")}
    assert len({r.version for r in returned}) == len(returned)
    for record in returned:
        assert stored[record.version].input == record.input
        assert stored[record.version].hash == record.hash
    assert_ledger_consistent(reader, "shared", accepted)


# =====================================================================================
# Guarantee 8: bad data gets a clear error and loses nothing
# =====================================================================================


def insert_row(db: Path, stream: str, version: int, tag: str, body: bytes) -> None:
    """Store a record behind the library's back, as a bad import or old code would."""
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO fasm_records (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            (stream, version, tag, body),
        )


def test_guarantee_8_invalid_payload_names_the_field(tmp_path: Path) -> None:
    machine = Tally()
    streams = Streams(machine, open_store(sqlite_url(tmp_path)))
    streams.submit("t", Increment())
    calls = machine.calls
    before = db_rows(db_file(tmp_path))
    with pytest.raises(InvalidInput) as info:
        streams.submit("t", {"by": "a few"})
    assert "by" in str(info.value)
    assert "Tally" in str(info.value)
    assert [e["loc"] for e in info.value.errors] == [("by",)]
    assert machine.calls == calls
    assert db_rows(db_file(tmp_path)) == before


def test_guarantee_8_invalid_result_names_the_field(tmp_path: Path) -> None:
    machine = Payments()
    streams = Streams(machine, open_store(sqlite_url(tmp_path)))
    streams.submit("p", Charge(amount=1))
    calls = machine.calls
    before = db_rows(db_file(tmp_path))
    with pytest.raises(InvalidInput) as info:
        streams.complete("p", 1, {"ok": "perhaps"})
    assert [e["loc"] for e in info.value.errors] == [("ok",)]
    assert machine.calls == calls
    assert db_rows(db_file(tmp_path)) == before
    assert streams.outstanding("p") == {1: ChargeCard(amount=1)}


def test_guarantee_8_unknown_record_type_is_named(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    Streams(Tally(), open_store(url)).submit("t", Increment())
    insert_row(db_file(tmp_path), "t", 2, "Refund", b'{"input":{}}')
    before = db_rows(db_file(tmp_path))
    streams = Streams(Tally(), open_store(url))
    with pytest.raises(UnknownRecordType) as info:
        list(streams.records("t"))
    err = info.value
    assert (err.stream, err.version, err.tag) == ("t", 2, "Refund")
    message = str(err)
    assert "'t'" in message
    assert "version 2" in message
    assert "'Refund'" in message
    assert "Tally" in message
    with pytest.raises(UnknownRecordType):
        streams.state("t")
    with pytest.raises(UnknownRecordType):
        streams.submit("t", Increment())
    assert db_rows(db_file(tmp_path)) == before


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"input":{"by":"x"},"actions":[],"meta":{"accepted_at":"2026-01-01T00:00:00Z"},'
        b'"hash":"0"}',
        b'{"input":{"by":1},"actions":[{"id":1,"action":{"previous":0,"current":1}}],'
        b'"meta":{"accepted_at":"2026-01-01T00:00:00Z"},"hash":"0"}',
    ],
    ids=["not-json", "wrong-field-type", "tracked-action-in-a-machine-without"],
)
def test_guarantee_8_corrupt_record_is_reported(tmp_path: Path, body: bytes) -> None:
    url = sqlite_url(tmp_path)
    Streams(Tally(), open_store(url)).submit("t", Increment())
    insert_row(db_file(tmp_path), "t", 2, "Increment", body)
    before = db_rows(db_file(tmp_path))
    streams = Streams(Tally(), open_store(url))
    with pytest.raises(CorruptRecord) as info:
        list(streams.records("t"))
    assert (info.value.stream, info.value.version) == ("t", 2)
    assert "Tally" in str(info.value)
    with pytest.raises(CorruptRecord):
        streams.state("t")
    assert db_rows(db_file(tmp_path)) == before
    # Records before the bad one still read.
    assert [r.version for r in streams.records("t", upto=1)] == [1]
