"""What the engine tests share: a machine with tracked work and timers, and small helpers.

:class:`Jobs` starts jobs (``Start``): each emits a tracked :class:`Work`
(id ``w<n>``) and, when asked, a :class:`~fasm_es.Timer` (id ``t<n>``). A
job finishes on ``Done`` or expires when its timer fires first. The STF is
lenient on purpose: it would apply a duplicate completion again (and
``seen`` would show it), so only the engine keeps duplicates out. It uses
the default restore: the outstanding actions themselves are re-issued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from fasm_es import (
    Actions,
    Completed,
    EventStore,
    Input,
    Rejection,
    StateMachine,
    Streams,
    Timer,
    TimerFired,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    """Run an async test body, failing it rather than hanging past ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def until(predicate: Any, what: str, timeout: float = 20) -> None:
    """Wait until ``predicate()`` (plain or async) is true; fail naming ``what`` if it never is."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = predicate()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


class Sleeps:
    """A stand-in for ``asyncio.sleep`` in retries: records each delay, waits not at all."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def folded(machine: StateMachine[Any, Any, Any, Any, Any], store: EventStore, stream: str) -> Any:
    """The state of ``stream`` folded afresh from the log (no cache, no snapshot)."""
    return Streams(machine, store).verify_replay(stream).state


# -- the Jobs machine ------------------------------------------------------------------


class Start(BaseModel):
    """Start job ``job``; with ``timeout`` seconds, it expires unless done by then."""

    kind: Literal["start"] = "start"
    job: str
    timeout: int | None = None
    fail: bool = False


class Work(BaseModel):
    """Tracked action: do job ``job``."""

    kind: Literal["work"] = "work"
    job: str


class Done(BaseModel):
    """The result of :class:`Work`."""

    kind: Literal["done"] = "done"
    output: str


class Finished(BaseModel):
    """Untracked notification: job ``job`` ended as ``status``."""

    job: str
    status: str


class JobsState(BaseModel):
    """Each job's status, and every completion the STF was given, in order."""

    next_id: int = 1
    jobs: dict[str, str] = Field(default_factory=dict)
    seen: list[str] = Field(default_factory=list)


class Refused(Rejection):
    """``Start(fail=True)``: refused after the state was changed."""


JobAction = Annotated[Work | Timer, Field(discriminator="kind")]
JobResult = Annotated[Done | TimerFired, Field(discriminator="kind")]


class Jobs(StateMachine[JobsState, Start, JobAction, JobResult, Finished]):
    """Jobs with tracked work and optional timeouts (see the module docstring)."""

    def __init__(self) -> None:
        self.completions: list[str] = []

    def stf(
        self,
        state: JobsState,
        input: Input[Start, JobResult],
        actions: Actions[JobAction, Finished],
    ) -> None:
        if isinstance(input, Completed):
            self.completions.append(str(input.id))
            state.seen.append(str(input.id))
            job = f"job{str(input.id)[1:]}"
            name = next((k for k, v in state.jobs.items() if v == f"running:{job}"), None)
            if name is None:
                return  # already ended: a late completion changes nothing here
            status = "done" if isinstance(input.result, Done) else "expired"
            state.jobs[name] = status
            actions.emit(Finished(job=name, status=status))
            return
        start = input.value
        n = state.next_id
        state.next_id += 1
        state.jobs[start.job] = f"running:job{n}"
        if start.fail:
            raise Refused(f"job {start.job} refused after it was recorded in state")
        actions.track(f"w{n}", Work(job=start.job))
        if start.timeout is not None:
            at = input.meta.accepted_at + timedelta(seconds=start.timeout)
            actions.track(f"t{n}", Timer(at=at))
