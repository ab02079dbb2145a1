"""A blocking facade over :class:`~fasm_es.engine.Engine`, for scripts and sync web frameworks.

::

    with SyncEngine(Payments(), "sqlite:///payments.db", handlers={Charge: charge}) as engine:
        record = engine.submit("acct-1", Process(amount=500, user="ann"))

The engine runs on an event loop in a background thread; each method submits
work to it and blocks until the answer comes back, so any number of threads
may call it at once (their submits are group-committed together). Handlers
and subscribers run on that loop (plain ones in worker threads) exactly as
with the async engine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from fasm_es.dispatch import Handler, IdempotencyKey, StuckAction
from fasm_es.engine import Engine, EngineStats
from fasm_es.errors import CompletionNotOutstanding
from fasm_es.inputs import ActionId
from fasm_es.machine import StateMachine
from fasm_es.record import Record
from fasm_es.store import EventStore
from fasm_es.subscribers import Subscriber

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
A = TypeVar("A")
R = TypeVar("R")
U = TypeVar("U")
T = TypeVar("T")


class SyncEngine(Generic[S, I, A, R, U]):
    """An :class:`Engine` driven from blocking code; takes the same arguments.

    Starting (restore included) happens in the constructor; :meth:`close`
    (or leaving the ``with`` block) stops the engine and its thread.
    """

    def __init__(
        self, machine: StateMachine[S, I, A, R, U], store: EventStore | str, **options: Any
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fasm-es-engine", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self.engine: Engine[S, I, A, R, U] = self._call(_build(machine, store, options))
            self._call(self.engine.start())
        except BaseException:
            self._shutdown_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the engine is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _run(self, fn: Any, *args: Any) -> Any:
        async def call() -> Any:
            return fn(*args)

        return self._call(call())

    def submit(self, stream: str, value: I | Any, **meta: Any) -> Record[I, A, R, U]:
        """Submit a normal input and block until its record is committed (see ``Engine.submit``)."""
        return self._call(self.engine.submit(stream, value, **meta))

    def complete(
        self, stream: str, action_id: ActionId, result: R | Any, **meta: Any
    ) -> Record[I, A, R, U]:
        """Submit a tracked action's result (see ``Engine.complete``)."""
        return self._call(self.engine.complete(stream, action_id, result, **meta))

    def state(self, stream: str) -> S:
        """A copy of ``stream``'s committed state."""
        return self._call(self.engine.state(stream))

    def outstanding(self, stream: str) -> dict[ActionId, A]:
        """``stream``'s tracked actions not yet completed, by id."""
        return self._call(self.engine.outstanding(stream))

    def register(self, action_type: type, handler: Handler) -> None:
        """Handle tracked actions of ``action_type`` with ``handler(action, key)``."""
        self._run(self.engine.register, action_type, handler)

    def subscribe(self, action_type: type, fn: Subscriber, **options: Any) -> None:
        """Subscribe ``fn`` to untracked actions of ``action_type`` (see ``Engine.subscribe``)."""

        async def subscribe() -> None:
            self.engine.subscribe(action_type, fn, **options)

        self._call(subscribe())

    def stuck(self) -> list[StuckAction]:
        """Tracked actions whose handler kept failing."""
        result: list[StuckAction] = self._run(self.engine.stuck)
        return result

    def retry(self, stream: str, action_id: ActionId) -> None:
        """Dispatch a stuck action again (``LookupError`` if it is not stuck)."""
        self._run(self.engine.retry, stream, action_id)

    def in_flight(self) -> list[IdempotencyKey]:
        """Tracked actions being handled now."""
        result: list[IdempotencyKey] = self._run(self.engine.in_flight)
        return result

    def ignored_completions(self) -> list[CompletionNotOutstanding]:
        """The most recent completions refused as not outstanding."""
        result: list[CompletionNotOutstanding] = self._run(self.engine.ignored_completions)
        return result

    def stats(self) -> EngineStats:
        """The engine's counters."""
        result: EngineStats = self._run(self.engine.stats)
        return result

    def idle(self, timeout: float | None = None) -> None:
        """Block until no tracked action is being handled and nothing is queued."""
        self._call(self.engine.idle(timeout))

    def checkpoint(self) -> int:
        """Advance and save the outstanding index now; returns its log position."""
        return self._call(self.engine.checkpoint())

    def close(self) -> None:
        """Stop the engine (see ``Engine.stop``) and its thread. Idempotent."""
        if self._closed:
            return
        try:
            self._call(self.engine.stop())
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _build(
    machine: StateMachine[S, I, A, R, U], store: EventStore | str, options: dict[str, Any]
) -> Engine[S, I, A, R, U]:
    # Built on the engine's loop: its queues and events belong to that loop.
    return Engine(machine, store, **options)
