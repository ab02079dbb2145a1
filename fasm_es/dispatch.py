"""Tracked action dispatch: handlers, retries with backoff, and stuck actions.

A handler is registered per tracked action type and called as
``handler(action, key)``, where ``key`` is the action's
:class:`IdempotencyKey` (stream, action id): the same key every time the
action is dispatched, across retries and restarts, for the outside system to
deduplicate on. A handler may be plain (run in a worker thread, so it may
block) or ``async``. What it returns is submitted back to the machine as
``Completed(id, result)``.

A handler that raises, or whose result is refused (invalid for the declared
result type, rejected by the STF), is called again after an exponential
backoff with jitter, up to :attr:`RetryPolicy.max_attempts` calls. Then the
action is *stuck*: listed by :meth:`Dispatcher.stuck` with its last error,
and dispatched again only by :meth:`Dispatcher.retry`. It is never dropped:
it stays outstanding in the log, so the next start dispatches it again.
An action with no registered handler is stuck at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fasm_es.actions import Tracked
from fasm_es.clock import Clock
from fasm_es.errors import CompletionNotOutstanding
from fasm_es.inputs import ActionId

log = logging.getLogger("fasm_es.engine")

Handler = Callable[[Any, "IdempotencyKey"], Any]
"""``handler(action, key) -> result``, plain or ``async``."""

Complete = Callable[[str, ActionId, Any], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """The stable identity of a tracked action for the outside system: ``stream/id``."""

    stream: str
    action_id: ActionId

    def __str__(self) -> str:
        return f"{self.stream}/{self.action_id}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing handler is called again.

    The n-th retry waits ``min(max_delay, base_delay * multiplier ** (n - 1))``
    seconds, less a random fraction of up to ``jitter`` of it (so many failing
    actions do not retry in lockstep). After ``max_attempts`` calls in all the
    action is stuck.
    """

    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th failed call."""
        ceiling = min(self.max_delay, self.base_delay * self.multiplier ** (failures - 1))
        return ceiling * (1 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class StuckAction:
    """A tracked action whose handler failed ``attempts`` times in a row; see ``retry``."""

    stream: str
    action_id: ActionId
    action: Any
    attempts: int
    last_error: str
    since: datetime

    @property
    def key(self) -> IdempotencyKey:
        """The action's idempotency key."""
        return IdempotencyKey(self.stream, self.action_id)


@dataclass(slots=True)
class DispatchStats:
    """Counters of the dispatcher (a copy is part of ``Engine.stats()``)."""

    dispatched: int = 0
    handler_calls: int = 0
    handler_failures: int = 0
    results_accepted: int = 0
    results_not_outstanding: int = 0
    became_stuck: int = 0


class _NoHandler(Exception):
    """No handler is registered for an action's type (internal; never escapes)."""


@dataclass(slots=True, eq=False)
class _InFlight:
    """A dispatch in progress; ``completing`` once its result is being submitted."""

    task: asyncio.Task[None] = field(init=False)
    completing: bool = False


