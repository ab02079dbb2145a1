"""Actions an STF emits, and the bounded container it emits them into.

Actions are descriptions of side effects, executed only after the input that
emitted them is committed. A :class:`Tracked` action has an id; its result
comes back to the machine as a ``Completed(id, result)`` input. An
:class:`Untracked` action is fire-and-forget (it is still recorded in the log).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from pydantic import ConfigDict

from fasm_es.errors import ActionsFull
from fasm_es.inputs import ActionId

A = TypeVar("A")
U = TypeVar("U")
# Tracked and Untracked are immutable, so Tracked[Charge] is a Tracked[Charge | Refund].
A_co = TypeVar("A_co", covariant=True)
U_co = TypeVar("U_co", covariant=True)

DEFAULT_CAPACITY = 64


@dataclass(frozen=True, slots=True)
class Tracked(Generic[A_co]):
    """A side effect whose result must come back as ``Completed(id, result)``.

    ``(stream, id)`` is the action's stable idempotency key for the outside system.
    """

    id: ActionId
    action: A_co

    # Stored action entries are exact: an unexpected field is corrupt data.
    __pydantic_config__ = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class Untracked(Generic[U_co]):
    """A fire-and-forget side effect; no result comes back."""

    action: U_co

    __pydantic_config__ = ConfigDict(extra="forbid")


Action: TypeAlias = Tracked[A] | Untracked[U]


class Actions(Generic[A, U]):
    """The bounded, ordered list of actions one STF call emits.

    As fasm's fallible ``ActionsContainer``: :meth:`add` past ``capacity``
    raises :class:`~fasm_es.errors.ActionsFull`, which the STF may catch.
    Left unhandled it rejects the input (it is a :class:`Rejection`).
    """

    __slots__ = ("_items", "capacity")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError(f"actions capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._items: list[Tracked[A] | Untracked[U]] = []

    def add(self, action: Tracked[A] | Untracked[U]) -> None:
        """Append ``action``; raises :class:`ActionsFull` when at capacity."""
        if len(self._items) >= self.capacity:
            raise ActionsFull(self.capacity)
        self._items.append(action)

    def track(self, id: ActionId, action: A) -> None:
        """Shorthand for ``add(Tracked(id, action))``."""
        self.add(Tracked(id, action))

    def emit(self, action: U) -> None:
        """Shorthand for ``add(Untracked(action))``."""
        self.add(Untracked(action))

    def clear(self) -> None:
        """Remove every action (the container keeps its capacity)."""
        self._items.clear()

    def remaining(self) -> int:
        """How many more actions fit."""
        return self.capacity - len(self._items)

    def tracked(self) -> list[Tracked[A]]:
        """The tracked actions, in emission order."""
        return [a for a in self._items if isinstance(a, Tracked)]

    def untracked(self) -> list[Untracked[U]]:
        """The untracked actions, in emission order."""
        return [a for a in self._items if isinstance(a, Untracked)]

    def to_tuple(self) -> tuple[Tracked[A] | Untracked[U], ...]:
        """A snapshot of the emitted actions, in order."""
        return tuple(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Tracked[A] | Untracked[U]]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"Actions(capacity={self.capacity}, items={self._items!r})"
