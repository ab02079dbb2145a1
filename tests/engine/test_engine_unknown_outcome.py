"""Commits of unknown outcome: the database fails during commit, and the records may be stored.

A connection lost while committing leaves the caller with an error although
the transaction may have been stored. Guarantee 4 (every tracked action is
carried out or stays visibly outstanding) must still hold while the engine
goes on: the engine rereads such streams and dispatches what is outstanding,
without waiting for a restart, and without dispatching anything twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from engine_support import Done, Jobs, Sleeps, Start, Work, run

from fasm_es import (
    Engine,
    EventStore,
    IdempotencyKey,
    RetryPolicy,
    StoreUnavailable,
    open_store,
)
from fasm_es.record import EncodedRecord


class FlakyBackend:
    """A real SQLite backend that can fail like a database whose connection breaks.

    ``lose_answer`` makes the next appends store their records and then raise
    (the commit reached the disk, its acknowledgement did not); ``down``
    makes every call raise without doing anything.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lose_answer = 0
        self.down = False
        self.calls_while_down = 0

    def insert(self, records: Sequence[EncodedRecord]) -> list[int]:
        self._check()
        if self.lose_answer:
            self.lose_answer -= 1
            self.inner.insert(records)
            raise StoreUnavailable("connection lost during commit (test)")
        result: list[int] = self.inner.insert(records)
        return result

    def _check(self) -> None:
        if self.down:
            self.calls_while_down += 1
            raise StoreUnavailable("database unreachable (test)")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name == "close":
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return attr(*args, **kwargs)

        return call


def flaky_store(tmp_path: Path) -> tuple[EventStore, FlakyBackend]:
    inner = open_store(f"sqlite:///{tmp_path / 'engine.db'}")
    backend = FlakyBackend(inner.backend)
    return EventStore(backend, inner.url), backend


def recorder(calls: list[str]) -> Callable[[Work, IdempotencyKey], Done]:
    def work(action: Work, key: IdempotencyKey) -> Done:
        calls.append(str(key))
        return Done(output=f"did {action.job}")

    return work


def test_a_record_stored_by_a_failed_commit_has_its_action_dispatched(tmp_path: Path) -> None:
    """Guarantee 4: the caller got an error, the record is in the log, its action is carried out."""
    store, backend = flaky_store(tmp_path)
    calls: list[str] = []

    async def scenario() -> None:
        async with Engine(Jobs(), store, handlers={Work: recorder(calls)}) as engine:
            backend.lose_answer = 1
            with pytest.raises(StoreUnavailable):
                await engine.submit("a", Start(job="x"))
            await engine.idle(timeout=10)
            assert calls == ["a/w1"]
            assert (await engine.state("a")).jobs == {"x": "done"}
            assert await engine.outstanding("a") == {}
            assert engine.stats().commits.unknown_outcomes == 1

    run(scenario())


def test_a_retry_under_the_same_key_gets_the_stored_record_and_nothing_runs_twice(
    tmp_path: Path,
) -> None:
    store, backend = flaky_store(tmp_path)
    calls: list[str] = []

    async def scenario() -> None:
        async with Engine(Jobs(), store, handlers={Work: recorder(calls)}) as engine:
            backend.lose_answer = 1
            with pytest.raises(StoreUnavailable):
                await engine.submit("a", Start(job="x"), idempotency_key="k1")
            again = await engine.submit("a", Start(job="x"), idempotency_key="k1")
            assert again.version == 1
            await engine.idle(timeout=10)
            assert calls == ["a/w1"]
            state = await engine.state("a")
            assert state.jobs == {"x": "done"} and state.next_id == 2

    run(scenario())


def test_while_the_store_stays_down_the_engine_keeps_trying_then_dispatches(
    tmp_path: Path,
) -> None:
    store, backend = flaky_store(tmp_path)
    calls: list[str] = []
    sleeps = Sleeps()

    async def sleep(delay: float) -> None:
        await sleeps(delay)
        if len(sleeps.delays) == 3:
            backend.down = False

    async def scenario() -> None:
        engine = Engine(Jobs(), store, handlers={Work: recorder(calls)}, retry_sleep=sleep)
        async with engine:
            backend.lose_answer = 1
            with pytest.raises(StoreUnavailable):
                # The commit is stored, then the database stays away.
                await engine.submit("a", Start(job="x"))
            backend.down = True
            await engine.idle(timeout=10)
            assert backend.calls_while_down >= 3
            assert len(sleeps.delays) == 3
            assert calls == ["a/w1"]
            assert await engine.outstanding("a") == {}

    run(scenario())


def test_a_failed_commit_that_stored_nothing_dispatches_nothing(tmp_path: Path) -> None:
    store, backend = flaky_store(tmp_path)
    calls: list[str] = []

    async def scenario() -> None:
        async with Engine(Jobs(), store, handlers={Work: recorder(calls)}) as engine:
            backend.down = True
            with pytest.raises(StoreUnavailable):
                await engine.submit("a", Start(job="x"))
            backend.down = False
            await engine.idle(timeout=10)
            assert calls == []
            assert store.last_version("a") == 0
            record = await engine.submit("a", Start(job="y"))
            assert record.version == 1
            await engine.idle(timeout=10)
            assert calls == ["a/w1"]

    run(scenario())


def test_a_stuck_action_on_a_stream_in_doubt_stays_stuck(tmp_path: Path) -> None:
    """Rereading a stream after a failed commit is not an operator's retry."""
    store, backend = flaky_store(tmp_path)
    calls: list[str] = []

    def work(action: Work, key: IdempotencyKey) -> Done:
        calls.append(str(key))
        if action.job == "broken":
            raise RuntimeError("the service refuses this job")
        return Done(output="ok")

    async def scenario() -> None:
        policy = RetryPolicy(max_attempts=1)
        async with Engine(Jobs(), store, handlers={Work: work}, retry=policy) as engine:
            await engine.submit("a", Start(job="broken"))
            await engine.idle(timeout=10)
            assert [s.action_id for s in engine.stuck()] == ["w1"]
            backend.lose_answer = 1
            with pytest.raises(StoreUnavailable):
                await engine.submit("a", Start(job="fine"))
            await engine.idle(timeout=10)
            assert calls == ["a/w1", "a/w2"]
            assert [s.action_id for s in engine.stuck()] == ["w1"]

    run(scenario())
