"""The event store's contract, checked the same way on memory, SQLite and PostgreSQL.

Each test takes ``store`` or ``target`` (see ``conftest.py`` here) and so runs
once per backend. A backend that passes this file may serve as an event store.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from store_targets import MakeRecords, StoreTarget

from fasm_es import (
    ConcurrencyConflict,
    EncodedRecord,
    EventStore,
    RawRecord,
    open_store,
)


def as_stored(records: Sequence[EncodedRecord], positions: Sequence[int]) -> list[RawRecord]:
    """What reading back ``records``, appended at ``positions``, must return."""
    return [
        RawRecord(r.stream, r.version, p, r.tag, r.body)
        for r, p in zip(records, positions, strict=True)
    ]


def raw(stream: str, version: int, body: bytes = b"{}") -> EncodedRecord:
    """A record for store-level tests, where the body's meaning does not matter."""
    return EncodedRecord(stream, version, "Raw", body, "")


# -- appending and reading back -------------------------------------------------------


def test_append_then_read_stream_returns_identical_records(
    store: EventStore, make_records: MakeRecords
) -> None:
    records = make_records("acct-1", 5)
    positions = store.append(records)
    assert len(positions) == 5
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert list(store.read_stream("acct-1")) == as_stored(records, positions)


def test_bodies_and_stream_ids_round_trip_byte_for_byte(store: EventStore) -> None:
    records = [
        raw("café ☕ 1", 1, '{"name":"Zoë ✓"}'.encode()),
        raw("café ☕ 1", 2, bytes(range(1, 256))),
        raw("x" * 300, 1, b"\x00\xff\x00"),
    ]
    positions = store.append(records)
    assert list(store.read_log()) == as_stored(records, positions)
    assert list(store.read_stream("café ☕ 1")) == as_stored(records[:2], positions[:2])
    assert list(store.read_stream("x" * 300)) == as_stored(records[2:], positions[2:])


def test_positions_increase_in_commit_order_across_appends(
    store: EventStore, make_records: MakeRecords
) -> None:
    a1, a2 = make_records("a", 2), make_records("a", 2, start=3)
    b1 = make_records("b", 1)
    positions = store.append(a1) + store.append(b1) + store.append(a2)
    assert positions == sorted(positions) and len(set(positions)) == 5
    log = list(store.read_log())
    assert [(r.stream, r.version) for r in log] == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("a", 3),
        ("a", 4),
    ]
    assert [r.position for r in log] == positions


def test_read_log_returns_every_stream_in_global_order(
    store: EventStore, make_records: MakeRecords
) -> None:
    appended: list[RawRecord] = []
    for round_ in range(3):
        for stream in ("bravo", "alpha", "charlie"):
            records = make_records(stream, 2, start=2 * round_ + 1)
            appended += as_stored(records, store.append(records))
    assert list(store.read_log()) == appended
    assert list(store.read_stream("alpha")) == [r for r in appended if r.stream == "alpha"]


def test_one_append_may_span_several_streams(store: EventStore, make_records: MakeRecords) -> None:
    a, b = make_records("a", 2), make_records("b", 2)
    batch = [a[0], b[0], a[1], b[1]]
    positions = store.append(batch)
    assert list(store.read_log()) == as_stored(batch, positions)
    assert [r.version for r in store.read_stream("b")] == [1, 2]


def test_a_large_batch_is_stored_in_order(store: EventStore, make_records: MakeRecords) -> None:
    records = make_records("big", 1000)
    positions = store.append(records)
    assert positions == sorted(positions) and len(set(positions)) == 1000
    assert list(store.read_stream("big", page_size=300)) == as_stored(records, positions)


# -- paging ---------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 2, 3, 7, 8, 100])
@pytest.mark.parametrize(
    ("after", "upto"), [(0, None), (2, None), (0, 5), (2, 5), (6, 7), (7, None)]
)
def test_read_stream_pages_within_bounds(
    store: EventStore, make_records: MakeRecords, page_size: int, after: int, upto: int | None
) -> None:
    records = make_records("s", 7)
    stored = as_stored(records, store.append(records))
    expected = [r for r in stored if r.version > after and (upto is None or r.version <= upto)]
    got = list(store.read_stream("s", after=after, upto=upto, page_size=page_size))
    assert got == expected


@pytest.mark.parametrize("page_size", [1, 2, 5, 9, 100])
@pytest.mark.parametrize(("skip", "keep"), [(0, None), (3, None), (0, 4), (2, 5), (8, 1)])
def test_read_log_pages_within_bounds(
    store: EventStore, make_records: MakeRecords, page_size: int, skip: int, keep: int | None
) -> None:
    stored: list[RawRecord] = []
    for stream in ("a", "b", "c"):
        records = make_records(stream, 3)
        stored += as_stored(records, store.append(records))
    # Bounds are positions, which need not be 1..n: take them from the records.
    after = stored[skip - 1].position if skip else 0
    upto = stored[skip + keep - 1].position if keep is not None else None
    expected = stored[skip : skip + keep if keep is not None else None]
    assert list(store.read_log(after=after, upto=upto, page_size=page_size)) == expected


