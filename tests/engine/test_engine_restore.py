"""Restore at start: outstanding tracked actions are dispatched again, found via a checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

from engine_support import Done, Jobs, Start, Work, run, until
from machines import ChargeCard, ChargeResult, CheckingPayments, CheckStatus, Payments

from fasm_es import (
    Actions,
    Engine,
    IdempotencyKey,
    MemoryCheckpoints,
    Streams,
    Tracked,
    open_store,
)
from fasm_es.outstanding import OUTSTANDING_CHECKPOINT, OutstandingIndex
from fasm_es.record import Record


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


async def never(action: object, key: IdempotencyKey) -> Done:
    """A handler that never answers (the process stops first)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def test_restore_dispatches_every_outstanding_action_again_with_the_same_key(
    tmp_path: Path,
) -> None:
    """Guarantee 4: nothing tracked is lost across a stop; the key is stable."""
    keys: list[str] = []

    def work(action: Work, key: IdempotencyKey) -> Done:
        keys.append(str(key))
        return Done(output="after restart")

    async def scenario() -> None:
        async with Engine(Jobs(), url(tmp_path), handlers={Work: never}) as engine:
            await engine.submit("a", Start(job="x"))
            await engine.submit("a", Start(job="y"))
            await engine.submit("b", Start(job="z"))
            await engine.submit("c", Start(job="done-before"))
            await engine.complete("c", "w1", Done(output="ok"))
        async with Engine(Jobs(), url(tmp_path), handlers={Work: work}) as engine:
            await engine.idle(timeout=10)
            stats = engine.stats()
            assert sorted(keys) == ["a/w1", "a/w2", "b/w1"]
            assert (stats.restored_streams, stats.restored_actions) == (2, 3)
            assert (await engine.state("a")).jobs == {"x": "done", "y": "done"}
            assert await engine.outstanding("b") == {}

    run(scenario())


def test_a_machines_restore_chooses_what_is_reissued(tmp_path: Path) -> None:
    checked: list[tuple[CheckStatus, str]] = []

    def check(action: CheckStatus, key: IdempotencyKey) -> ChargeResult:
        checked.append((action, str(key)))
        return ChargeResult(ok=True)

    async def scenario() -> None:
        handlers = {ChargeCard: never}
        async with Engine(CheckingPayments(), url(tmp_path), handlers=handlers) as engine:
            await engine.submit("p", {"amount": 40})
            await engine.submit("p", {"amount": 2, "ids": "str"})
        handlers = {CheckStatus: check, ChargeCard: never}
        async with Engine(CheckingPayments(), url(tmp_path), handlers=handlers) as engine:
            await engine.idle(timeout=10)
            assert sorted(checked, key=lambda c: c[1]) == [
                (CheckStatus(amount_due=40), "p/1"),
                (CheckStatus(amount_due=2), "p/c2"),
            ]
            assert (await engine.state("p")).settled == 42

    run(scenario())


class RestoresAStranger(Payments):
    """A broken restore: re-issues an id the log never emitted."""

    def restore(self, state: object, actions: Actions[ChargeCard | CheckStatus, object]) -> None:
        actions.add(Tracked("nobody", CheckStatus(amount_due=0)))


def test_a_failing_restore_lists_the_streams_actions_as_stuck(tmp_path: Path) -> None:
    """A broken restore neither stops the engine nor loses the actions: they show as stuck."""

    async def scenario() -> None:
        async with Engine(Payments(), url(tmp_path), handlers={ChargeCard: never}) as engine:
            await engine.submit("p", {"amount": 1})
            await engine.submit("q", {"amount": 2})
        calls: list[str] = []

        def charge(action: ChargeCard, key: IdempotencyKey) -> ChargeResult:
            calls.append(str(key))
            return ChargeResult(ok=True)

        handlers = {CheckStatus: never, ChargeCard: charge}
        async with Engine(RestoresAStranger(), url(tmp_path), handlers=handlers) as engine:
            assert engine.stats().restore_failed == 2
            assert engine.in_flight() == []
            stuck = engine.stuck()
            assert [(s.stream, s.action_id, s.attempts) for s in stuck] == [
                ("p", 1, 0),
                ("q", 1, 0),
            ]
            assert "never emitted" in stuck[0].last_error
            engine.retry("p", 1)  # the recorded action, to its handler
            await engine.idle(timeout=10)
            assert calls == ["p/1"]
            assert (await engine.state("p")).settled == 1

    run(scenario())


