"""Untracked actions: at most once after commit, or at least once from the log."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_support import run, until
from machines import Increment, Incremented, Tally

from fasm_es import Engine, MemoryCheckpoints, RetryPolicy

FAST = RetryPolicy(base_delay=0.001, max_delay=0.002)


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


def test_at_most_once_subscribers_are_called_after_commit(tmp_path: Path) -> None:
    got: list[tuple[int, str, int]] = []
    committed: list[int] = []

    def plain(action: Incremented, record: Any) -> None:
        # The record is durable by the time a subscriber hears of it.
        committed.append(engine.store.last_version(record.stream))
        got.append((action.current, record.stream, record.version))

    async def failing(action: Incremented, record: Any) -> None:
        raise RuntimeError("mail server down")

    engine = Engine(Tally(), url(tmp_path))

    async def scenario() -> None:
        engine.subscribe(Incremented, plain)
        engine.subscribe(Incremented, failing)
        async with engine:
            await engine.submit("t", Increment(by=2))
            await engine.submit("t", Increment(by=3))
            await until(lambda: len(got) == 2, "both are delivered")
            await until(lambda: engine.stats().subscribers_failed == 2, "failures are counted")
        assert sorted(got) == [(2, "t", 1), (5, "t", 2)]
        assert all(v >= 1 for v in committed)
        assert engine.stats().subscribers_delivered == 2

    run(scenario())


def test_at_least_once_subscribers_follow_the_log_from_a_durable_position(
    tmp_path: Path,
) -> None:
    got: list[int] = []
    failures = 2

    def flaky(action: Incremented, record: Any) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("try again")
        got.append(action.current)

    async def scenario() -> None:
        async with Engine(Tally(), url(tmp_path), retry=FAST) as engine:
            # Records from before the subscription are delivered too.
            await engine.submit("t", Increment(by=1))
            engine.subscribe(Incremented, flaky, at_least_once=True, name="mailer")
            await engine.submit("u", Increment(by=10))
            await until(lambda: got == [1, 10], "the log is delivered in order")
            (status,) = engine.stats().followers
            assert (status.name, status.delivered, status.failures) == ("mailer", 2, 2)
            assert status.last_error == "ConnectionError: try again"
        async with Engine(Tally(), url(tmp_path), retry=FAST) as engine:
            engine.subscribe(Incremented, flaky, at_least_once=True, name="mailer")
            await engine.submit("t", Increment(by=5))
            await until(lambda: got == [1, 10, 6], "only the new record is delivered")
            await asyncio.sleep(0.05)
            assert got == [1, 10, 6]

    run(scenario())


def test_at_least_once_needs_a_unique_name(tmp_path: Path) -> None:
    engine = Engine(Tally(), url(tmp_path))
    with pytest.raises(ValueError, match="name"):
        engine.subscribe(Incremented, print, at_least_once=True)
    engine.subscribe(Incremented, print, at_least_once=True, name="one")
    with pytest.raises(ValueError, match="already"):
        engine.subscribe(Incremented, print, at_least_once=True, name="one")
    with pytest.raises(ValueError, match="without '/'"):
        engine.subscribe(Incremented, print, at_least_once=True, name="a/b")


class SlowSaves(MemoryCheckpoints):
    """Subscriber positions saved from a worker thread wait until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()
        self.release = threading.Event()

    def save(self, key: str, position: int, body: bytes) -> None:
        if "subscriber/" in key and threading.current_thread() is not threading.main_thread():
            self.waiting.set()
            self.release.wait(30)
        super().save(key, position, body)


def test_a_stop_keeps_the_position_of_what_was_delivered(tmp_path: Path) -> None:
    """The page's position is saved at stop even when its save in the background is still queued."""
    got: list[int] = []
    checkpoints = SlowSaves()

    def mailer(action: Incremented, record: Any) -> None:
        got.append(action.current)

    async def scenario() -> None:
        async with Engine(Tally(), url(tmp_path), checkpoints=checkpoints) as engine:
            engine.subscribe(Incremented, mailer, at_least_once=True, name="mailer")
            await engine.submit("t", Increment(by=1))
            await until(checkpoints.waiting.is_set, "the position's save is under way")
        async with Engine(Tally(), url(tmp_path), checkpoints=checkpoints) as engine:
            engine.subscribe(Incremented, mailer, at_least_once=True, name="mailer")
            await engine.submit("t", Increment(by=2))
            await until(lambda: len(got) >= 2, "the new record is delivered")
            await asyncio.sleep(0.05)
            assert got == [1, 3]

    try:
        run(scenario())
    finally:
        checkpoints.release.set()
