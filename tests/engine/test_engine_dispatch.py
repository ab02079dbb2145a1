"""Tracked actions: handlers, idempotent completions, retries, stuck actions."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from engine_support import Done, Jobs, Sleeps, Start, Work, folded, run, until

from fasm_es import (
    Completed,
    CompletionNotOutstanding,
    Engine,
    IdempotencyKey,
    RetryPolicy,
    Tracked,
)


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


def test_handlers_get_the_action_and_its_key_and_their_result_comes_back(
    tmp_path: Path,
) -> None:
    seen: list[tuple[Work, IdempotencyKey]] = []

    def plain(action: Work, key: IdempotencyKey) -> Done:
        seen.append((action, key))
        return Done(output=f"did {action.job}")

    async def asynchronous(action: Work, key: IdempotencyKey) -> dict[str, str]:
        seen.append((action, key))
        return {"kind": "done", "output": "async"}  # validated into Done

    async def scenario() -> None:
        for handler in (plain, asynchronous):
            seen.clear()
            machine = Jobs()
            async with Engine(machine, url(tmp_path), handlers={Work: handler}) as engine:
                stream = f"j-{handler.__name__}"
                await engine.submit(stream, Start(job="a"))
                await engine.idle(timeout=10)
                state = await engine.state(stream)
                assert state.jobs == {"a": "done"}
                assert seen == [(Work(job="a"), IdempotencyKey(stream, "w1"))]
                assert str(seen[0][1]) == f"{stream}/w1"
                (_, completion) = list(engine.streams.records(stream))
                assert isinstance(completion.input, Completed)
                assert completion.meta.actor == "fasm-es/handler"
                assert completion.meta.causation_id == f"{stream}/w1"
                assert await engine.outstanding(stream) == {}

    run(scenario())


def test_duplicate_late_and_unknown_completions_never_reach_the_stf(tmp_path: Path) -> None:
    """Guarantee 5: not outstanding means the STF never sees it; it is counted and listed."""
    release = asyncio.Event()

    async def slow(action: Work, key: IdempotencyKey) -> Done:
        await release.wait()
        return Done(output="from the handler")

    async def scenario() -> None:
        machine = Jobs()
        async with Engine(machine, url(tmp_path), handlers={Work: slow}) as engine:
            await engine.submit("j", Start(job="a"))
            # The result arrives from outside first (a webhook, say) ...
            await engine.complete("j", "w1", Done(output="from outside"))
            # ... then again, twice at once, and for an id never emitted.
            outcomes = await asyncio.gather(
                engine.complete("j", "w1", Done(output="again")),
                engine.complete("j", "w1", Done(output="and again")),
                engine.complete("j", "w9", Done(output="unknown")),
                return_exceptions=True,
            )
            assert all(isinstance(o, CompletionNotOutstanding) for o in outcomes)
            assert [o.reason for o in outcomes] == ["completed", "completed", "unknown"]  # type: ignore[union-attr]
            # The handler still waiting on the settled action was stopped.
            await engine.idle(timeout=10)
            release.set()
            stats = engine.stats()
            assert machine.completions == ["w1"]
            assert (await engine.state("j")).seen == ["w1"]
            assert folded(Jobs(), engine.store, "j").seen == ["w1"]
            assert stats.completions_ignored == 3
            assert stats.commits.completions_duplicate == 2
            assert stats.commits.completions_unknown == 1
            assert stats.dispatch.results_accepted == 0
            ignored = engine.ignored_completions()
            assert [(c.stream, c.action_id) for c in ignored] == [
                ("j", "w1"),
                ("j", "w1"),
                ("j", "w9"),
            ]
            assert engine.store.last_version("j") == 2

    run(scenario())


def test_a_failing_handler_retries_with_backoff_then_is_stuck_and_can_be_retried(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    broken = True

    def flaky(action: Work, key: IdempotencyKey) -> Done:
        calls.append(str(key))
        if broken:
            raise ConnectionError("service down")
        return Done(output="finally")

    policy = RetryPolicy(max_attempts=4, base_delay=0.5, multiplier=3, max_delay=3, jitter=0.5)
    sleeps = Sleeps()

    async def scenario() -> None:
        nonlocal broken
        engine = Engine(
            Jobs(),
            url(tmp_path),
            handlers={Work: flaky},
            retry=policy,
            rng=random.Random(42),
            retry_sleep=sleeps,
        )
        async with engine:
            await engine.submit("j", Start(job="a"))
            await until(engine.stuck, "the action is stuck")
            (stuck,) = engine.stuck()
            assert (stuck.stream, stuck.action_id, stuck.action) == ("j", "w1", Work(job="a"))
            assert stuck.attempts == 4
            assert stuck.last_error == "ConnectionError: service down"
            assert calls == ["j/w1"] * 4
            expected = random.Random(42)
            assert sleeps.delays == [policy.delay(n, expected) for n in (1, 2, 3)]
            assert sleeps.delays[0] <= 0.5 and sleeps.delays[2] <= 3
            assert sleeps.delays[0] < sleeps.delays[1] < sleeps.delays[2]
            # Never dropped: still outstanding in the log.
            assert "w1" in await engine.outstanding("j")
            assert engine.stats().stuck == 1
            with pytest.raises(LookupError, match="not stuck"):
                engine.retry("j", "w2")
            broken = False
            engine.retry("j", "w1")
            await engine.idle(timeout=10)
            assert engine.stuck() == []
            assert (await engine.state("j")).jobs == {"a": "done"}
            assert calls == ["j/w1"] * 5

    run(scenario())


def test_an_action_without_a_handler_is_stuck_at_once_until_one_is_registered(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with Engine(Jobs(), url(tmp_path)) as engine:
            await engine.submit("j", Start(job="a"))
            await until(engine.stuck, "the action is stuck")
            (stuck,) = engine.stuck()
            assert "no handler is registered for tracked action type Work" in stuck.last_error
            engine.register(Work, lambda action, key: Done(output="late handler"))
            engine.retry("j", "w1")
            await engine.idle(timeout=10)
            assert (await engine.state("j")).jobs == {"a": "done"}

    run(scenario())


def test_a_result_the_machine_refuses_counts_as_a_failed_attempt(tmp_path: Path) -> None:
    def wrong(action: Work, key: IdempotencyKey) -> Any:
        return {"kind": "done", "output": ["not", "a", "string"]}

    async def scenario() -> None:
        policy = RetryPolicy(max_attempts=2, base_delay=0)
        async with Engine(Jobs(), url(tmp_path), handlers={Work: wrong}, retry=policy) as engine:
            await engine.submit("j", Start(job="a"))
            await until(engine.stuck, "the action is stuck")
            assert engine.stuck()[0].last_error.startswith("InvalidInput")
            assert engine.stats().dispatch.handler_failures == 2

    run(scenario())


def test_completing_a_stuck_action_from_outside_settles_it(tmp_path: Path) -> None:
    def down(action: Work, key: IdempotencyKey) -> Done:
        raise TimeoutError("no answer")

    async def scenario() -> None:
        policy = RetryPolicy(max_attempts=1)
        async with Engine(Jobs(), url(tmp_path), handlers={Work: down}, retry=policy) as engine:
            await engine.submit("j", Start(job="a"))
            await until(engine.stuck, "the action is stuck")
            await engine.complete("j", "w1", Done(output="by an operator"))
            assert engine.stuck() == []
            assert (await engine.state("j")).jobs == {"a": "done"}

    run(scenario())


def test_retry_policy_bounds() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)
    policy = RetryPolicy(base_delay=1, multiplier=2, max_delay=5, jitter=0)
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


def test_the_seeds_duplicate_payment_success_cannot_undo_a_booking(tmp_path: Path) -> None:
    """fasm's dentist example: a second Success for a confirmed booking never reaches the STF."""
    from examples.dentist_booking import (
        AptType,
        Day,
        DentistBooking,
        Preauth,
        RequestSlot,
        Success,
    )
    from examples.dentist_booking.machine import Release, RequestStatus

    released: list[str] = []

    def preauth(action: Preauth, key: IdempotencyKey) -> Success:
        return Success(amount_cents=action.amount_cents)

    def release(action: Release, key: IdempotencyKey) -> object:
        released.append(str(key))
        raise AssertionError("nothing may be released")

    async def scenario() -> None:
        handlers = {Preauth: preauth, Release: release}
        async with Engine(DentistBooking(), url(tmp_path), handlers=handlers) as engine:
            booked = await engine.submit(
                "clinic",
                RequestSlot(
                    patient="ann", apt_type=AptType.CLEANING, day=Day.MON, start_minute=600
                ),
            )
            (preauth_action,) = [a for a in booked.actions if isinstance(a, Tracked)]
            await engine.idle(timeout=10)
            duplicate = Success(amount_cents=preauth_action.action.amount_cents)
            with pytest.raises(CompletionNotOutstanding):
                await engine.complete("clinic", preauth_action.id, duplicate)
            await engine.idle(timeout=10)
            state = await engine.state("clinic")
            (request,) = state.requests.values()
            assert request.status == RequestStatus.CONFIRMED
            assert state.bookings  # the booking stays
            assert released == []

    run(scenario())
