"""Counters whose code no longer matches a log written by ``examples.counter:Counter``.

Each one changes one thing, so the replay check has one divergence to find:

- :class:`RejectsNow`: a new rule refuses increments above 2 (the STF rejects
  what was accepted);
- :class:`Quiet`: emits no notification for an increment of 1 (other actions);
- :class:`Capped`: also lowers the state's limit (same actions, other state);
- :class:`Exploding`: raises a plain exception (a bug) once the value passes 1;
- :class:`Renamed`: its input model is now called ``Add`` (records no longer decode).

:class:`Snapshotting` is the original counter taking a snapshot every 2 records.
"""

from __future__ import annotations

from pydantic import BaseModel, PositiveInt

from examples.counter import Counter, CounterState, Increment, Incremented
from fasm_es import Actions, Input, Normal, NoTracked, Rejection, StateMachine


class Snapshotting(Counter):
    """The original counter, with a snapshot every 2 records."""

    snapshot_every = 2


class TooBig(Rejection):
    """The new rule: increments above 2 are refused."""


class RejectsNow(Counter):
    """Refuses increments above 2, which the original accepted."""

    def stf(
        self,
        state: CounterState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        assert isinstance(input, Normal)
        if input.value.by > 2:
            raise TooBig(f"increments above 2 are refused, got {input.value.by}")
        super().stf(state, input, actions)


class Quiet(Counter):
    """Emits no notification for an increment of 1."""

    def stf(
        self,
        state: CounterState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        assert isinstance(input, Normal)
        if input.value.by == 1:
            state.value += 1
            return
        super().stf(state, input, actions)


class Capped(Counter):
    """Emits what the original did, but also lowers the limit in the state."""

    def stf(
        self,
        state: CounterState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        super().stf(state, input, actions)
        state.limit = 1000


class CappedWithoutSnapshots(Capped):
    """:class:`Capped` with snapshots turned off: stored snapshots are never loaded."""

    snapshot_every = None


class Exploding(Counter):
    """Raises a plain exception (not a rejection) once the value passes 1."""

    def stf(
        self,
        state: CounterState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        if state.value >= 1:
            raise ZeroDivisionError("division by zero")
        super().stf(state, input, actions)


class Add(BaseModel):
    """The increment, renamed: records tagged ``Increment`` no longer decode."""

    by: PositiveInt = 1


class Renamed(StateMachine[CounterState, Add, NoTracked, NoTracked, Incremented]):
    """The counter with its input model renamed and no upcaster."""

    def stf(
        self,
        state: CounterState,
        input: Input[Add, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        assert isinstance(input, Normal)
        actions.emit(Incremented(previous=state.value, current=state.value + input.value.by))
        state.value += input.value.by


class NeedsArguments(Counter):
    """A machine whose class cannot be instantiated without arguments."""

    def __init__(self, limit: int) -> None:
        self.limit = limit


NOT_A_MACHINE = 42
"""Something that is not a machine, for the loading errors."""

SNAPSHOTTING = Snapshotting()
"""An instance, to name with ``--machine`` instead of a class."""
