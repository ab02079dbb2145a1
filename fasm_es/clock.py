"""Clocks: where accepted-at times come from.

The engine stamps each accepted input with ``clock.now()``. Production code
uses :class:`SystemClock`; tests and simulations use :class:`ManualClock`,
whose time moves only when told to.
"""

from __future__ import annotations

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
    """A clock that moves only by :meth:`advance` or :meth:`set` (for tests and simulation)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")

    def now(self) -> datetime:
        """The clock's current time."""
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by ``delta`` (a timedelta or seconds); returns the new time."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("a clock cannot move backwards")
        self._now += step
        return self._now

    def set(self, at: datetime) -> None:
        """Jump to ``at`` (not earlier than now)."""
        if at < self._now:
            raise ValueError("a clock cannot move backwards")
        self._now = at
