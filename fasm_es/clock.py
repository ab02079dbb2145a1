"""Clocks: where accepted-at times come from.

The engine stamps each accepted input with ``clock.now()``. Production code
uses :class:`SystemClock`; tests and simulations use :class:`ManualClock`,
whose time moves only when told to.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything with ``now()`` returning a timezone-aware datetime."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only by :meth:`advance` or :meth:`set` (for tests and simulation).

    :meth:`sleep_until` waits in virtual time: it returns once the clock is
    moved to or past the given time, from any thread.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._waiters: list[tuple[datetime, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The clock's current time."""
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds); returns the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("a clock cannot move backwards")
        with self._lock:
            self._now += step
            now = self._now
        self._wake()
        return now

    def set(self, at: datetime) -> None:
        """Jump to ``at`` (not earlier than now)."""
        with self._lock:
            if at < self._now:
                raise ValueError("a clock cannot move backwards")
            self._now = at
        self._wake()

    async def sleep_until(self, at: datetime) -> None:
        """Return once the clock has been moved to ``at`` or later."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._now >= at:
                return
            waiter = (at, loop, future)
            self._waiters.append(waiter)
        try:
            await future
        finally:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        with self._lock:
            due = [w for w in self._waiters if w[0] <= self._now]
            self._waiters = [w for w in self._waiters if w[0] > self._now]
        for _, loop, future in due:
            # The waiter's loop may run in another thread, or be closed already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
