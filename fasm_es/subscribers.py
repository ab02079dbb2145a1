"""Untracked actions to their subscribers: at most once by default, at least once on request.

A subscriber is ``fn(action, record)`` (plain or ``async``) for untracked
actions of one type (or a subclass); ``record`` says which stream, version and
input emitted it.

- **At most once** (:class:`Subscriptions`): called after the record that
  emitted the action is committed. An error is logged and counted, never
  retried; an action emitted just before a crash may never be delivered.
- **At least once** (:class:`LogFollower`): the subscriber follows the log from
  a durable position of its own (saved per page of records, under its name), so
  after a crash it sees again at most the page it was in. A failing call is
  retried with backoff until it succeeds, holding back the actions after it:
  delivery is in log order. A new subscriber starts from the beginning of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from fasm_es.actions import Untracked
from fasm_es.dispatch import RetryPolicy, call
from fasm_es.outstanding import RESERVED_PREFIX, Checkpoints
from fasm_es.record import Codec, Record
from fasm_es.store import EventStore

log = logging.getLogger("fasm_es.engine")

Subscriber = Callable[[Any, Record[Any, Any, Any, Any]], Any]
"""``fn(action, record)``, plain or ``async``."""


class Subscriptions:
    """At-most-once subscribers, called after commit; errors are logged, not retried."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._subscribers: list[tuple[type, Subscriber]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def add(self, action_type: type, fn: Subscriber) -> None:
        """Call ``fn`` for each committed untracked action of ``action_type``."""
        self._subscribers.append((action_type, fn))

    def deliver(self, records: Sequence[Record[Any, Any, Any, Any]]) -> None:
        """Start delivering the untracked actions of freshly committed ``records``."""
        if not self._subscribers:
            return
        loop = asyncio.get_running_loop()
        for record in records:
            for action in record.actions:
                if not isinstance(action, Untracked):
                    continue
                for action_type, fn in self._subscribers:
                    if isinstance(action.action, action_type):
                        task = loop.create_task(self._call(fn, action.action, record))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)

    async def _call(self, fn: Subscriber, action: Any, record: Record[Any, Any, Any, Any]) -> None:
        try:
            await call(fn, (action, record), self._executor)
            self.delivered += 1
        except Exception:
            self.failed += 1
            log.exception(
                "subscriber %r failed on %s from stream %r version %d (not retried: "
                "subscribe with at_least_once=True for retries)",
                fn,
                type(action).__name__,
                record.stream,
                record.version,
            )

    async def close(self, grace: float) -> None:
        """Let deliveries in progress finish for up to ``grace`` seconds, then cancel them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class FollowerStatus:
    """Where an at-least-once subscriber is in the log, and how its calls went."""

    name: str
    position: int
    delivered: int
    failures: int
    last_error: str | None


class LogFollower:
    """An at-least-once subscriber: follows the log from its durable position."""

    def __init__(
        self,
        name: str,
        action_type: type,
        fn: Subscriber,
        *,
        store: EventStore,
        codec: Codec[Any, Any, Any, Any],
        checkpoints: Checkpoints | None,
        executor: Executor,
        policy: RetryPolicy,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_interval: float = 1.0,
        page_size: int = 500,
    ) -> None:
        if not name or "/" in name:
            raise ValueError(f"a subscriber name must be non-empty without '/', got {name!r}")
        self.name = name
        self.action_type = action_type
        self.fn = fn
        self._store = store
        self._codec = codec
        self._checkpoints = checkpoints
        self._executor = executor
        self._policy = policy
        self._rng = rng
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._page_size = page_size
        self._wakeup = asyncio.Event()
        self._key = f"{RESERVED_PREFIX}subscriber/{name}"
        self.position = 0
        self.delivered = 0
        self.failures = 0
        self.last_error: str | None = None

    def status(self) -> FollowerStatus:
        """Position, deliveries and failures so far."""
        return FollowerStatus(
            self.name, self.position, self.delivered, self.failures, self.last_error
        )

    def wake(self) -> None:
        """New records were committed: look at the log now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver forever (until cancelled), saving the position after each page."""
        loop = asyncio.get_running_loop()
        saved = await loop.run_in_executor(self._executor, self._load_position)
        self.position = saved
        try:
            while True:
                self._wakeup.clear()
                page = await loop.run_in_executor(self._executor, self._read_page, self.position)
                if not page:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
                    continue
                for record in page:
                    for action in record.actions:
                        if isinstance(action, Untracked) and isinstance(
                            action.action, self.action_type
                        ):
                            await self._deliver(action.action, record)
                    self.position = record.position
                await loop.run_in_executor(self._executor, self._save_position, self.position)
                saved = self.position
        except asyncio.CancelledError:
            # Stopped part-way through a page: keep what was delivered, so the
            # next start does not deliver it again (a crash still may).
            if self.position > saved:
                try:
                    self._save_position(self.position)
                except Exception:
                    log.exception("subscriber %r: saving its position at stop failed", self.name)
            raise

    async def _deliver(self, action: Any, record: Record[Any, Any, Any, Any]) -> None:
        failures = 0
        while True:
            try:
                await call(self.fn, (action, record), self._executor)
                self.delivered += 1
                return
            except Exception as exc:
                failures += 1
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                # Never give up (at least once), but never faster than the policy allows.
                delay = self._policy.delay(min(failures, 64), self._rng)
                log.warning(
                    "subscriber %r failed on stream %r version %d (%s); retrying in %.3fs",
                    self.name,
                    record.stream,
                    record.version,
                    self.last_error,
                    delay,
                )
                await self._sleep(delay)

    def _read_page(self, after: int) -> list[Record[Any, Any, Any, Any]]:
        raws = itertools.islice(
            self._store.read_log(after=after, page_size=self._page_size), self._page_size
        )
        return [self._codec.decode(raw) for raw in raws]

    def _load_position(self) -> int:
        saved = self._checkpoints.load(self._key) if self._checkpoints is not None else None
        return 0 if saved is None else saved[0]

    def _save_position(self, position: int) -> None:
        if self._checkpoints is not None:
            body = json.dumps({"subscriber": self.name}).encode()
            self._checkpoints.save(self._key, position, body)
