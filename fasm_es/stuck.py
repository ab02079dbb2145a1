"""Stuck tracked actions, visible and retryable from another process.

An engine holds its stuck actions (handler retries exhausted) in memory. An
operator's command line runs in another process, so the engine also keeps
two small documents in its :class:`~fasm_es.outstanding.Checkpoints` (by
default snapshots under reserved ids in the event store itself):

``$fasm-es/stuck``
    The stuck list: stream, action id, action type and value, attempts, last
    error, since when, and which engine holds it. An engine rewrites its own
    entries when they change (it looks every ``stuck_interval`` seconds), at
    its start and at its stop. Entries of other engines are kept, except
    those the log shows completed and those this engine is handling itself
    (after a restart every outstanding action is dispatched again).
``$fasm-es/retry-requests``
    The latest retry requests (``fasm-es retry``), numbered. Every
    ``stuck_interval`` seconds each engine reads the requests made since it
    last looked, dispatches again each requested action it holds as stuck,
    and records that it did in the stuck list (``retried``). Requests made
    before an engine started need nothing more: a start dispatches every
    outstanding action again anyway.

Both are saved at an increasing *revision* (the ``position`` of the
checkpoints interface): a writer reads revision n, saves n + 1, and reads
the newest back; if another writer took n + 1 first, it starts over from
that one. Each revision is a new snapshot row and the older rows are
deleted once it is saved; only the newest is ever read.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python

from fasm_es.clock import Clock
from fasm_es.dispatch import IdempotencyKey, StuckAction
from fasm_es.errors import StoreError
from fasm_es.inputs import ActionId
from fasm_es.outstanding import RESERVED_PREFIX, Checkpoints, OutstandingTracker

STUCK_KEY = RESERVED_PREFIX + "stuck"
RETRY_REQUESTS_KEY = RESERVED_PREFIX + "retry-requests"
KEPT_REQUESTS = 100
"""Retry requests kept in their document (older ones are dropped as new ones come)."""
KEPT_RETRIED = 100
"""Records of retries done kept in the stuck list."""
WRITE_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class StuckEntry:
    """One stuck tracked action as saved for operators (``action`` is its JSON value)."""

    stream: str
    action_id: ActionId
    type: str
    action: Any
    attempts: int
    last_error: str
    since: datetime
    engine: str

    @property
    def key(self) -> tuple[str, ActionId]:
        """The action's identity: (stream, action id)."""
        return (self.stream, self.action_id)

    @classmethod
    def of(cls, stuck: StuckAction, engine: str) -> StuckEntry:
        """The entry for an engine's :class:`~fasm_es.dispatch.StuckAction`."""
        return cls(
            stuck.stream,
            stuck.action_id,
            type(stuck.action).__name__,
            to_jsonable_python(stuck.action, fallback=repr),
            stuck.attempts,
            stuck.last_error,
            stuck.since,
            engine,
        )

    def as_json(self) -> dict[str, Any]:
        """The entry as plain JSON values."""
        return {
            "stream": self.stream,
            "id": self.action_id,
            "type": self.type,
            "action": self.action,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "since": self.since.isoformat(),
            "engine": self.engine,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StuckEntry:
        """The entry :meth:`as_json` wrote."""
        return cls(
            str(data["stream"]),
            _action_id(data["id"]),
            str(data["type"]),
            data.get("action"),
            int(data["attempts"]),
            str(data["last_error"]),
            datetime.fromisoformat(data["since"]),
            str(data["engine"]),
        )


@dataclass(frozen=True, slots=True)
class Retried:
    """A retry request an engine carried out: it dispatched the action again ``at``."""

    request: int
    stream: str
    action_id: ActionId
    engine: str
    at: datetime

    def as_json(self) -> dict[str, Any]:
        """The record as plain JSON values."""
        return {
            "request": self.request,
            "stream": self.stream,
            "id": self.action_id,
            "engine": self.engine,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Retried:
        """The record :meth:`as_json` wrote."""
        return cls(
            int(data["request"]),
            str(data["stream"]),
            _action_id(data["id"]),
            str(data["engine"]),
            datetime.fromisoformat(data["at"]),
        )


@dataclass(frozen=True, slots=True)
class StuckList:
    """The saved stuck list: its revision, who saved it when, its entries and recent retries."""

    revision: int = 0
    saved_at: datetime | None = None
    saved_by: str | None = None
    entries: tuple[StuckEntry, ...] = ()
    retried: tuple[Retried, ...] = ()

    def encode(self) -> bytes:
        """The list as JSON (the revision is the checkpoint's position, not part of the body)."""
        return _dumps(
            {
                "saved_at": self.saved_at.isoformat() if self.saved_at else None,
                "saved_by": self.saved_by,
                "entries": [entry.as_json() for entry in self.entries],
                "retried": [done.as_json() for done in self.retried],
            }
        )

    @classmethod
    def decode(cls, revision: int, body: bytes) -> StuckList:
        """The list :meth:`encode` wrote; raises ``ValueError`` if the body is malformed."""
        try:
            data = json.loads(body)
            saved_at = data.get("saved_at")
            return cls(
                revision,
                datetime.fromisoformat(saved_at) if saved_at else None,
                data.get("saved_by"),
                tuple(StuckEntry.from_json(item) for item in data["entries"]),
                tuple(Retried.from_json(item) for item in data.get("retried", [])),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"the saved stuck list is malformed: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class RetryRequest:
    """An operator's request to dispatch a stuck action (or, with no stream, every one) again."""

    number: int
    stream: str | None
    action_id: ActionId | None
    requested_at: datetime
    requested_by: str | None
    token: str

    @property
    def every(self) -> bool:
        """Whether the request is for every stuck action."""
        return self.stream is None

    def covers(self, stream: str, action_id: ActionId) -> bool:
        """Whether the request asks for this action."""
        return self.every or (self.stream == stream and self.action_id == action_id)

    def as_json(self) -> dict[str, Any]:
        """The request as plain JSON values."""
        return {
            "number": self.number,
            "stream": self.stream,
            "id": self.action_id,
            "all": self.every,
            "requested_at": self.requested_at.isoformat(),
            "requested_by": self.requested_by,
            "token": self.token,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryRequest:
        """The request :meth:`as_json` wrote."""
        stream = data.get("stream")
        return cls(
            int(data["number"]),
            None if stream is None else str(stream),
            None if stream is None else _action_id(data["id"]),
            datetime.fromisoformat(data["requested_at"]),
            data.get("requested_by"),
            str(data["token"]),
        )


# -- reading and writing (blocking: run off the event loop) --------------------------


def read_stuck(checkpoints: Checkpoints) -> StuckList:
    """The newest saved stuck list (empty at revision 0 if none was ever saved).

    Raises ``ValueError`` if the saved body is malformed.
    """
    found = checkpoints.load(STUCK_KEY)
    return StuckList() if found is None else StuckList.decode(*found)


def read_retry_requests(checkpoints: Checkpoints) -> tuple[int, list[RetryRequest]]:
    """The requests document's revision and the requests it keeps, oldest first.

    Raises ``ValueError`` if the saved body is malformed.
    """
    found = checkpoints.load(RETRY_REQUESTS_KEY)
    if found is None:
        return 0, []
    revision, body = found
    try:
        return revision, [RetryRequest.from_json(item) for item in json.loads(body)["requests"]]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"the saved retry requests are malformed: {exc!r}") from exc


def request_retry(
    checkpoints: Checkpoints,
    stream: str | None,
    action_id: ActionId | None,
    *,
    at: datetime,
    by: str | None = None,
) -> RetryRequest:
    """Ask the running engines to dispatch a stuck action again; return the request saved.

    ``stream`` None asks for every action stuck when an engine reads the
    request. The request is numbered by the revision that saved it.
    """
    token = secrets.token_hex(8)
    saved: list[RetryRequest] = []

    def change(revision: int, body: bytes | None) -> bytes | None:
        requests = _readable_requests(revision, body)
        mine = [r for r in requests if r.token == token]
        if mine:
            # Saved already: a writer after us made the read-back look lost.
            saved[:] = mine
            return None
        new = RetryRequest(revision + 1, stream, action_id, at, by, token)
        saved[:] = [new]
        kept = [*requests, new][-KEPT_REQUESTS:]
        return _dumps({"requests": [r.as_json() for r in kept]})

    update(checkpoints, RETRY_REQUESTS_KEY, change)
    return saved[0]


def update(
    checkpoints: Checkpoints, key: str, change: Callable[[int, bytes | None], bytes | None]
) -> None:
    """Replace the newest body under ``key`` by ``change(revision, body)`` at the next revision.

    ``change`` returns None when nothing needs saving. When another writer
    saved the next revision first, ``change`` runs again on theirs. Raises
    :class:`~fasm_es.errors.StoreError` if other writers keep winning.
    """
    for _ in range(WRITE_ATTEMPTS):
        found = checkpoints.load(key)
        revision, body = found if found is not None else (0, None)
        new = change(revision, body)
        if new is None:
            return
        checkpoints.save(key, revision + 1, new)
        if checkpoints.load(key) == (revision + 1, new):
            return
    raise StoreError(f"{key}: {WRITE_ATTEMPTS} saves in a row lost to other writers; try again")


def _readable_requests(revision: int, body: bytes | None) -> list[RetryRequest]:
    if body is None:
        return []
    try:
        return [RetryRequest.from_json(item) for item in json.loads(body)["requests"]]
    except (KeyError, TypeError, AttributeError, ValueError):
        # An unreadable document helps no one: the next request replaces it.
        return []


def _dumps(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _action_id(value: object) -> ActionId:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"an action id is an int or a str, not {value!r}")
    return value


def engine_name() -> str:
    """A name for one engine: host, process id, and a random part for engines sharing a process."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(2)}"


class StuckReporter:
    """One engine's side: saves its stuck list and picks up the retry requests meant for it.

    Its methods block on the checkpoints: the engine calls them in a worker
    thread, one at a time.
    """

    def __init__(
        self,
        checkpoints: Checkpoints,
        tracker: OutstandingTracker,
        clock: Clock,
        name: str | None = None,
    ) -> None:
        self.checkpoints = checkpoints
        self.tracker = tracker
        self.clock = clock
        self.name = name or engine_name()
        self.seen = 0
        self._published: tuple[Any, ...] | None = None
        self._retried: list[Retried] = []

    def begin(self) -> None:
        """Skip the requests made before the engine started (its restore dispatches them all)."""
        self.seen, _ = self._requests()

    def new_requests(self) -> list[RetryRequest]:
        """The retry requests made since the last call, oldest first."""
        revision, requests = self._requests()
        if revision <= self.seen:
            return []
        fresh = [r for r in requests if r.number > self.seen]
        self.seen = revision
        return fresh

    def _requests(self) -> tuple[int, list[RetryRequest]]:
        found = self.checkpoints.load(RETRY_REQUESTS_KEY)
        if found is None:
            return 0, []
        return found[0], _readable_requests(*found)

    def due(
        self, requests: Sequence[RetryRequest], stuck: Sequence[StuckAction]
    ) -> list[tuple[RetryRequest, StuckAction]]:
        """Each stuck action a request asks for (once, under the first request naming it)."""
        found: dict[IdempotencyKey, tuple[RetryRequest, StuckAction]] = {}
        for request in requests:
            for action in stuck:
                if action.key not in found and request.covers(action.stream, action.action_id):
                    found[action.key] = (request, action)
        return list(found.values())

    def retried(self, request: RetryRequest, action: StuckAction) -> None:
        """Note that ``action`` was dispatched again for ``request`` (saved by :meth:`publish`)."""
        self._retried.append(
            Retried(request.number, action.stream, action.action_id, self.name, self.clock.now())
        )

    def publish(
        self, stuck: Sequence[StuckAction], handling: Iterable[IdempotencyKey] = ()
    ) -> bool:
        """Save the stuck list if this engine's part changed since the last save; True if saved.

        ``handling`` are the actions this engine is dispatching now: another
        engine's entry for one of them is dropped, since it is being retried here.
        """
        signature = tuple((s.stream, s.action_id, s.attempts, s.last_error, s.since) for s in stuck)
        if signature == self._published and not self._retried:
            return False
        mine = [StuckEntry.of(s, self.name) for s in stuck]
        here = {entry.key for entry in mine} | {(k.stream, k.action_id) for k in handling}
        retried = list(self._retried)
        saved = False

        def change(revision: int, body: bytes | None) -> bytes | None:
            nonlocal saved
            current = _readable_stuck(revision, body)
            others = [e for e in current.entries if e.engine != self.name and e.key not in here]
            entries = mine + others
            if entries:
                # Read the log up to now, so that entries completed since are dropped.
                self.tracker.advance()
                index = self.tracker.index
                entries = [e for e in entries if index.holds(e.stream, e.action_id)]
            entries.sort(key=lambda e: (e.since, e.stream, str(e.action_id)))
            if tuple(entries) == current.entries and not retried:
                return None
            saved = True
            return StuckList(
                revision + 1,
                self.clock.now(),
                self.name,
                tuple(entries),
                (*current.retried, *retried)[-KEPT_RETRIED:],
            ).encode()

        update(self.checkpoints, STUCK_KEY, change)
        # Only now: if saving failed, the next call tries again with the same news.
        del self._retried[: len(retried)]
        self._published = signature
        return saved


def _readable_stuck(revision: int, body: bytes | None) -> StuckList:
    if body is None:
        return StuckList()
    try:
        return StuckList.decode(revision, body)
    except ValueError:
        # The engine rewrites an unreadable list rather than stop over it.
        return StuckList(revision)
