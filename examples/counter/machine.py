"""The counter machine."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, PositiveInt

from fasm_es import Actions, Input, Normal, NoTracked, Rejection, StateMachine


class CounterState(BaseModel):
    """The running total."""

    value: int = 0
    limit: int = 2**63 - 1


class Increment(BaseModel):
    """Add ``by`` (at least 1) to the counter."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a default

    by: PositiveInt = 1


class Incremented(BaseModel):
    """Untracked notification: the counter went from ``previous`` to ``current``."""

    previous: int
    current: int


class Overflowed(Rejection):
    """The increment would pass the counter's limit."""


class Counter(StateMachine[CounterState, Increment, NoTracked, NoTracked, Incremented]):
    """Counts; rejects increments past the limit."""

    def stf(
        self,
        state: CounterState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        assert isinstance(input, Normal)  # a counter emits no tracked actions
        previous = state.value
        current = previous + input.value.by
        if current > state.limit:
            raise Overflowed(f"{previous} + {input.value.by} passes the limit {state.limit}")
        actions.emit(Incremented(previous=previous, current=current))
        state.value = current
