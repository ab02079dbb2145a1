"""Watching an STF from the inside: determinism, and fasm's atomicity rule.

:func:`probe` returns the user's machine with its ``stf`` wrapped. Every
``every``-th call runs the STF first on a copy of the state and then for
real, and compares the two outcomes (state after, actions, rejection): an STF
that reads the wall clock, draws from an unseeded generator or iterates in an
order that varies gives two different outcomes and is reported. When a sampled
call rejects after changing the state, that is noted as a finding: fasm-es
keeps its promise regardless (the state is refolded), but under fasm's own
rules such an STF would corrupt in-memory state.
"""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from fasm_es.actions import Actions
from fasm_es.errors import MachineError, Rejection
from fasm_es.machine import StateMachine, drive
from fasm_es.streams import Streams


class NondeterministicStf(MachineError):
    """The STF gave two different outcomes for the same input on equal states."""


@dataclass
class Findings:
    """What the probe noticed that is worth telling but is not a failure."""

    mutates_before_rejecting: list[str] = field(default_factory=list)
    probed_calls: int = 0


def _outcome(
    stf: Callable[..., Any], machine: StateMachine[Any, Any, Any, Any, Any], state: Any, inp: Any
) -> tuple[Any, tuple[Any, ...], str | None]:
    actions: Actions[Any, Any] = machine.new_actions()
    try:
        drive(stf(machine, state, inp, actions), machine.name, "stf")
    except Exception as exc:
        return state, actions.to_tuple(), f"{type(exc).__name__}: {exc}"
    return state, actions.to_tuple(), None


def _differences(first: tuple[Any, ...], second: tuple[Any, ...]) -> str | None:
    for label, a, b in zip(("state", "actions", "outcome"), first, second, strict=True):
        if a != b:
            return f"{label}: first run {a!r}, second run {b!r}"
    return None


def probe(
    machine: StateMachine[Any, Any, Any, Any, Any],
    every: int,
    findings: Findings,
    snapshot_every: int | None = None,
) -> StateMachine[Any, Any, Any, Any, Any]:
    """A machine like ``machine`` whose every ``every``-th live STF call is double-checked.

    With ``snapshot_every``, snapshots are also taken at least that often, so
    restarts in a simulation load through snapshots (and test them).
    """
    original = type(machine).stf
    calls = itertools.count()
    live = Streams.stage.__code__

    def stf(self: StateMachine[Any, Any, Any, Any, Any], state: Any, inp: Any, actions: Any) -> Any:
        # Only live calls (from Streams.stage) are probed: a refold after a
        # rejection or a restart replays inputs already checked when they were live.
        if every > 0 and sys._getframe(1).f_code is live and next(calls) % every == 0:
            findings.probed_calls += 1
            trial = _outcome(original, self, clone(state), inp)
            # The trial ran on a copy, so the untouched state tells whether a
            # rejecting STF changed its state first (the real run will do the same).
            mutated = trial[2] is not None and trial[0] != state
            real_actions: Actions[Any, Any] = self.new_actions()
            try:
                drive(original(self, state, inp, real_actions), self.name, "stf")
            except Exception as exc:
                real = (state, real_actions.to_tuple(), f"{type(exc).__name__}: {exc}")
                _compare(self, inp, trial, real)
                if isinstance(exc, Rejection) and mutated:
                    findings.mutates_before_rejecting.append(
                        f"{type(exc).__name__} after changing state, for input {inp!r}"
                    )
                raise
            _compare(self, inp, trial, (state, real_actions.to_tuple(), None))
            for action in real_actions:
                actions.add(action)
            return None
        return original(self, state, inp, actions)

    attributes: dict[str, Any] = {"stf": stf, "name": machine.name}
    if snapshot_every is not None and (
        machine.snapshot_every is None or machine.snapshot_every > snapshot_every
    ):
        attributes["snapshot_every"] = snapshot_every
    probed = type(f"Probed{type(machine).__name__}", (type(machine),), attributes)
    instance = copy.copy(machine)
    instance.__class__ = probed
    return instance


def clone(state: Any) -> Any:
    """An equal, independent copy of ``state``.

    A pydantic model is copied by dumping it to JSON-able values and
    validating them again: nothing is shared with the original, and it is
    several times faster than ``copy.deepcopy`` on a large state. The copy is
    used only if it compares equal to the original, else a deep copy is made.
    """
    if isinstance(state, BaseModel):
        try:
            copied = type(state).model_validate(state.model_dump(mode="json", round_trip=True))
        except Exception:  # any failure: the deep copy below is always right
            copied = None
        if copied is not None and copied == state and copied is not state:
            return copied
    return copy.deepcopy(state)


def _compare(
    machine: StateMachine[Any, Any, Any, Any, Any],
    inp: Any,
    trial: tuple[Any, ...],
    real: tuple[Any, ...],
) -> None:
    difference = _differences(trial, real)
    if difference is not None:
        raise NondeterministicStf(
            f"machine {machine.name}: the STF is not deterministic: the same input {inp!r} on "
            f"equal states gave different results ({difference}); read time from "
            "input.meta.accepted_at, randomness from state, and iterate in a fixed order"
        )
