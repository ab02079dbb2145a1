"""Submitting through the engine: durability, group commit, rejections, idempotency keys."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_support import Jobs, Start, folded, run
from engine_support import Refused as JobRefused
from machines import Fragile, Increment, Ledger, Op, OverLimit, Refused, Tally, TallyState

from fasm_es import (
    Engine,
    EventStore,
    InvalidInput,
    ManualClock,
    Normal,
    RawRecord,
    StoreError,
    open_store,
)
from fasm_es.group_commit import GroupCommit


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


def test_accepted_means_durable(tmp_path: Path) -> None:
    """A submit returns its record only once it is in the store (guarantee 1)."""

    async def scenario() -> None:
        async with Engine(Tally(), sqlite_url(tmp_path)) as engine:
            record = await engine.submit("t1", Increment(by=3), actor="ann")
        assert (record.stream, record.version) == ("t1", 1)
        with open_store(sqlite_url(tmp_path)) as store:
            stored = list(store.read_stream("t1"))
        assert [r.position for r in stored] == [record.position]
        assert record.meta.actor == "ann"

    run(scenario())


def test_rejected_and_invalid_inputs_append_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Tally(), sqlite_url(tmp_path)) as engine:
            await engine.submit("t1", Increment(by=60))
            with pytest.raises(OverLimit):
                await engine.submit("t1", Increment(by=60))
            with pytest.raises(InvalidInput):
                await engine.submit("t1", {"by": "lots"})
            assert await engine.state("t1") == TallyState(value=60)
            assert engine.stats().commits.rejected == 1
        with open_store(sqlite_url(tmp_path)) as store:
            assert store.last_version("t1") == 1

    run(scenario())


def test_concurrent_submits_share_transactions_and_each_gets_its_own_record(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with Engine(Ledger(), sqlite_url(tmp_path), max_batch=64) as engine:
            records = await asyncio.gather(
                *(engine.submit(f"s{i % 7}", {"token": f"tok{i}", "amount": i}) for i in range(200))
            )
            stats = engine.stats().commits
        assert stats.committed == 200
        assert stats.batches < 200  # many inputs per transaction
        assert stats.largest_batch > 1
        for i, record in enumerate(records):
            assert isinstance(record.input, Normal)
            assert record.input.value.token == f"tok{i}"
        with open_store(sqlite_url(tmp_path)) as store:
            for s in range(7):
                state = folded(Ledger(), store, f"s{s}")
                assert sorted(state.tokens) == sorted(f"tok{i}" for i in range(s, 200, 7))

    run(scenario())


def test_a_rejection_in_a_batch_costs_the_other_inputs_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Fragile(), sqlite_url(tmp_path)) as engine:
            outcomes = await asyncio.gather(
                engine.submit("f", Op(by=1)),
                engine.submit("f", Op(by=10, then="reject")),
                engine.submit("f", Op(by=100)),
                engine.submit("g", Op(by=1000, then="crash")),
                engine.submit("g", Op(by=5)),
                return_exceptions=True,
            )
            assert isinstance(outcomes[1], Refused)
            assert isinstance(outcomes[3], ZeroDivisionError)
            assert [o.version for o in (outcomes[0], outcomes[2], outcomes[4])] == [1, 2, 1]
            assert (await engine.state("f")).history == [1, 100]
            assert (await engine.state("g")).history == [5]

    run(scenario())


def test_rejection_after_a_mutating_stf_leaves_the_cache_equal_to_the_log(
    tmp_path: Path,
) -> None:
    """Guarantee 2 through the engine, including a stream with inputs staged before it."""

    async def scenario() -> None:
        async with Engine(Fragile(), sqlite_url(tmp_path)) as engine:
            await engine.submit("f", Op(by=1))
            for then in ("reject", "crash"):
                results = await asyncio.gather(
                    engine.submit("f", Op(by=2)),
                    engine.submit("f", Op(by=50, then=then)),
                    engine.submit("f", Op(by=3)),
                    return_exceptions=True,
                )
                assert isinstance(results[1], Refused | ZeroDivisionError)
            live = await engine.state("f")
            assert live == folded(Fragile(), engine.store, "f")
            assert live.history == [1, 2, 3, 2, 3]
            assert 50 not in live.history

    run(scenario())


def test_jobs_rejected_after_mutation_leave_no_trace(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Jobs(), sqlite_url(tmp_path), handlers={}) as engine:
            await engine.submit("j", Start(job="a"))
            with pytest.raises(JobRefused):
                await engine.submit("j", Start(job="b", fail=True))
            state = await engine.state("j")
            assert state == folded(Jobs(), engine.store, "j")
            assert "b" not in state.jobs

    run(scenario())


def test_a_repeated_idempotency_key_returns_the_original_record(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Tally(), sqlite_url(tmp_path)) as engine:
            first = await engine.submit("t", Increment(by=1), idempotency_key="k1")
            again = await engine.submit("t", Increment(by=1), idempotency_key="k1")
            together = await asyncio.gather(
                engine.submit("t", Increment(by=5), idempotency_key="k2"),
                engine.submit("t", Increment(by=5), idempotency_key="k2"),
            )
            elsewhere = await engine.submit("u", Increment(by=1), idempotency_key="k1")
            assert again == first
            assert together[0] == together[1]
            assert elsewhere.stream == "u"  # keys are per stream
            assert (await engine.state("t")).value == 6
            assert engine.stats().commits.duplicates_by_key == 2
        # After a restart the key is read back from the log.
        async with Engine(Tally(), sqlite_url(tmp_path)) as engine:
            later = await engine.submit("t", Increment(by=1), idempotency_key="k1")
            assert (later.version, later.position) == (first.version, first.position)
            assert (await engine.state("t")).value == 6

    run(scenario())


def test_idempotency_keys_are_remembered_for_a_window_of_records(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Tally(), sqlite_url(tmp_path), idempotency_window=3) as engine:
            await engine.submit("t", Increment(by=1), idempotency_key="old")
            for _ in range(3):
                await engine.submit("t", Increment(by=1))
        async with Engine(Tally(), sqlite_url(tmp_path), idempotency_window=3) as engine:
            # "old" is 4 records back: out of the window, applied again.
            record = await engine.submit("t", Increment(by=1), idempotency_key="old")
            assert record.version == 5

    run(scenario())


def test_inputs_are_stamped_by_the_injected_clock(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        async with Engine(Tally(), sqlite_url(tmp_path), clock=clock) as engine:
            first = await engine.submit("t", Increment())
            clock.advance(90)
            second = await engine.submit("t", Increment())
        assert (second.meta.accepted_at - first.meta.accepted_at).total_seconds() == 90
        assert first.meta.accepted_at == ManualClock().now()

    run(scenario())


def test_bad_stream_ids_and_a_stopped_engine_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = Engine(Tally(), sqlite_url(tmp_path))
        with pytest.raises(RuntimeError, match="not"):
            await engine.submit("t", Increment())
        async with engine:
            for bad in ("", "$fasm-es/outstanding"):
                with pytest.raises(ValueError, match="stream"):
                    await engine.submit(bad, Increment())
        with pytest.raises(RuntimeError, match="stopped"):
            await engine.submit("t", Increment())

    run(scenario())


def test_a_batch_never_outgrows_the_state_cache(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        Engine(Tally(), sqlite_url(tmp_path), cache_size=10, max_batch=20)
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(Engine(Tally(), "memory://").streams, lambda records: None, max_batch=0)


class Unreadable(EventStore):
    """A store whose log cannot be read."""

    def read_log(self, **options: object) -> Iterator[RawRecord]:
        raise StoreError("the disk is gone")


def test_a_failed_start_stops_what_it_started(tmp_path: Path) -> None:
    async def scenario() -> None:
        plain = open_store(sqlite_url(tmp_path))
        engine = Engine(Tally(), Unreadable(plain.backend, plain.url))
        with pytest.raises(StoreError, match="disk is gone"):
            await engine.start()
        assert not [t for t in threading.enumerate() if t.name.startswith("fasm-es-writer")]
        with pytest.raises(RuntimeError, match="not running"):
            await engine.submit("t", Increment())
        plain.close()

    run(scenario())
