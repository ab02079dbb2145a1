"""The counter under deterministic simulation: ``SIMULATION`` is the spec.

Run it with ``python -m fasm_es.testing examples.counter.simulation:SIMULATION``
or from a test with :func:`fasm_es.testing.simulate`.

The counter emits no tracked actions, so the outside world is never asked
anything; the faults that matter here are crashes around the append, a
second writer, time passing, and now and then an increment so large that
the counter would pass its limit (rejected with
:class:`~examples.counter.Overflowed`).
"""

from __future__ import annotations

import random
from typing import Any

from examples.counter.machine import Counter, CounterState, Increment
from fasm_es import ActionId
from fasm_es.testing import Simulation

HUGE = (2**59, 2**62)
"""The range of the rare huge increments: a few of them reach the default limit."""


def inputs(rng: random.Random, stream: str, state: CounterState) -> Any:
    """Mostly small increments, a few huge ones, and now and then a malformed payload."""
    roll = rng.random()
    if roll < 0.958:
        return Increment(by=rng.randint(1, 10))
    if roll < 0.978:
        return Increment(by=rng.randint(*HUGE))
    if roll < 0.98:
        # Just enough to reach the limit exactly, or one too many when already there.
        return Increment(by=max(state.limit - state.value, 1))
    return rng.choice(({"by": 0}, {"by": -3}, {"step": 1}, {"by": "lots"}))


class NoWorld:
    """The counter's outside world: there is none, so being asked anything is a bug."""

    def answer(self, stream: str, action_id: ActionId, action: Any, rng: random.Random) -> Any:
        """Never called for a counter; raises :class:`TypeError` if it is."""
        raise TypeError(
            f"the counter emits no tracked actions, yet stream {stream!r} asked the world "
            f"to answer {action_id!r}: {action!r}"
        )


def within_limit(state: CounterState) -> str | None:
    """The value is never negative and never past the limit."""
    if not 0 <= state.value <= state.limit:
        return f"value {state.value} is outside 0..{state.limit}"
    return None


SIMULATION = Simulation(
    machine=Counter,
    inputs=inputs,
    world=NoWorld,
    invariants=[within_limit],
    streams=("visits", "downloads", "likes"),
)
