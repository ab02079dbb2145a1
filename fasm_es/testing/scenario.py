"""Given/when/then: unit tests of a machine that read like its rules.

::

    from fasm_es.testing import completed, scenario

    (
        scenario(CoffeeShop())
        .given(EarnPoints(order_id="o1", points=50))
        .when(RequestRedemption(reward="cake", cost=30))
        .then_state(points=20)
        .then_actions([Tracked(1, Redeem(redemption_id=1, reward="cake", cost=30)), ...])
    )

    scenario(CoffeeShop()).when(RequestRedemption(reward="cake", cost=30)).then_rejects(
        InsufficientPoints
    )

Each ``given`` step is an input value, :func:`completed` (the result of a
tracked action emitted earlier) or :func:`elapsed` (time passes); all of
them must be accepted. ``when`` takes one input value or :func:`completed`.
The steps run through a real :class:`~fasm_es.Streams` on ``memory://``,
with a :class:`~fasm_es.ManualClock` fixed at ``start`` (moved only by
:func:`elapsed`), so every run is the same. Before the first ``then_*``
check, the log is replayed and must re-emit what was recorded (DESIGN
guarantee 3). A failed check raises ``AssertionError`` showing the steps,
what was expected, what happened, and where the two differ.

Scenarios are immutable: one ``given`` can be shared by several ``when``\\ s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from fasm_es.actions import Tracked, Untracked
from fasm_es.clock import ManualClock
from fasm_es.errors import CompletionNotOutstanding, FasmError, InvalidInput, Rejection
from fasm_es.inputs import ActionId
from fasm_es.machine import StateMachine
from fasm_es.record import Record
from fasm_es.store import open_store
from fasm_es.streams import Streams
from fasm_es.testing.spec import invariant_failure
from fasm_es.testing.virtual import EPOCH

S = TypeVar("S")

MAX_DIFFERENCES = 20
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class CompletedStep:
    """A step delivering ``result`` for the tracked action ``id`` (see :func:`completed`)."""

    id: ActionId
    result: Any

    def __repr__(self) -> str:
        return f"completed({self.id!r}, {self.result!r})"


@dataclass(frozen=True, slots=True)
class ElapsedStep:
    """A step moving the scenario's clock on by ``delta`` (see :func:`elapsed`)."""

    delta: timedelta

    def __repr__(self) -> str:
        return f"elapsed({self.delta.total_seconds():g}s)"


def completed(action_id: ActionId, result: Any) -> CompletedStep:
    """The result of the tracked action ``action_id``, as a step (``Completed(id, result)``)."""
    return CompletedStep(action_id, result)


def elapsed(delta: timedelta | float) -> ElapsedStep:
    """Time passes: ``delta`` (a timedelta or seconds) later, the next step is accepted.

    Only the clock moves: a durable timer does not fire by itself here; give
    its completion (``completed(id, TimerFired(at=...))``) as a step.
    """
    step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
    if step < timedelta(0):
        raise ValueError("time cannot move backwards in a scenario")
    return ElapsedStep(step)


class ScenarioError(AssertionError):
    """A ``given`` step was not accepted, so the scenario cannot reach its ``when``."""


@dataclass(frozen=True)
class Scenario(Generic[S]):
    """A machine and the steps given so far; build one with :func:`scenario`."""

    machine: StateMachine[S, Any, Any, Any, Any]
    steps: tuple[Any, ...] = ()
    stream: str = "scenario"
    start: datetime = EPOCH
    actor: str = "scenario"

    def given(self, *steps: Any) -> Scenario[S]:
        """A scenario with ``steps`` (input values, :func:`completed`, :func:`elapsed`) added."""
        return dataclasses.replace(self, steps=self.steps + steps)

    def when(self, step: Any) -> Outcome[S]:
        """The outcome of ``step`` (an input value or :func:`completed`) after the given steps.

        It runs at the first ``then_*`` check, once.
        """
        if isinstance(step, ElapsedStep):
            raise TypeError("when(...) takes an input or completed(...); put elapsed() in given()")
        return Outcome(self, step)

    def state(self) -> S:
        """The state after the given steps (raises :class:`ScenarioError` if one is refused)."""
        streams = self._run_given()
        return streams.state(self.stream)

    def _run_given(self) -> Streams[S, Any, Any, Any, Any]:
        clock = ManualClock(self.start)
        streams = Streams(self.machine, open_store("memory://"), clock=clock)
        for number, step in enumerate(self.steps, 1):
            if isinstance(step, ElapsedStep):
                clock.advance(step.delta)
                continue
            try:
                _apply(streams, self.stream, step, self.actor)
            except (Rejection, InvalidInput, CompletionNotOutstanding) as exc:
                raise ScenarioError(
                    f"{self._header()}: given step {number} of {len(self.steps)} ({step!r}) was "
                    f"not accepted: {type(exc).__name__}: {exc}\n{self._describe()}\n"
                    "every given step must be accepted; to check a refusal, make it the when step"
                ) from exc
        return streams

    def _header(self) -> str:
        return f"scenario of machine {self.machine.name}"

    def _describe(self, when: Any = _MISSING) -> str:
        lines = ["  given:"] if self.steps else ["  given: nothing"]
        lines += [f"    {n}. {step!r}" for n, step in enumerate(self.steps, 1)]
        if when is not _MISSING:
            lines.append(f"  when: {when!r}")
        return "\n".join(lines)


