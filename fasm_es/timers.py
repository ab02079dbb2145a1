"""Durable timers: a tracked action the engine completes itself when its time comes.

A machine that needs a timeout or an expiry emits ``Timer(at=...)`` as a
tracked action (its tracked action type must include :class:`Timer`, and its
tracked result type :class:`TimerFired`)::

    actions.track(f"timeout-{n}", Timer(at=input.meta.accepted_at + timedelta(minutes=5)))

    # later, in the STF:
    case Completed(id=f"timeout-{n}", result=TimerFired()): ...

No handler is registered for it: once the engine's clock reaches ``at``, the
engine submits ``Completed(id, TimerFired(at=at))``. A timer is an ordinary
tracked action, so it is in the log, and a restart re-arms every timer still
outstanding (even when the machine's ``restore`` does not re-emit it). A timer
whose time has passed while the engine was down fires at once on start.

Deadlines come from ``input.meta.accepted_at``, never from the wall clock, so
replay stays deterministic. Time is read from the engine's injectable clock:
with a :class:`~fasm_es.clock.ManualClock` a timer fires when the test moves the
clock past ``at``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from fasm_es.clock import Clock


class Timer(BaseModel):
    """A tracked action that completes with :class:`TimerFired` once the clock reaches ``at``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["timer"] = "timer"
    at: AwareDatetime


class TimerFired(BaseModel):
    """The result of a :class:`Timer`: its time ``at`` has come."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["timer_fired"] = "timer_fired"
    at: AwareDatetime


async def sleep_until(clock: Clock, at: datetime) -> None:
    """Wait until ``clock.now()`` reaches ``at``.

    A clock with its own ``async sleep_until`` (as :class:`~fasm_es.clock.ManualClock`)
    waits in its own time; any other clock is assumed to follow real time, and
    is re-read after each sleep so a timer never fires early.
    """
    own: Callable[[datetime], Awaitable[None]] | None = getattr(clock, "sleep_until", None)
    if own is not None:
        await own(at)
        return
    while (remaining := (at - clock.now()).total_seconds()) > 0:
        await asyncio.sleep(remaining)


def timer_handler(clock: Clock) -> Callable[[Timer, Any], Awaitable[TimerFired]]:
    """The engine's handler for :class:`Timer` actions: wait for ``at``, then report it."""

    async def fire(action: Timer, key: Any) -> TimerFired:
        await sleep_until(clock, action.at)
        return TimerFired(at=action.at)

    return fire
