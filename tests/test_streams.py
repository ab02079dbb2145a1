"""Streams: the synchronous submit path, reads, time travel and metadata."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from machines import (
    Charge,
    ChargeCard,
    CheckingPayments,
    CheckStatus,
    Fragile,
    FragileState,
    Increment,
    Incremented,
    Op,
    OverLimit,
    Payments,
    Receipt,
    Refused,
    Seen,
    Stamped,
    StampedState,
    Tally,
    TallyState,
    folded_state,
    sqlite_url,
)

from fasm_es import (
    ConcurrencyConflict,
    CorruptRecord,
    EncodedRecord,
    EventStore,
    ManualClock,
    Normal,
    RawRecord,
    Streams,
    Tracked,
    Untracked,
    open_store,
)
from fasm_es.record import RawSnapshot

START = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_submit_returns_the_committed_record(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)), clock=ManualClock(START))
    first = streams.submit("t", Increment(by=2), actor="ann")
    second = streams.submit("t", {"by": 3})
    assert (first.stream, first.version, first.tag) == ("t", 1, "Increment")
    assert first.input == Normal(Increment(by=2), first.meta)
    assert first.meta.accepted_at == START
    assert first.meta.actor == "ann"
    assert first.actions == (Untracked(Incremented(previous=0, current=2)),)
    assert second.version == 2
    assert second.position > first.position
    assert second.hash != first.hash
    assert list(streams.records("t")) == [first, second]


def test_streams_are_independent(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    streams.submit("a", Increment(by=2))
    streams.submit("b", Increment(by=5))
    streams.submit("a", Increment(by=1))
    assert streams.state("a") == TallyState(value=3)
    assert streams.state("b") == TallyState(value=5)
    assert (streams.version("a"), streams.version("b"), streams.version("c")) == (2, 1, 0)
    assert streams.state("c") == TallyState()
    assert list(streams.store.streams()) == ["a", "b"]


def test_records_range(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    for _ in range(5):
        streams.submit("t", Increment())
    assert [r.version for r in streams.records("t", after=1, upto=3)] == [2, 3]
    assert [r.version for r in streams.records("t", after=4)] == [5]
    assert list(streams.records("t", after=5)) == []


def test_state_is_a_copy(tmp_path: Path) -> None:
    streams = Streams(Fragile(), open_store(sqlite_url(tmp_path)))
    streams.submit("f", Op(by=1))
    copy = streams.state("f")
    copy.total = 1000
    copy.history.append(1000)
    assert streams.state("f") == FragileState(total=1, history=[1])


@pytest.mark.parametrize("stream", ["", 7, None])
def test_stream_id_must_be_a_non_empty_string(tmp_path: Path, stream: Any) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    with pytest.raises(ValueError, match="stream id"):
        streams.submit(stream, Increment())
    assert list(streams.store.read_log()) == []


def test_small_cache_still_gives_the_fold(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)), cache_size=1)
    for i in range(6):
        streams.submit(f"s{i % 3}", Increment(by=i + 1))
    assert [streams.state(f"s{i}").value for i in range(3)] == [1 + 4, 2 + 5, 3 + 6]
    for i in range(3):
        assert streams.state(f"s{i}") == folded_state(streams, f"s{i}")


def test_forget_refolds_from_the_log(tmp_path: Path) -> None:
    machine = Tally()
    streams = Streams(machine, open_store(sqlite_url(tmp_path)))
    streams.submit("t", Increment(by=2))
    streams.submit("t", Increment(by=2))
    calls = machine.calls
    streams.state("t")
    assert machine.calls == calls  # served from the cache
    streams.forget("t")
    assert streams.state("t") == TallyState(value=4)
    assert machine.calls == calls + 2  # refolded both records
    streams.forget()
    assert streams.version("t") == 2


def test_outstanding_and_restore_follow_completions(tmp_path: Path) -> None:
    streams = Streams(CheckingPayments(), open_store(sqlite_url(tmp_path)))
    streams.submit("p", Charge(amount=4))
    streams.submit("p", Charge(amount=6, ids="str"))
    assert streams.outstanding("p") == {1: ChargeCard(amount=4), "c2": ChargeCard(amount=6)}
    assert streams.restore("p") == (
        Tracked(1, CheckStatus(amount_due=4)),
        Tracked("c2", CheckStatus(amount_due=6)),
    )
    record = streams.complete("p", "c2", {"ok": True})
    assert record.tag == "Completed"
    assert record.actions == (Untracked(Receipt(amount=6, ok=True)),)
    assert streams.outstanding("p") == {1: ChargeCard(amount=4)}
    assert streams.restore("p") == (Tracked(1, CheckStatus(amount_due=4)),)


def test_default_restore_through_streams(tmp_path: Path) -> None:
    streams = Streams(Payments(), open_store(sqlite_url(tmp_path)))
    streams.submit("p", Charge(amount=4))
    assert streams.restore("p") == (Tracked(1, ChargeCard(amount=4)),)


# -- loading ------------------------------------------------------------------------------


def test_load_gives_the_version_and_hash_of_the_record_it_ends_at(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)), clock=ManualClock())
    for by in range(1, 6):
        streams.submit("t", Increment(by=by))
    hashes = [r.hash for r in streams.records("t")]
    fresh = Streams(Tally(), streams.store)
    for at in range(6):
        loaded = fresh.load("t", at=at)
        assert loaded.state == TallyState(value=at * (at + 1) // 2)
        assert loaded.version == at
        assert loaded.last_hash == (hashes[at - 1] if at else "")
    # The next record chains onto the loaded hash.
    assert fresh.submit("t", Increment()).version == 6
    assert [r.hash for r in streams.records("t")][:5] == hashes


@pytest.mark.parametrize(
    "entry",
    [
        b'{"id":1,"action":{"previous":1,"current":2}}',
        b'{"action":{"previous":1,"current":2},"id":1}',
    ],
)
def test_load_reports_a_tracked_action_in_a_machine_that_declares_none(
    tmp_path: Path, entry: bytes
) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    streams.submit("t", Increment())
    body = (
        b'{"input":{"by":1},"actions":[' + entry + b"],"
        b'"meta":{"accepted_at":"2026-01-01T00:00:00Z"},"hash":"' + b"0" * 64 + b'"}'
    )
    streams.store.append([EncodedRecord("t", 2, "Increment", body, "0" * 64)])
    with pytest.raises(CorruptRecord) as info:
        Streams(Tally(), streams.store).load("t")
    assert (info.value.stream, info.value.version) == ("t", 2)
    assert "Tally" in str(info.value)


# -- time travel --------------------------------------------------------------------------


def test_state_at_a_version_is_the_state_after_that_many_records(tmp_path: Path) -> None:
    streams = Streams(Fragile(), open_store(sqlite_url(tmp_path)))
    live = [streams.state("f")]
    for op in (Op(by=3), Op(by=4, then="reject"), Op(by=5), Op(by=6, then="crash"), Op(by=7)):
        try:
            streams.submit("f", op)
        except (Refused, ZeroDivisionError):
            continue
        live.append(streams.state("f"))
    assert len(live) == 4
    for version, state in enumerate(live):
        assert streams.state("f", at=version) == state
    assert streams.state("f", at=3) == FragileState(total=15, history=[3, 5, 7])
    # Past the end is the current state.
    assert streams.state("f", at=10) == live[-1]


def test_time_travel_does_not_disturb_the_current_state(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    for _ in range(3):
        streams.submit("t", Increment())
    assert streams.state("t", at=1) == TallyState(value=1)
    streams.submit("t", Increment())
    assert streams.state("t") == TallyState(value=4)


# -- metadata reaches the STF -----------------------------------------------------------


def test_metadata_reaches_the_stf_and_survives_replay(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    clock = ManualClock(START)
    streams = Streams(Stamped(), open_store(url), clock=clock)
    streams.submit("s", 1, actor="ann")
    clock.advance(timedelta(minutes=5))
    streams.submit("s", 2)
    clock.advance(0.5)
    streams.submit("s", 3, actor="bob")
    expected = StampedState(
        seen=[
            Seen(at="2026-02-03T04:05:06+00:00", actor="ann"),
            Seen(at="2026-02-03T04:10:06+00:00", actor=None),
            Seen(at="2026-02-03T04:10:06.500000+00:00", actor="bob"),
        ]
    )
    assert streams.state("s") == expected
    # A restart with a clock at another time and zone folds the same values:
    # the STF read them from the log, not from the clock.
    later = ManualClock(datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=9))))
    restarted = Streams(Stamped(), open_store(url), clock=later)
    assert restarted.state("s") == expected
    assert restarted.verify_replay("s").state == expected


def test_rejected_input_leaves_no_trace_of_its_metadata(tmp_path: Path) -> None:
    clock = ManualClock(START)
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)), clock=clock)
    streams.submit("t", Increment(by=60), actor="first")
    clock.advance(1)
    with pytest.raises(OverLimit):
        streams.submit("t", Increment(by=60), actor="rejected")
    clock.advance(1)
    record = streams.submit("t", Increment(by=1), actor="third")
    assert [r.meta.actor for r in streams.records("t")] == ["first", "third"]
    assert record.meta.accepted_at == START + timedelta(seconds=2)


class CallCountingStore(EventStore):
    """An EventStore that notes which of its read methods were called."""

    def __init__(self, inner: EventStore) -> None:
        super().__init__(inner.backend, inner.url)
        self.calls: list[str] = []

    def read_stream(self, stream: str, **options: Any) -> Iterator[RawRecord]:
        self.calls.append("read_stream")
        return super().read_stream(stream, **options)

    def load_snapshot(self, stream: str, *, at: int | None = None) -> RawSnapshot | None:
        self.calls.append("load_snapshot")
        return super().load_snapshot(stream, at=at)

    def last_versions(self, streams: Sequence[str]) -> dict[str, int]:
        self.calls.append("last_versions")
        return super().last_versions(streams)


def test_preload_caches_new_streams_with_one_read_and_leaves_existing_ones() -> None:
    store = CallCountingStore(open_store("memory://"))
    writer = Streams(Tally(), store)
    writer.submit("old", Increment(by=5))
    streams = Streams(Tally(), store)
    store.calls.clear()
    assert streams.preload(["a", "b", "old", "a"]) == 2
    assert store.calls == ["last_versions"]
    store.calls.clear()
    assert streams.submit("a", Increment(by=2)).version == 1
    assert streams.submit("b", Increment(by=3)).version == 1
    assert "read_stream" not in store.calls and "load_snapshot" not in store.calls
    assert streams.submit("old", Increment(by=1)).version == 2  # loaded as before
    assert streams.peek("old").value == 6
    assert streams.preload(["a", "b"]) == 0  # cached already: nothing read
    assert streams.preload(["lonely"]) == 0  # one stream loads by itself


def test_a_stream_created_by_another_writer_after_preload_conflicts_and_reloads() -> None:
    store = open_store("memory://")
    streams = Streams(Tally(), store)
    streams.preload(["a", "b"])
    Streams(Tally(), store).submit("a", Increment(by=10))
    with pytest.raises(ConcurrencyConflict):
        streams.commit([streams.stage("a", streams.normal(Increment(by=1)))])
    record = streams.submit("a", Increment(by=1))
    assert record.version == 2 and streams.peek("a").value == 11
