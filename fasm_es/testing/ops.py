"""The steps of a simulation, as data: a run is a list of them, to shrink and replay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

AppendPoint = Literal["before_append", "after_append"]
"""Where a fault meets an append: before it (nothing stored) or after it (stored)."""
Outcome = Literal["ok", "fail", "lose", "crash"]


def _store_fails(point: AppendPoint, outage: int) -> str:
    if point == "before_append":
        text = "the store fails before the append: nothing stored"
    else:
        text = "the store fails after the append: stored, outcome unknown to the engine"
    if outage:
        text += f"; then it refuses its next {outage} call{'s' if outage > 1 else ''} (an outage)"
    return text


@dataclass(frozen=True, slots=True)
class Submit:
    """Submit ``value`` to ``stream``.

    With ``crash`` the engine dies at that point of commit; with
    ``store_error`` the append raises :class:`~fasm_es.errors.StoreUnavailable`
    at that point (after it: the record is stored although the caller gets
    the error) and the engine goes on. ``outage`` more store calls then fail
    the same way, reads and writes alike, before doing anything (an outage,
    which also ends after a while of virtual time, or when the engine is
    killed).
    """

    stream: str
    value: Any
    crash: AppendPoint | None = None
    store_error: AppendPoint | None = None
    outage: int = 0

    def describe(self) -> str:
        where = f" (engine killed {self.crash.replace('_', ' ')})" if self.crash else ""
        if self.store_error:
            where += f" ({_store_fails(self.store_error, self.outage)})"
        return f"submit {self.stream!r} {self.value!r}{where}"


@dataclass(frozen=True, slots=True)
class Deliver:
    """Answer the ``pick``-th waiting request (modulo how many wait) with ``outcome``.

    ``ok``: the world answers; ``fail``: the handler call fails (the engine
    retries); ``lose``: the answer never arrives; ``crash``: the world applies
    the action, then the engine dies before it hears the answer. With
    ``store_error`` (and ``ok``) the append of the answer's completion
    raises :class:`~fasm_es.errors.StoreUnavailable` at that point: the
    engine's dispatcher retries. ``outage`` as for :class:`Submit`.
    """

    pick: int
    outcome: Outcome
    store_error: AppendPoint | None = None
    outage: int = 0

    def describe(self) -> str:
        where = f"; {_store_fails(self.store_error, self.outage)}" if self.store_error else ""
        return f"deliver request #{self.pick} ({self.outcome}{where})"


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Deliver again the ``pick``-th completion delivered so far (modulo their number)."""

    pick: int

    def describe(self) -> str:
        return f"deliver completion #{self.pick} again"


@dataclass(frozen=True, slots=True)
class Late:
    """Deliver the ``pick``-th answer orphaned by a crash to the restarted engine."""

    pick: int

    def describe(self) -> str:
        return f"deliver orphaned answer #{self.pick} late"


@dataclass(frozen=True, slots=True)
class Crash:
    """Kill the engine between steps, then restart it from the log."""

    def describe(self) -> str:
        return "kill the engine and restart it"


@dataclass(frozen=True, slots=True)
class Conflict:
    """A second writer submits ``value`` to ``stream`` behind the engine's back."""

    stream: str
    value: Any

    def describe(self) -> str:
        return f"second writer submits {self.stream!r} {self.value!r}"


@dataclass(frozen=True, slots=True)
class Advance:
    """Let ``seconds`` of virtual time pass (timers and retry backoffs fire)."""

    seconds: float

    def describe(self) -> str:
        return f"advance time {self.seconds:g}s"


Op: TypeAlias = Submit | Deliver | Duplicate | Late | Crash | Conflict | Advance