def test_a_start_reads_only_the_records_after_the_checkpoint(tmp_path: Path) -> None:
    """The outstanding set is a checkpointed position over the log, not a replay at each start."""

    async def scenario() -> None:
        async with Engine(Jobs(), url(tmp_path), handlers={Work: never}) as engine:
            for i in range(20):
                await engine.submit(f"s{i % 4}", Start(job=f"j{i}"))
            for i in range(4):  # s0..s3 each finish their first job
                await engine.complete(f"s{i}", "w1", Done(output="ok"))
        # Appended while no engine runs (another process, say).
        with open_store(url(tmp_path)) as store:
            streams = Streams(Jobs(), store)
            streams.submit("late", Start(job="new"))
            for n in range(1, 6):
                if f"w{n}" in streams.outstanding("s1"):
                    streams.complete("s1", f"w{n}", Done(output="elsewhere"))
            saved = OutstandingIndex.decode(store.load_snapshot(OUTSTANDING_CHECKPOINT).body)  # type: ignore[union-attr]
            assert saved.position == 24  # 20 starts and 4 completions
        handlers = {Work: never}
        async with Engine(Jobs(), url(tmp_path), handlers=handlers) as engine:
            stats = engine.stats()
            assert stats.restore_scanned == 1 + 4  # only the 5 records appended since
            restored = sorted(str(k) for k in engine.in_flight())
            expected = [*sorted(f"s{s}/w{n}" for s in (0, 2, 3) for n in range(2, 6)), "late/w1"]
            assert restored == sorted(expected)

    run(scenario())


def test_without_a_checkpoint_the_start_scans_the_whole_log(tmp_path: Path) -> None:
    checkpoints = MemoryCheckpoints()

    async def scenario() -> None:
        engine = Engine(Jobs(), url(tmp_path), handlers={Work: never}, checkpoints=checkpoints)
        async with engine:
            await engine.submit("a", Start(job="x"))
            await engine.submit("b", Start(job="y"))
        assert checkpoints.load(OUTSTANDING_CHECKPOINT) is not None
        checkpoints.saved.clear()
        engine = Engine(Jobs(), url(tmp_path), handlers={Work: never}, checkpoints=checkpoints)
        async with engine:
            assert engine.stats().restore_scanned == 2
            assert sorted(map(str, engine.in_flight())) == ["a/w1", "b/w1"]

    run(scenario())


def test_the_outstanding_index_follows_emissions_and_completions() -> None:
    async def scenario() -> None:
        engine = Engine(Jobs(), "memory://", handlers={Work: never})
        async with engine:
            await engine.submit("a", Start(job="x"))
            await engine.submit("a", Start(job="y"))
            await engine.submit("b", Start(job="z", timeout=5))
            await engine.complete("a", "w1", Done(output="ok"))
            records: list[Record[object, object, object, object]] = [
                engine.streams.codec.decode(raw) for raw in engine.store.read_log()
            ]
        index = OutstandingIndex()
        assert index.apply_all(records) == 4
        assert index.outstanding == {"a": {"w2"}, "b": {"w1", "t1"}}
        assert index.streams() == ["a", "b"] and index.count() == 3
        again = OutstandingIndex.decode(index.encode())
        assert (again.position, again.outstanding) == (index.position, index.outstanding)
        ints = OutstandingIndex(3, {"s": {1, "1"}})
        assert OutstandingIndex.decode(ints.encode()).outstanding == {"s": {1, "1"}}

    run(scenario())


def test_an_unreadable_checkpoint_means_a_full_scan() -> None:
    checkpoints = MemoryCheckpoints()
    checkpoints.save(OUTSTANDING_CHECKPOINT, 7, b"{not json")
    assert OutstandingIndex.load(checkpoints).position == 0
    checkpoints.save(OUTSTANDING_CHECKPOINT, 8, b'{"position": "x", "outstanding": {}}')
    assert OutstandingIndex.load(checkpoints).position == 0


def test_a_periodic_checkpoint_moves_the_position(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Jobs(), url(tmp_path), handlers={Work: never}) as engine:
            assert await engine.checkpoint() == 0
            await engine.submit("a", Start(job="x"))
            await until(engine.in_flight, "the work is dispatched")
            assert await engine.checkpoint() == 1

    run(scenario())