def scenario(
    machine: StateMachine[S, Any, Any, Any, Any],
    *,
    stream: str = "scenario",
    start: datetime = EPOCH,
    actor: str = "scenario",
) -> Scenario[S]:
    """Start a given/when/then scenario for ``machine`` (an instance).

    Steps are submitted to ``stream`` by ``actor``; the clock stands at
    ``start`` until an :func:`elapsed` step moves it.
    """
    if start.tzinfo is None:
        raise ValueError("a scenario's start time must be timezone-aware")
    return Scenario(machine, (), stream, start, actor)


def _apply(
    streams: Streams[Any, Any, Any, Any, Any], stream: str, step: Any, actor: str
) -> Record[Any, Any, Any, Any]:
    if isinstance(step, CompletedStep):
        return streams.complete(stream, step.id, step.result, actor=actor)
    return streams.submit(stream, step, actor=actor)


class Outcome(Generic[S]):
    """What happened to the ``when`` step; check it with the ``then_*`` methods (chainable)."""

    def __init__(self, scenario: Scenario[S], step: Any) -> None:
        self.scenario = scenario
        self.step = step
        self._ran = False
        self._streams: Streams[S, Any, Any, Any, Any] | None = None
        self._record: Record[Any, Any, Any, Any] | None = None
        self._error: Exception | None = None

    def _run(self) -> Streams[S, Any, Any, Any, Any]:
        if self._streams is not None:
            return self._streams
        streams = self.scenario._run_given()
        stream = self.scenario.stream
        before = streams.version(stream)
        try:
            self._record = _apply(streams, stream, self.step, self.scenario.actor)
        except Exception as exc:
            self._error = exc
            if isinstance(exc, FasmError) and streams.store.last_version(stream) != before:
                raise self._failure(f"the refused input appended a record ({exc!r})") from exc
        try:
            streams.verify_replay(stream)
        except FasmError as exc:
            raise self._failure(f"replaying the scenario's log fails: {exc}") from exc
        self._streams = streams
        return streams

    def _failure(self, what: str, *details: str) -> AssertionError:
        lines = [f"{self.scenario._header()}: {what}", self.scenario._describe(self.step)]
        lines += [f"  {d}" for d in details]
        return AssertionError("\n".join(lines))

    def _accepted(self, checking: str) -> Record[Any, Any, Any, Any]:
        self._run()
        if self._error is not None:
            raise self._failure(
                f"expected the input to be accepted (to check its {checking}), but it was "
                f"refused: {type(self._error).__name__}: {self._error}"
            ) from self._error
        assert self._record is not None
        return self._record

    @property
    def record(self) -> Record[Any, Any, Any, Any]:
        """The record the accepted ``when`` step appended (fails if it was refused)."""
        return self._accepted("record")

    @property
    def state(self) -> S:
        """The stream's state after the ``when`` step (its state before, if refused)."""
        return self._run().state(self.scenario.stream)

    def then_state(self, expected: S = _MISSING, /, **fields: Any) -> Outcome[S]:
        """The input was accepted and the state equals ``expected``.

        With keyword arguments instead, only those attributes are compared
        (``then_state(points=20, pending=None)``).
        """
        self._accepted("state")
        actual = self.state
        if expected is not _MISSING and fields:
            raise TypeError("then_state takes an expected state or fields to compare, not both")
        if expected is _MISSING and not fields:
            raise TypeError("then_state needs the expected state or fields to compare")
        if expected is not _MISSING:
            problems = differences(expected, actual, "state")
            if problems:
                raise self._failure(
                    "the state after the input is not the expected one",
                    "differences:",
                    *(f"  {p}" for p in problems),
                    f"expected: {expected!r}",
                    f"actual:   {actual!r}",
                )
            return self
        problems = []
        for name, value in fields.items():
            got = _field(actual, name)
            if got is _MISSING:
                problems.append(f"state.{name}: the state has no such field")
            else:
                problems += differences(value, got, f"state.{name}")
        if problems:
            raise self._failure(
                "the state after the input does not have the expected fields",
                "differences:",
                *(f"  {p}" for p in problems[:MAX_DIFFERENCES]),
                f"actual: {actual!r}",
            )
        return self

    def then_actions(self, expected: Iterable[Tracked[Any] | Untracked[Any]]) -> Outcome[S]:
        """The input was accepted and emitted exactly ``expected``, in order."""
        wanted = list(expected)
        actual = list(self._accepted("actions").actions)
        if wanted != actual:
            raise self._failure(
                "the actions emitted are not the expected ones",
                _first_difference(wanted, actual),
                f"expected: {wanted!r}",
                f"actual:   {actual!r}",
            )
        return self

    def then_outstanding(self, expected: Mapping[ActionId, Any] | Iterable[ActionId]) -> Outcome[S]:
        """The tracked actions still awaiting a result are ``expected`` (ids, or ids to actions)."""
        outstanding = self._run().outstanding(self.scenario.stream)
        if isinstance(expected, Mapping):
            if dict(expected) != outstanding:
                raise self._failure(
                    "the outstanding tracked actions are not the expected ones",
                    *(f"  {p}" for p in differences(dict(expected), outstanding, "outstanding")),
                    f"expected: {dict(expected)!r}",
                    f"actual:   {outstanding!r}",
                )
            return self
        wanted = list(expected)
        if sorted(map(repr, wanted)) != sorted(map(repr, outstanding)):
            raise self._failure(
                "the outstanding tracked action ids are not the expected ones",
                f"expected: {sorted(wanted, key=repr)!r}",
                f"actual:   {sorted(outstanding, key=repr)!r}",
            )
        return self

    def then_rejects(
        self, error: type[Exception] = Rejection, *, match: str | None = None
    ) -> Outcome[S]:
        """The input was refused with ``error`` (a subclass of it), whose message contains
        ``match`` if given; nothing was appended."""
        self._run()
        if self._error is None:
            assert self._record is not None
            raise self._failure(
                f"expected the input to be refused with {error.__name__}, but it was accepted",
                f"actions: {list(self._record.actions)!r}",
                f"state:   {self.state!r}",
            )
        if not isinstance(self._error, error):
            raise self._failure(
                f"expected the input to be refused with {error.__name__}, but it was refused "
                f"with {type(self._error).__name__}: {self._error}"
            ) from self._error
        if match is not None and match not in str(self._error):
            raise self._failure(
                f"the input was refused with {type(self._error).__name__}, but its message "
                f"does not contain {match!r}",
                f"message: {self._error}",
            )
        return self

    def then(self, check: Callable[[S], object]) -> Outcome[S]:
        """The input was accepted and ``check(state)`` holds (an invariant: ``None``,
        ``True`` or ``[]`` when it holds; ``False``, messages, or ``AssertionError`` when not)."""
        self._accepted("state")
        state = self.state
        problem = invariant_failure(check, state)
        if problem is not None:
            name = getattr(check, "__name__", repr(check))
            raise self._failure(f"{name} does not hold: {problem}", f"state: {state!r}")
        return self