class CountingBackend:
    """Delegates to a backend and records each paged read (kind, limit, rows returned)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.reads: list[tuple[str, int, int]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def select_stream(self, stream: str, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        page: list[RawRecord] = self.inner.select_stream(stream, gt, lte, limit)  # type: ignore[attr-defined]
        self.reads.append(("stream", limit, len(page)))
        return page

    def select_log(self, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        page: list[RawRecord] = self.inner.select_log(gt, lte, limit)  # type: ignore[attr-defined]
        self.reads.append(("log", limit, len(page)))
        return page


def test_reads_fetch_one_page_at_a_time(store: EventStore, make_records: MakeRecords) -> None:
    store.append(make_records("s", 5))
    counting = CountingBackend(store.backend)
    lazy = EventStore(counting, store.url)  # type: ignore[arg-type]

    stream = lazy.read_stream("s", page_size=2)
    assert counting.reads == []  # nothing is read before the first record is asked for
    assert [next(stream).version for _ in range(2)] == [1, 2]
    assert counting.reads == [("stream", 2, 2)]
    assert next(stream).version == 3
    assert counting.reads == [("stream", 2, 2), ("stream", 2, 2)]
    assert [r.version for r in stream] == [4, 5]
    assert counting.reads[2:] == [("stream", 2, 1)]

    counting.reads.clear()
    log = lazy.read_log(page_size=1)
    assert next(log).version == 1
    assert counting.reads == [("log", 1, 1)]
    assert len(list(log)) == 4
    # Never more than a page in memory: each read asked for one record.
    assert all(limit == 1 and rows <= 1 for _, limit, rows in counting.reads)


# -- optimistic concurrency and atomicity ---------------------------------------------


def test_second_writer_of_a_version_gets_a_conflict_naming_it(target: StoreTarget) -> None:
    first, second = target.open(), target.open()
    first.append([raw("acct-7", 1, b'{"by":"first"}')])
    with pytest.raises(ConcurrencyConflict, match=r"stream 'acct-7' version 1\b") as info:
        second.append([raw("acct-7", 1, b'{"by":"second"}')])
    assert (info.value.stream, info.value.version) == ("acct-7", 1)
    for reader in (first, second):
        assert [r.body for r in reader.read_log()] == [b'{"by":"first"}']
    # The loser re-reads and appends the next version.
    second.append([raw("acct-7", second.last_version("acct-7") + 1, b'{"by":"second"}')])
    assert [r.body for r in first.read_stream("acct-7")] == [b'{"by":"first"}', b'{"by":"second"}']


def test_racing_writers_exactly_one_wins_each_version(target: StoreTarget) -> None:
    writers = [target.open() for _ in range(4)]
    rounds = 8
    outcomes: list[tuple[int, int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(writers))

    def write(index: int, store: EventStore) -> None:
        for version in range(1, rounds + 1):
            barrier.wait(timeout=60)
            try:
                store.append([raw("contested", version, f'{{"writer":{index}}}'.encode())])
                outcome = "won"
            except ConcurrencyConflict as exc:
                outcome = f"conflict {exc.stream} {exc.version}"
            with lock:
                outcomes.append((version, index, outcome))

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(outcomes) == rounds * len(writers)
    stored = list(writers[0].read_stream("contested"))
    assert [r.version for r in stored] == list(range(1, rounds + 1))
    for version in range(1, rounds + 1):
        results = {i: o for v, i, o in outcomes if v == version}
        winners = [i for i, o in results.items() if o == "won"]
        assert len(winners) == 1, results
        assert stored[version - 1].body == f'{{"writer":{winners[0]}}}'.encode()
        losers = {o for o in results.values() if o != "won"}
        assert losers == {f"conflict contested {version}"}
    assert len(list(writers[1].read_log())) == rounds


@pytest.mark.parametrize("conflicting_index", [0, 1, 2])
def test_a_batch_with_one_taken_version_stores_nothing(
    store: EventStore, conflicting_index: int
) -> None:
    store.append([raw("taken", 1), raw("taken", 2)])
    before = list(store.read_log())
    batch = [raw("fresh-a", 1), raw("fresh-b", 1), raw("fresh-b", 2)]
    batch.insert(conflicting_index, raw("taken", 2, b'{"late":true}'))
    with pytest.raises(ConcurrencyConflict, match="'taken' version 2") as info:
        store.append(batch)
    assert (info.value.stream, info.value.version) == ("taken", 2)
    assert list(store.read_log()) == before
    assert store.last_version("fresh-a") == store.last_version("fresh-b") == 0
    assert list(store.streams()) == ["taken"]
    # The store still works, and positions still increase.
    positions = store.append([raw("fresh-a", 1)])
    assert positions[0] > before[-1].position


def test_conflict_names_the_first_taken_version_of_a_multi_record_append(
    store: EventStore,
) -> None:
    store.append([raw("s", 1), raw("s", 2), raw("s", 3)])
    with pytest.raises(ConcurrencyConflict) as info:
        store.append([raw("s", 3), raw("s", 4)])
    assert (info.value.stream, info.value.version) == ("s", 3)
    assert store.last_version("s") == 3


@pytest.mark.parametrize(
    "versions",
    [[1, 3], [1, 1], [2, 1], [1, 2, 4]],
    ids=["gap", "duplicate", "backwards", "gap-later"],
)
def test_records_of_one_stream_in_one_append_must_be_consecutive(
    store: EventStore, versions: list[int]
) -> None:
    batch = [raw("other", 1)] + [raw("s", v) for v in versions]
    with pytest.raises(ConcurrencyConflict, match="consecutive"):
        store.append(batch)
    assert list(store.read_log()) == []


def test_consecutive_records_of_one_stream_may_interleave_with_others(store: EventStore) -> None:
    batch = [raw("s", 1), raw("t", 1), raw("s", 2), raw("t", 2), raw("s", 3)]
    store.append(batch)
    assert store.last_version("s") == 3 and store.last_version("t") == 2


# -- queries --------------------------------------------------------------------------


def test_last_version_last_position_and_streams(
    store: EventStore, make_records: MakeRecords
) -> None:
    positions: list[int] = []
    for stream, count in (("delta", 3), ("alpha", 1), ("charlie", 4), ("bravo", 2)):
        positions += store.append(make_records(stream, count))
    assert store.last_version("charlie") == 4
    assert store.last_version("alpha") == 1
    assert store.last_version("unknown") == 0
    assert store.last_position() == positions[-1] == max(positions)
    names = ["alpha", "bravo", "charlie", "delta"]
    assert list(store.streams()) == names
    for page_size in (1, 2, 3, 4, 5):
        assert list(store.streams(page_size=page_size)) == names


def test_last_versions_answers_for_many_streams_in_one_call(
    store: EventStore, make_records: MakeRecords
) -> None:
    for stream, count in (("delta", 3), ("alpha", 1), ("charlie", 4)):
        store.append(make_records(stream, count))
    asked = ["charlie", "unknown", "alpha", "charlie", "delta", "also-unknown"]
    assert store.last_versions(asked) == {"charlie": 4, "alpha": 1, "delta": 3}
    assert store.last_versions([]) == {}
    many = [f"new-{i}" for i in range(1200)] + ["delta"]  # more than one IN list on SQLite
    assert store.last_versions(many) == {"delta": 3}


def test_an_empty_store(store: EventStore) -> None:
    assert list(store.read_stream("nothing")) == []
    assert list(store.read_stream("nothing", after=3, upto=9)) == []
    assert list(store.read_log()) == []
    assert list(store.read_log(after=10)) == []
    assert list(store.streams()) == []
    assert store.last_version("nothing") == 0
    assert store.last_position() == 0
    assert store.append([]) == []
    assert store.last_position() == 0


# -- connections and durability -------------------------------------------------------


def test_another_connection_sees_committed_records(
    target: StoreTarget, make_records: MakeRecords
) -> None:
    writer, reader = target.open(), target.open()
    records = make_records("shared", 3)
    positions = writer.append(records)
    assert list(reader.read_stream("shared")) == as_stored(records, positions)
    assert reader.last_position() == positions[-1]


@pytest.mark.backends("sqlite", "postgres")
def test_a_reopened_store_holds_what_was_appended(
    target: StoreTarget, make_records: MakeRecords
) -> None:
    records = make_records("durable", 4) + make_records("other", 2)
    with open_store(target.url) as first:
        positions = first.append(records)
    with open_store(target.url) as again:
        assert list(again.read_log()) == as_stored(records, positions)
        assert again.last_version("durable") == 4
        # Appends continue after the stored positions.
        assert again.append(make_records("durable", 1, start=5))[0] > positions[-1]


def test_closing_twice_is_harmless(target: StoreTarget) -> None:
    store = target.open()
    store.append([raw("s", 1)])
    store.close()
    store.close()
    with open_store(target.url) if target.durable else target.open() as again:
        assert again.last_version("s") == 1
