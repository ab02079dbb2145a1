"""Virtual time for simulations: an event loop whose clock only moves when nothing is ready.

:class:`VirtualEventLoop` is an ordinary asyncio loop except that, when every
task is waiting, it jumps its clock straight to the next scheduled timer
instead of sleeping. ``asyncio.sleep(3600)`` costs nothing and always wakes in
the same order, so a run that uses no threads and no real I/O is the same run
every time. :class:`VirtualClock` reads that loop's time as a datetime, for
the engine's accepted-at stamps and timers; :class:`InlineExecutor` runs
"blocking" calls inline, so nothing leaves the loop's thread.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class SimulationDeadlock(RuntimeError):
    """Every task waits on something that nothing scheduled will ever provide."""


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:
            raise SimulationDeadlock(
                "every task is waiting and no timer is scheduled: the awaited result can "
                "never arrive"
            )
        self.now += max(timeout, 0.0)
        return []


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time (see the module docstring)."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        """Seconds of virtual time since the loop was made."""
        return self._virtual.now

    def quiescent(self) -> bool:
        """True when no callback is ready to run (only timers and unresolved futures wait)."""
        return not self._ready  # type: ignore[attr-defined]

    def advance(self, seconds: float) -> None:
        """Move virtual time forward (timers due by then fire on the next iteration)."""
        if seconds < 0:
            raise ValueError("virtual time cannot move backwards")
        self._virtual.now += seconds


class VirtualClock:
    """A :class:`~fasm_es.clock.Clock` reading a virtual loop's time, from ``start``.

    It survives the loop: after a simulated crash a new loop takes over with
    :meth:`attach`, and time carries on from where it stood.
    """

    def __init__(self, start: datetime = EPOCH) -> None:
        self.start = start
        self._offset = 0.0
        self._loop: VirtualEventLoop | None = None

    def attach(self, loop: VirtualEventLoop) -> None:
        """Follow ``loop`` from now on, continuing from the current time."""
        self._offset = self.seconds()
        self._loop = loop
        self._base = loop.time()

    def seconds(self) -> float:
        """Virtual seconds since ``start``."""
        if self._loop is None:
            return self._offset
        return self._offset + self._loop.time() - self._base

    def now(self) -> datetime:
        """The virtual time as a timezone-aware datetime."""
        return self.start + timedelta(seconds=self.seconds())


class InlineExecutor(ThreadPoolExecutor):
    """Runs each submitted call at once, in the calling thread (it starts no thread).

    It is a ``ThreadPoolExecutor`` only so asyncio accepts it as a loop's
    default executor (``asyncio.to_thread`` then runs inline too).
    """

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn`` now; return a finished future."""
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future
