"""The engine's main paths on every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio

from engine_support import Done, Jobs, Start, Work, folded, run, until
from machines import Entry, Ledger

from fasm_es import Engine, EventStore, IdempotencyKey, ManualClock, open_store


def second_store(url: str, first: EventStore) -> EventStore:
    """Another connection to the same database (the same object for an in-memory store)."""
    return first if url == "memory://" else open_store(url)


def test_submit_dispatch_restore_and_timers(store_url: str) -> None:
    keys: list[str] = []

    async def hold(action: Work, key: IdempotencyKey) -> Done:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def work(action: Work, key: IdempotencyKey) -> Done:
        keys.append(str(key))
        return Done(output="ok")

    async def scenario() -> None:
        store, clock = open_store(store_url), ManualClock()
        async with Engine(Jobs(), store, handlers={Work: hold}, clock=clock) as engine:
            await engine.submit("j", Start(job="a", timeout=30))
            await engine.submit("k", Start(job="b"), idempotency_key="once")
            again = await engine.submit("k", Start(job="b"), idempotency_key="once")
            assert again.version == 1
        later = second_store(store_url, store)
        async with Engine(Jobs(), later, handlers={Work: work}, clock=clock) as engine:

            async def done() -> bool:
                return (await engine.state("j")).jobs == {"a": "done"}

            await until(done, "the restored work is done")
            clock.advance(30)  # then the restored timer fires
            await engine.idle(timeout=20)
            assert sorted(keys) == ["j/w1", "k/w1"]
            state = await engine.state("j")
            assert (state.jobs, state.seen) == ({"a": "done"}, ["w1", "t1"])
            assert (await engine.state("k")).jobs == {"b": "done"}
        for s in {store, later}:
            s.close()

    run(scenario())


def test_two_engines_share_a_stream(store_url: str) -> None:
    async def scenario() -> None:
        first_store = open_store(store_url)
        other_store = second_store(store_url, first_store)
        first = Engine(Ledger(), first_store, conflict_retries=50, max_batch=4)
        second = Engine(Ledger(), other_store, conflict_retries=50, max_batch=4)
        async with first, second:
            await asyncio.gather(
                *(
                    engine.submit("shared", Entry(token=f"{name}{i}", amount=1))
                    for i in range(25)
                    for engine, name in ((first, "a"), (second, "b"))
                )
            )
        tokens = folded(Ledger(), first_store, "shared").tokens
        assert sorted(tokens) == sorted(f"{n}{i}" for n in "ab" for i in range(25))
        for s in {first_store, other_store}:
            s.close()

    run(scenario())
