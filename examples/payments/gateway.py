"""A fake outside payment gateway that deduplicates by idempotency key, as real ones do.

Each charge key is applied at most once. A request repeating a key already
seen is refused and answered with the first outcome (and is counted, so a
test can see it happened). The gateway keeps one entry per key:

==============  ==========================================================
``charged``     the money moved
``declined``    the charge was refused (amount over ``decline_over``)
``voided``      cancelled, or asked about, before any charge arrived: a
                later charge with this key is refused as ``cancelled``
``refunded``    charged, then cancelled: the money went back
==============  ==========================================================

With a ``path`` the gateway keeps its ledger in an append-only file of JSON
lines (each write flushed and fsynced under a file lock), so it outlives the
processes that call it: a crash test can kill the engine, start another and
read what the gateway really did. Without one it lives in memory.

Failure injection: ``unreachable`` users' charges raise
:class:`GatewayUnavailable` before reaching the gateway; ``lose_answers``
users' charges are applied but the answer is lost on the way back (the call
raises :class:`AnswerLost`), so the caller retries under the same key.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from examples.payments.machine import Cancelled, Failed, NotFound, Success

State = Literal["charged", "declined", "voided", "refunded"]


class GatewayUnavailable(ConnectionError):
    """The request did not reach the gateway: nothing happened there."""


class AnswerLost(ConnectionError):
    """The gateway applied the request but its answer never came back."""


class FakeGateway:
    """A payment gateway keyed by idempotency key (see the module docstring)."""

    def __init__(self, path: Path | None = None, *, decline_over: int | None = None) -> None:
        self.path = path
        self.decline_over = decline_over
        self.unreachable: set[str] = set()
        self.lose_answers: set[str] = set()
        self._lock = threading.Lock()
        self._memory: list[dict[str, Any]] = []

    # -- the gateway's API ---------------------------------------------------------------

    def charge(self, key: str, amount: int, user: str) -> Success | Failed:
        """Charge ``amount`` under ``key``, once; a repeat gets the first outcome."""
        if user in self.unreachable:
            raise GatewayUnavailable(f"gateway unreachable for {user!r}")
        with self._ledger() as (entries, log):
            state = _fold(entries)
            known = state.get(key)
            if known is not None:
                log({"op": "charge", "key": key, "outcome": "duplicate", "state": known})
                return _charge_answer(known)
            new: State = (
                "declined"
                if self.decline_over is not None and amount > self.decline_over
                else "charged"
            )
            log({"op": "charge", "key": key, "outcome": new, "amount": amount, "user": user})
        if user in self.lose_answers:
            raise AnswerLost(f"the answer to charge {key} was lost")
        return _charge_answer(new)

    def status(self, key: str) -> Success | Failed | NotFound:
        """What became of the charge under ``key``; an unknown key is closed (voided)."""
        with self._ledger() as (entries, log):
            state = _fold(entries)
            known = state.get(key)
            if known is None:
                log({"op": "status", "key": key, "outcome": "voided"})
                return NotFound()
            log({"op": "status", "key": key, "outcome": "answered", "state": known})
            return _charge_answer(known)

    def cancel(self, key: str) -> Cancelled:
        """Void the charge under ``key``: refund it if it was charged."""
        with self._ledger() as (entries, log):
            state = _fold(entries)
            known = state.get(key)
            if known in ("charged", "refunded"):
                if known == "charged":
                    log({"op": "cancel", "key": key, "outcome": "refunded"})
                return Cancelled(refunded=True)
            if known is None:
                log({"op": "cancel", "key": key, "outcome": "voided"})
            return Cancelled(refunded=False)

    # -- what a test can check ------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """Every request the gateway saw, in order (duplicates included)."""
        with self._ledger() as (entries, _):
            return entries

    def charged(self) -> dict[str, int]:
        """Keys whose charge was applied, with the number of times (1, never more)."""
        counts: dict[str, int] = {}
        for e in self.entries():
            if e["op"] == "charge" and e["outcome"] == "charged":
                counts[e["key"]] = counts.get(e["key"], 0) + 1
        return counts

    def duplicates(self) -> list[str]:
        """Keys of charge requests refused as repeats, in order."""
        return [
            e["key"] for e in self.entries() if e["op"] == "charge" and e["outcome"] == "duplicate"
        ]

    def state_of(self, key: str) -> State | None:
        """The gateway's entry for ``key``, if any."""
        return _fold(self.entries()).get(key)

    # -- the ledger ---------------------------------------------------------------------

    @contextmanager
    def _ledger(self) -> Iterator[tuple[list[dict[str, Any]], Any]]:
        """The ledger's entries, and a function to append one, under the locks."""
        with self._lock:
            handle = open(self.path, "a+b") if self.path is not None else None  # noqa: SIM115
            try:
                if handle is not None:
                    fcntl.flock(handle, fcntl.LOCK_EX)

                def append(entry: dict[str, Any]) -> None:
                    entry = {**entry, "pid": os.getpid()}
                    if handle is None:
                        self._memory.append(entry)
                        return
                    handle.write(json.dumps(entry).encode() + b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())

                yield self._read(), append
            finally:
                if handle is not None:
                    handle.close()  # releases the file lock

    def _read(self) -> list[dict[str, Any]]:
        if self.path is None:
            return list(self._memory)
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def _fold(entries: list[dict[str, Any]]) -> dict[str, State]:
    state: dict[str, State] = {}
    for e in entries:
        outcome = e["outcome"]
        if outcome in ("charged", "declined", "voided", "refunded"):
            state[e["key"]] = outcome
    return state


def _charge_answer(state: State) -> Success | Failed:
    if state == "charged":
        return Success()
    reasons = {"declined": "declined", "voided": "cancelled", "refunded": "refunded"}
    return Failed(reason=reasons[state])
