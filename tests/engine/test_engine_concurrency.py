"""Optimistic concurrency through the engine: several writers, one stream (guarantee 6)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from engine_support import Done, Jobs, Start, Work, folded, run
from machines import Entry, Ledger

from fasm_es import (
    ConcurrencyConflict,
    Engine,
    EventStore,
    IdempotencyKey,
    Streams,
    open_store,
)
from fasm_es.record import EncodedRecord


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


def test_two_engines_on_one_database_lose_no_input_and_apply_none_twice(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        first = Engine(Ledger(), url(tmp_path), conflict_retries=50, max_batch=8)
        second = Engine(Ledger(), url(tmp_path), conflict_retries=50, max_batch=8)
        async with first, second:
            submits = [
                engine.submit(stream, Entry(token=f"{name}-{i}", amount=1))
                for i in range(60)
                for engine, name in ((first, "a"), (second, "b"))
                for stream in ("shared", f"own-{name}")
            ]
            records = await asyncio.gather(*submits)
            conflicts = first.stats().commits.conflicts + second.stats().commits.conflicts
        with open_store(url(tmp_path)) as store:
            shared = folded(Ledger(), store, "shared")
            assert sorted(shared.tokens) == sorted(f"{n}-{i}" for n in "ab" for i in range(60))
            assert len(set(shared.tokens)) == 120
            assert store.last_version("shared") == 120
            for name in "ab":
                own = folded(Ledger(), store, f"own-{name}")
                assert own.tokens == [f"{name}-{i}" for i in range(60)]
        versions = sorted(r.version for r in records if r.stream == "shared")
        assert versions == list(range(1, 121))
        assert conflicts >= 0  # reported; how many depends on scheduling

    run(scenario())


def test_a_conflict_reloads_the_stream_and_reruns_the_stf(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Ledger(), url(tmp_path)) as engine:
            await engine.submit("s", Entry(token="mine-1", amount=1))  # now cached
            with open_store(url(tmp_path)) as other:
                Streams(Ledger(), other).submit("s", Entry(token="theirs", amount=10))
            record = await engine.submit("s", Entry(token="mine-2", amount=1))
            assert record.version == 3
            assert engine.stats().commits.conflicts == 1
            state = await engine.state("s")
            assert state.tokens == ["mine-1", "theirs", "mine-2"]
            assert state == folded(Ledger(), engine.store, "s")

    run(scenario())


class Contested(EventStore):
    """A store where another writer always wins stream ``hot``."""

    def append(self, records: Sequence[EncodedRecord]) -> list[int]:
        for r in records:
            if r.stream == "hot":
                raise ConcurrencyConflict(r.stream, r.version, "simulated")
        return super().append(records)


def test_a_stream_that_keeps_conflicting_fails_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        plain = open_store(url(tmp_path))
        store = Contested(plain.backend, plain.url)
        async with Engine(Ledger(), store, conflict_retries=3) as engine:
            hot, cold = await asyncio.gather(
                engine.submit("hot", Entry(token="h", amount=1)),
                engine.submit("cold", Entry(token="c", amount=1)),
                return_exceptions=True,
            )
            assert isinstance(hot, ConcurrencyConflict)
            assert "reload the stream and retry" in str(hot)
            assert not isinstance(cold, BaseException) and cold.version == 1
            assert engine.stats().commits.conflicts == 1 + 3  # the batch, then 3 retries
        assert store.last_version("hot") == 0
        store.close()

    run(scenario())


def test_two_engines_completing_one_action_apply_it_once(tmp_path: Path) -> None:
    """Both engines restore the same outstanding work; one result wins, the other is refused."""
    gate = asyncio.Event()

    async def held(action: Work, key: IdempotencyKey) -> Done:
        await gate.wait()
        return Done(output="held")

    async def scenario() -> None:
        async with Engine(Jobs(), url(tmp_path), handlers={Work: held}) as engine:
            await engine.submit("j", Start(job="a"))
        first = Engine(Jobs(), url(tmp_path), handlers={Work: held})
        second = Engine(Jobs(), url(tmp_path), handlers={Work: held})
        async with first, second:
            assert first.in_flight() == second.in_flight() == [IdempotencyKey("j", "w1")]
            gate.set()
            await first.idle(timeout=10)
            await second.idle(timeout=10)
            refused = (
                first.stats().dispatch.results_not_outstanding
                + second.stats().dispatch.results_not_outstanding
            )
            accepted = (
                first.stats().dispatch.results_accepted + second.stats().dispatch.results_accepted
            )
            assert (accepted, refused) == (1, 1)
        with open_store(url(tmp_path)) as store:
            assert folded(Jobs(), store, "j").seen == ["w1"]
            assert store.last_version("j") == 2

    run(scenario())


def test_an_engine_answers_from_the_log_when_another_used_the_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            Engine(Ledger(), url(tmp_path)) as first,
            Engine(Ledger(), url(tmp_path)) as second,
        ):
            await second.submit("s", Entry(token="x", amount=1))  # cache "s" in second
            original = await first.submit("s", Entry(token="pay", amount=5), idempotency_key="k")
            again = await second.submit("s", Entry(token="pay", amount=5), idempotency_key="k")
            assert (again.version, again.position) == (original.version, original.position)
            assert (await second.state("s")).tokens == ["x", "pay"]

    run(scenario())


@pytest.mark.parametrize("retries", [0])
def test_conflict_retries_can_be_turned_off(tmp_path: Path, retries: int) -> None:
    async def scenario() -> None:
        async with Engine(Ledger(), url(tmp_path), conflict_retries=retries) as engine:
            await engine.submit("s", Entry(token="a", amount=1))
            with open_store(url(tmp_path)) as other:
                Streams(Ledger(), other).submit("s", Entry(token="b", amount=1))
            with pytest.raises(ConcurrencyConflict):
                await engine.submit("s", Entry(token="c", amount=1))
            # The failed try reloaded nothing wrong: the next submit builds on the log.
            record = await engine.submit("s", Entry(token="d", amount=1))
            assert record.version == 3
            assert (await engine.state("s")).tokens == ["a", "b", "d"]

    run(scenario())


def test_a_key_used_by_another_engine_is_found_after_the_state_was_evicted(
    tmp_path: Path,
) -> None:
    """Guarantee 6: a reloaded stream brings the other engine's keys along with its records."""

    async def scenario() -> None:
        async with (
            Engine(Ledger(), url(tmp_path)) as first,
            Engine(Ledger(), url(tmp_path), cache_size=1, max_batch=1) as second,
        ):
            # second reads the keys of "s" and caches its state.
            await second.submit("s", Entry(token="x", amount=1), idempotency_key="k0")
            original = await first.submit("s", Entry(token="pay", amount=5), idempotency_key="k")
            # A submit without a key to another stream evicts the state of "s" only.
            await second.submit("t", Entry(token="other", amount=1))
            again = await second.submit("s", Entry(token="pay", amount=5), idempotency_key="k")
            assert (again.version, again.position) == (original.version, original.position)
            assert (await second.state("s")).tokens == ["x", "pay"]

    run(scenario())