def _field(state: Any, name: str) -> Any:
    if isinstance(state, Mapping):
        return state.get(name, _MISSING)
    return getattr(state, name, _MISSING)


def differences(expected: Any, actual: Any, path: str = "value") -> list[str]:
    """Where ``actual`` differs from ``expected``, one line per differing leaf (at most 20).

    Models and dataclasses are compared field by field, mappings key by key,
    sequences item by item.
    """
    found: list[str] = []
    _diff(expected, actual, path, found)
    if len(found) > MAX_DIFFERENCES:
        found = [*found[:MAX_DIFFERENCES], f"... and {len(found) - MAX_DIFFERENCES} more"]
    return found


def _diff(expected: Any, actual: Any, path: str, found: list[str]) -> None:
    if expected == actual:
        return
    if type(expected) is not type(actual):
        found.append(f"{path}: expected {expected!r}, actual {actual!r}")
        return
    if isinstance(expected, BaseModel):
        names = list(type(expected).model_fields)
        for name in names:
            _diff(getattr(expected, name), getattr(actual, name), f"{path}.{name}", found)
        if not found:
            found.append(f"{path}: expected {expected!r}, actual {actual!r}")
        return
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        for field in dataclasses.fields(expected):
            sub = f"{path}.{field.name}"
            _diff(getattr(expected, field.name), getattr(actual, field.name), sub, found)
        return
    if isinstance(expected, Mapping):
        for key in expected:
            if key not in actual:
                found.append(f"{path}[{key!r}]: expected {expected[key]!r}, actual missing")
            else:
                _diff(expected[key], actual[key], f"{path}[{key!r}]", found)
        for key in actual:
            if key not in expected:
                found.append(f"{path}[{key!r}]: not expected, actual {actual[key]!r}")
        return
    if isinstance(expected, list | tuple):
        for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
            _diff(want, got, f"{path}[{index}]", found)
        if len(expected) != len(actual):
            found.append(f"{path}: expected {len(expected)} items, actual {len(actual)}")
        return
    found.append(f"{path}: expected {expected!r}, actual {actual!r}")


def _first_difference(expected: list[Any], actual: list[Any]) -> str:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return f"first difference at action #{index}: expected {want!r}, actual {got!r}"
    return f"expected {len(expected)} actions, actual {len(actual)}"


__all__ = [
    "CompletedStep",
    "ElapsedStep",
    "Outcome",
    "Scenario",
    "ScenarioError",
    "completed",
    "differences",
    "elapsed",
    "invariant_failure",
    "scenario",
]