class Dispatcher:
    """Runs handlers for tracked actions and feeds their results back through ``complete``.

    ``complete(stream, id, result)`` submits the result; it raises
    :class:`CompletionNotOutstanding` when the action was completed meanwhile
    (by another engine, an operator, or an earlier call), which ends the
    dispatch quietly. Must be used from the event loop's thread.
    """

    def __init__(
        self,
        complete: Complete,
        *,
        clock: Clock,
        executor: Executor,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._complete = complete
        self._clock = clock
        self._executor = executor
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._handlers: dict[type, Handler] = {}
        self._in_flight: dict[IdempotencyKey, _InFlight] = {}
        self._stuck: dict[IdempotencyKey, StuckAction] = {}
        self.stats = DispatchStats()

    def register(self, action_type: type, handler: Handler) -> None:
        """Call ``handler`` for tracked actions of ``action_type`` (or a subclass)."""
        if not callable(handler):
            raise TypeError(f"the handler for {action_type.__name__} is not callable: {handler!r}")
        self._handlers[action_type] = handler

    def handler_for(self, action: object) -> Handler | None:
        """The handler registered for the action's type or its nearest base class."""
        for cls in type(action).__mro__:
            found = self._handlers.get(cls)
            if found is not None:
                return found
        return None

    # -- dispatching -----------------------------------------------------------------

    def dispatch(self, stream: str, tracked: Tracked[Any]) -> bool:
        """Start handling ``tracked``; False if that action is already being handled."""
        key = IdempotencyKey(stream, tracked.id)
        if key in self._in_flight:
            return False
        self._stuck.pop(key, None)
        self.stats.dispatched += 1
        entry = _InFlight()
        self._in_flight[key] = entry
        entry.task = asyncio.get_running_loop().create_task(
            self._run(key, tracked.action, entry), name=f"fasm-es dispatch {key}"
        )
        entry.task.add_done_callback(lambda task: _report(key, task))
        return True

    def dispatch_all(self, stream: str, actions: Iterable[Tracked[Any]]) -> None:
        """Dispatch each of ``actions`` (those already in flight are left alone)."""
        for tracked in actions:
            self.dispatch(stream, tracked)

    def settled(self, stream: str, action_id: ActionId) -> None:
        """The action was completed: forget it as stuck and stop retrying it."""
        key = IdempotencyKey(stream, action_id)
        self._stuck.pop(key, None)
        entry = self._in_flight.get(key)
        if entry is not None and not entry.completing:
            entry.task.cancel()

    async def _run(self, key: IdempotencyKey, action: Any, entry: _InFlight) -> None:
        try:
            await self._attempts(key, action, entry)
        finally:
            # Before anything else runs: a retry right after this sees it gone.
            if self._in_flight.get(key) is entry:
                del self._in_flight[key]

    async def _attempts(self, key: IdempotencyKey, action: Any, entry: _InFlight) -> None:
        failures = 0
        while True:
            try:
                handler = self.handler_for(action)
                if handler is None:
                    raise _NoHandler(
                        f"no handler is registered for tracked action type "
                        f"{type(action).__name__}: pass handlers={{{type(action).__name__}: fn}} "
                        "or call register(), then retry it"
                    )
                self.stats.handler_calls += 1
                result = await call(handler, (action, key), self._executor)
                entry.completing = True
                await self._complete(key.stream, key.action_id, result)
                self.stats.results_accepted += 1
                return
            except CompletionNotOutstanding as exc:
                self.stats.results_not_outstanding += 1
                log.info("%s: result not submitted: %s", key, exc)
                return
            except Exception as exc:
                entry.completing = False
                failures += 1
                self.stats.handler_failures += 1
                error = str(exc) if isinstance(exc, _NoHandler) else f"{type(exc).__name__}: {exc}"
                if failures >= self.policy.max_attempts or isinstance(exc, _NoHandler):
                    self._stuck[key] = StuckAction(
                        key.stream, key.action_id, action, failures, error, self._clock.now()
                    )
                    self.stats.became_stuck += 1
                    log.error("%s is stuck after %d attempt(s): %s", key, failures, error)
                    return
                delay = self.policy.delay(failures, self._rng)
                log.warning(
                    "%s: attempt %d failed (%s); retrying in %.3fs", key, failures, error, delay
                )
                await self._sleep(delay)

    # -- stuck actions ---------------------------------------------------------------

    def stuck(self) -> list[StuckAction]:
        """Every stuck action, oldest first."""
        return sorted(self._stuck.values(), key=lambda s: (s.since, s.stream, str(s.action_id)))

    def is_stuck(self, stream: str, action_id: ActionId) -> bool:
        """Whether that action is stuck (waiting for an operator's retry)."""
        return IdempotencyKey(stream, action_id) in self._stuck

    def mark_stuck(self, stream: str, tracked: Tracked[Any], error: str) -> None:
        """List ``tracked`` as stuck without dispatching it (nothing could handle it)."""
        key = IdempotencyKey(stream, tracked.id)
        self._stuck[key] = StuckAction(
            stream, tracked.id, tracked.action, 0, error, self._clock.now()
        )
        self.stats.became_stuck += 1

    def retry(self, stream: str, action_id: ActionId) -> None:
        """Dispatch a stuck action again, with a fresh count of attempts.

        Raises ``LookupError`` if it is not stuck (it may have completed, or
        still be retrying).
        """
        key = IdempotencyKey(stream, action_id)
        stuck = self._stuck.get(key)
        if stuck is None:
            raise LookupError(f"tracked action {key} is not stuck (see stuck() for those that are)")
        self.dispatch(stream, Tracked(action_id, stuck.action))

    def in_flight(self) -> list[IdempotencyKey]:
        """The actions being handled now (including those waiting to retry)."""
        return list(self._in_flight)

    async def close(self) -> None:
        """Stop every dispatch in progress; the actions stay outstanding in the log."""
        tasks = [entry.task for entry in self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _report(key: IdempotencyKey, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("dispatch of %s ended with an error", key, exc_info=task.exception())


async def call(fn: Callable[..., Any], args: tuple[Any, ...], executor: Executor) -> Any:
    """Call a plain or ``async`` callback: awaited if async, else run in ``executor``.

    A plain callback runs in a worker thread so that it may block (a network
    call) without stalling the event loop.
    """
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )
    if is_async:
        return await fn(*args)
    result = await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result
