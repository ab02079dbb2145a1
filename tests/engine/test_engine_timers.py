"""Durable timers: they fire when the injected clock reaches them, and survive restarts."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from engine_support import Done, Jobs, JobsState, Start, Work, run, until

from fasm_es import Actions, Engine, IdempotencyKey, ManualClock, Timer, TimerFired
from fasm_es.timers import sleep_until


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


async def never(action: Work, key: IdempotencyKey) -> Done:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


JobsEngine = Engine[JobsState, object, object, object, object]


async def status(engine: JobsEngine, job: str) -> str:
    return (await engine.state("j")).jobs[job]


async def has(engine: JobsEngine, job: str, expected: str) -> bool:
    """Whether job ``job`` of stream ``j`` has status ``expected``."""
    return await status(engine, job) == expected


def test_a_timer_fires_when_the_clock_reaches_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        start = clock.now()
        async with Engine(Jobs(), url(tmp_path), handlers={Work: never}, clock=clock) as engine:
            await engine.submit("j", Start(job="a", timeout=60))
            clock.advance(59)
            for _ in range(20):  # give a wrongly early timer every chance to fire
                await asyncio.sleep(0)
            assert await status(engine, "a") == "running:job1"
            clock.advance(1)
            await until(lambda: has(engine, "a", "expired"), "the timer expires the job")
            *_, fired = engine.streams.records("j")
            assert fired.input.result == TimerFired(at=start + timedelta(seconds=60))  # type: ignore[union-attr]
            assert fired.meta.actor == "fasm-es/timer"
            assert fired.meta.causation_id == "j/t1"
            assert fired.meta.accepted_at == start + timedelta(seconds=60)
            assert "t1" not in await engine.outstanding("j")

    run(scenario())


def test_timers_fire_after_a_restart(tmp_path: Path) -> None:
    """A timer is a tracked action in the log: a new engine re-arms it."""

    async def scenario() -> None:
        clock = ManualClock()
        async with Engine(Jobs(), url(tmp_path), handlers={Work: never}, clock=clock) as engine:
            await engine.submit("j", Start(job="late", timeout=30))
            await engine.submit("j", Start(job="later", timeout=600))
        clock.advance(120)  # "late" came due while no engine ran
        async with Engine(Jobs(), url(tmp_path), handlers={Work: never}, clock=clock) as engine:
            await until(lambda: has(engine, "late", "expired"), "the overdue timer fires")
            assert await status(engine, "later") == "running:job2"
            clock.advance(480)
            await until(lambda: has(engine, "later", "expired"), "the second timer fires")

    run(scenario())


class ForgetfulJobs(Jobs):
    """A restore that re-issues the work but not the timers."""

    def restore(self, state: JobsState, actions: Actions[Work | Timer, object]) -> None:
        for job, status in sorted(state.jobs.items()):
            if status.startswith("running:job"):
                actions.track(f"w{status.removeprefix('running:job')}", Work(job=job))


def test_the_engine_rearms_timers_a_restore_leaves_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        async with Engine(Jobs(), url(tmp_path), handlers={Work: never}, clock=clock) as engine:
            await engine.submit("j", Start(job="a", timeout=10))
        machine = ForgetfulJobs()
        async with Engine(machine, url(tmp_path), handlers={Work: never}, clock=clock) as engine:
            assert sorted(map(str, engine.in_flight())) == ["j/t1", "j/w1"]
            clock.advance(10)
            await until(lambda: has(engine, "a", "expired"), "the timer fires")

    run(scenario())


def test_work_done_before_the_deadline_wins(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock()
        handlers = {Work: lambda action, key: Done(output="quick")}
        async with Engine(Jobs(), url(tmp_path), handlers=handlers, clock=clock) as engine:
            await engine.submit("j", Start(job="a", timeout=10))
            await until(lambda: has(engine, "a", "done"), "the work is done")
            clock.advance(10)
            await engine.idle(timeout=10)
            state = await engine.state("j")
            assert state.jobs == {"a": "done"}
            assert state.seen == ["w1", "t1"]  # the timer still completes, and changes nothing

    run(scenario())


def test_sleep_until_waits_for_a_manual_clock_moved_from_another_thread() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        at = clock.now() + timedelta(hours=1)
        waiter = asyncio.create_task(sleep_until(clock, at))
        await asyncio.sleep(0)
        assert not waiter.done()
        await asyncio.to_thread(clock.advance, timedelta(hours=1))
        await asyncio.wait_for(waiter, 10)
        await sleep_until(clock, at)  # already past: returns at once

    run(scenario())


def test_sleep_until_follows_a_real_time_clock() -> None:
    class Wall:
        def __init__(self) -> None:
            self.reads = 0

        def now(self) -> object:
            from datetime import UTC, datetime

            self.reads += 1
            return datetime.now(UTC)

    async def scenario() -> None:
        from datetime import UTC, datetime

        clock = Wall()
        at = datetime.now(UTC) + timedelta(milliseconds=20)
        await sleep_until(clock, at)  # type: ignore[arg-type]
        assert datetime.now(UTC) >= at
        assert clock.reads >= 2

    run(scenario())
