"""What a user gives the simulator: the machine, inputs, a world, invariants, fault rates."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from fasm_es.engine import Engine
from fasm_es.inputs import ActionId
from fasm_es.machine import StateMachine
from fasm_es.testing.virtual import EPOCH

S = TypeVar("S")
A_contra = TypeVar("A_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)

InputGenerator = Callable[[random.Random, str, Any], Any]
"""``inputs(rng, stream, state) -> value``: the next input for ``stream`` given its state.

Return ``None`` to submit nothing this step. Values may be invalid or
rejected on purpose: the simulator expects and checks both outcomes.
"""

Invariant = Callable[[Any], object]
"""``invariant(state)``: ``None``/``True``/an empty list when it holds; ``False``, a
message, or a list of messages when it does not; or it raises ``AssertionError``."""


def invariant_failure(check: Callable[[Any], object], state: Any) -> str | None:
    """What is wrong according to ``check(state)``, or ``None`` when it holds.

    A check holds when it returns ``None``, ``True`` or an empty list; it
    fails when it returns ``False``, a message or a list of messages, or
    raises ``AssertionError``: the convention of a
    :class:`~fasm_es.testing.Simulation`'s invariants.
    """
    try:
        verdict = check(state)
    except AssertionError as exc:
        return str(exc) or "assertion failed"
    if verdict is None or verdict is True or verdict == []:
        return None
    if isinstance(verdict, str):
        return verdict
    if isinstance(verdict, list | tuple) and all(isinstance(v, str) for v in verdict):
        return "; ".join(verdict)
    return repr(verdict)


class World(Protocol[A_contra, R_co]):
    """The outside systems: answers tracked actions, as a fake service would.

    ``rng`` is seeded from the run's seed and the action's idempotency key,
    so the same request gets the same answer in every run and in every
    shrunk replay. Keep its own state keyed by ``(stream, action_id)`` and
    apply each key at most once, as real services with idempotency keys do.
    """

    def answer(
        self, stream: str, action_id: ActionId, action: A_contra, rng: random.Random
    ) -> R_co:
        """The result of ``action`` (raise to make this attempt fail)."""
        ...


@dataclass(frozen=True)
class Faults:
    """How often each fault is injected (probabilities per chance, 0 to 1).

    - ``action_failure``: a handler call fails (the engine retries with backoff);
    - ``delay``: a step passes without delivering any answer (answers pile up
      and are then delivered in random order: reordering);
    - ``duplicate``: a delivered completion is delivered again later;
    - ``loss``: an answer is lost (the action stays in flight until a restart);
    - ``crash``: the engine process dies at a random point of the submit or
      dispatch path, then restarts from the log and restores;
    - ``conflict``: a second writer appends to a stream behind the engine's back;
    - ``time_jump``: time moves forward (timers and retry backoffs fire);
    - ``store_error``: the append of a submit or of a handler's completion
      raises :class:`~fasm_es.errors.StoreUnavailable` (the database went
      away), either before anything is stored or after the record is stored
      (a commit of unknown outcome); the engine goes on without a restart;
    - ``outage``: the chance that a store error begins an outage: the store
      then refuses its next 1 to ``max_outage_calls`` calls from the engine
      (reads and writes alike), or refuses them until
      ``max_outage_seconds`` of virtual time have passed, whichever ends
      first (a restart of the engine ends it too).
    """

    action_failure: float = 0.1
    delay: float = 0.3
    duplicate: float = 0.05
    loss: float = 0.03
    crash: float = 0.02
    conflict: float = 0.03
    time_jump: float = 0.05
    max_jump_seconds: float = 3600.0
    store_error: float = 0.02
    outage: float = 0.5
    max_outage_calls: int = 8
    max_outage_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.outage and (self.max_outage_calls < 1 or self.max_outage_seconds <= 0):
            raise ValueError(
                "an outage needs max_outage_calls >= 1 and max_outage_seconds > 0, got "
                f"{self.max_outage_calls} and {self.max_outage_seconds} (or set outage=0)"
            )

    @classmethod
    def none(cls) -> Faults:
        """No faults at all: the happy path only."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, store_error=0.0, outage=0.0)


@dataclass
class Simulation(Generic[S]):
    """A simulation spec: everything the simulator needs to run a machine.

    ``machine`` and ``world`` are factories: every run (and every shrink
    attempt) gets fresh ones. ``location`` is ``"module:attribute"`` where
    this spec can be imported for the one-line replay command; it is found
    automatically when the spec is a module-level name. ``determinism_every``
    samples live STF calls for the determinism check; ``snapshot_every`` makes
    the simulated engine snapshot at least that often, so restarts go through
    snapshots too (``None`` keeps the machine's own setting). ``engine`` is
    the engine class the simulator runs: :class:`~fasm_es.Engine`, or a
    subclass of it under test.
    """

    machine: Callable[[], StateMachine[S, Any, Any, Any, Any]]
    inputs: InputGenerator
    world: Callable[[], World[Any, Any]]
    invariants: Sequence[Invariant] = ()
    streams: Sequence[str] = ("s1", "s2", "s3")
    faults: Faults = field(default_factory=Faults)
    replay_every: int = 100
    determinism_every: int = 10
    snapshot_every: int | None = 50
    start: datetime = EPOCH
    location: str | None = None
    engine: type[Engine[Any, Any, Any, Any, Any]] = Engine
