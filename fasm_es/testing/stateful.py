"""A hypothesis rule-based state machine built from a machine definition.

:func:`machine_test` returns a :class:`hypothesis.stateful.RuleBasedStateMachine`
subclass whose rules drive a real :class:`~fasm_es.Streams` on an in-memory
store, with a :class:`~fasm_es.ManualClock`::

    CoffeeShopTest = machine_test(CoffeeShop, world=RewardsWorld, invariants=[points_are_conserved])
    TestCoffeeShop = CoffeeShopTest.TestCase  # collected by pytest

The rules (hypothesis picks them, and shrinks a failing sequence to a short one):

- ``submit``: submit an input drawn from the declared input type (or from
  the strategy given) to one of the streams; a rejection or an invalid
  payload must append nothing. One submit in ten (``crash=...``) kills the
  process just before or just after the append, then restarts it as
  ``crash_and_restore`` does;
- ``complete_from_world`` / ``complete_with_result``: answer a tracked
  action in flight, with the world's answer or with a result drawn from the
  declared result type;
- ``duplicate_completion``: deliver again a completion already accepted: it
  must raise :class:`~fasm_es.CompletionNotOutstanding` and change nothing;
- ``crash_and_restore``: drop the streams object (every cached state goes),
  reopen it on the same store, and run restore on every stream: it must
  re-issue every outstanding tracked id (timers are re-armed by the engine
  itself), and what it re-issues is what is in flight from then on;
- ``advance_time``: move the clock; durable timers whose time has come fire.

After every step, on every stream: the live state equals the fold of the
log (and each record re-emits its recorded actions), the log's outstanding
ids are the ones in flight, and the user's invariants hold.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, cast

import hypothesis
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from hypothesis.strategies import SearchStrategy

from fasm_es.actions import Tracked
from fasm_es.clock import ManualClock
from fasm_es.errors import (
    CompletionNotOutstanding,
    InvalidInput,
    MachineError,
    Rejection,
    ReplayDivergence,
)
from fasm_es.fold import StreamState, apply_record, initial
from fasm_es.inputs import ActionId, Normal
from fasm_es.machine import StateMachine
from fasm_es.record import Record
from fasm_es.store import EventStore, open_store
from fasm_es.streams import Streams
from fasm_es.testing import strategies
from fasm_es.testing.spec import Invariant, Simulation, World, invariant_failure
from fasm_es.testing.virtual import EPOCH
from fasm_es.timers import Timer, TimerFired

ACTOR = "hypothesis"
DEFAULT_SETTINGS = hypothesis.settings(
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[phase for phase in hypothesis.Phase if phase is not hypothesis.Phase.explain],
)
PICK = st.integers(min_value=0, max_value=1 << 16)
CRASH_POINTS = ("before_append", "after_append")
# One submit in ten kills the process around its append; shrinking leads to no crash.
CRASHES = st.integers(min_value=0, max_value=9).map(
    lambda n: CRASH_POINTS[n - 8] if n >= 8 else None
)

MachineFactory = Callable[[], StateMachine[Any, Any, Any, Any, Any]]
InputSource = SearchStrategy[Any] | Callable[[str, Any], SearchStrategy[Any]]
"""A strategy for input values, or ``(stream, state) -> strategy`` for inputs that
depend on the stream's current state (a copy of it)."""


def _note(what: str) -> None:
    """Count ``what`` in hypothesis's statistics (a no-op when a rule is called by hand)."""
    with contextlib.suppress(InvalidArgument):
        event(what)


@dataclass(frozen=True)
class _Config:
    machine: MachineFactory
    world: Callable[[], World[Any, Any]] | None
    invariants: tuple[Invariant, ...]
    streams: tuple[str, ...]
    start: datetime


class MachineTest(RuleBasedStateMachine):
    """The rules and checks shared by every class :func:`machine_test` builds.

    Not used directly: :func:`machine_test` subclasses it with the rules whose
    strategies depend on the machine. ``streams`` is the
    :class:`~fasm_es.Streams` under test, ``store`` its in-memory store,
    ``clock`` the manual clock, ``in_flight`` the tracked actions awaiting
    an answer by ``(stream, action id)``.
    """

    config: ClassVar[_Config]

    def __init__(self) -> None:
        super().__init__()
        self.store: EventStore = open_store("memory://")
        self.clock = ManualClock(self.config.start)
        self.streams: Streams[Any, Any, Any, Any, Any] = self._open()
        self.world = self.config.world() if self.config.world is not None else None
        self.in_flight: dict[tuple[str, ActionId], Any] = {}
        self.completions: list[tuple[str, ActionId, Any]] = []
        self.attempts: dict[tuple[str, ActionId], int] = {}
        self.folds: dict[str, StreamState[Any, Any]] = {}

    def _open(self) -> Streams[Any, Any, Any, Any, Any]:
        return Streams(self.config.machine(), self.store, clock=self.clock)

    def teardown(self) -> None:
        """Close the in-memory store."""
        self.store.close()

    # -- what the generated rules call --------------------------------------------------

    def do_submit(self, stream: str, value: Any, crash: str | None = None) -> None:
        """Submit ``value``; a rejected or invalid one must append nothing.

        With ``crash`` (``"before_append"`` or ``"after_append"``) the process
        dies at that point of the submit, then restarts (:meth:`crash_and_restore`).
        """
        if value is None:
            return
        if crash is not None:
            try:
                inp = Normal(
                    self.streams.codec.validate_input(value), self.streams.meta(actor=ACTOR)
                )
                staged = self.streams.stage(stream, inp)
                if crash == "after_append":
                    self.streams.commit([staged])
            except (Rejection, InvalidInput):
                pass
            _note(f"submit: process killed {crash.replace('_', ' ')}")
            self.crash_and_restore()
            return
        before = self.store.last_version(stream)
        try:
            record = self.streams.submit(stream, value, actor=ACTOR)
        except (Rejection, InvalidInput) as exc:
            _note(f"submit: {'invalid' if isinstance(exc, InvalidInput) else 'rejected'}")
            self._check_nothing_appended(stream, before, f"a {type(exc).__name__}")
            return
        _note("submit: accepted")
        self._track(record)

    def do_complete(self, pick: int, result: Any) -> None:
        """Answer the ``pick``-th answerable action in flight with ``result`` (or the world's)."""
        answerable = [k for k, a in self.in_flight.items() if not isinstance(a, Timer)]
        if not answerable:
            return
        key = answerable[pick % len(answerable)]
        if self.world is not None:
            stream, action_id = key
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            rng = random.Random(f"{stream}/{action_id!r}/{attempt}")
            try:
                result = self.world.answer(stream, action_id, self.in_flight[key], rng)
            except AssertionError:
                raise
            except Exception:
                _note("completion: the world failed the call")
                return  # the action stays in flight
        self._deliver(key, result)

    def do_advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``, then fire every timer whose time has come."""
        now = self.clock.advance(seconds)
        due = [(a.at, k) for k, a in self.in_flight.items() if isinstance(a, Timer) and a.at <= now]
        for at, key in sorted(due, key=lambda pair: pair[0]):
            if key in self.in_flight:
                self._deliver(key, TimerFired(at=at))

    def _deliver(self, key: tuple[str, ActionId], result: Any) -> None:
        stream, action_id = key
        before = self.store.last_version(stream)
        try:
            record = self.streams.complete(stream, action_id, result, actor=ACTOR)
        except CompletionNotOutstanding as exc:
            raise AssertionError(
                f"stream {stream!r}: tracked action {action_id!r} is in flight but its "
                f"completion was refused: {exc}"
            ) from exc
        except Rejection:
            _note("completion: rejected")
            self._check_nothing_appended(stream, before, "a rejected completion")
            return
        _note(f"{'timer' if isinstance(result, TimerFired) else 'completion'}: accepted")
        del self.in_flight[key]
        self.completions.append((stream, action_id, result))
        self._track(record)

    def _track(self, record: Record[Any, Any, Any, Any]) -> None:
        for action in record.actions:
            if isinstance(action, Tracked):
                self.in_flight[(record.stream, action.id)] = action.action

    def _check_nothing_appended(self, stream: str, before: int, what: str) -> None:
        after = self.store.last_version(stream)
        if after != before:
            raise AssertionError(
                f"stream {stream!r}: {what} appended records (version {before} -> {after})"
            )

    # -- rules that need no machine-specific strategy -------------------------------------

    @precondition(lambda self: bool(self.completions))
    @rule(pick=PICK)
    def duplicate_completion(self, pick: int) -> None:
        """Deliver an accepted completion again: it must be refused and change nothing."""
        stream, action_id, result = self.completions[pick % len(self.completions)]
        before = self.store.last_version(stream)
        state = self.streams.state(stream)
        try:
            record = self.streams.complete(stream, action_id, result, actor=ACTOR)
        except CompletionNotOutstanding:
            pass
        else:
            raise AssertionError(
                f"stream {stream!r}: a second completion for tracked action {action_id!r} was "
                f"accepted (appended as version {record.version}); a completion must reach the "
                "STF once (or the machine re-used the id, which rule 3 forbids)"
            )
        self._check_nothing_appended(stream, before, "a refused duplicate completion")
        now = self.streams.state(stream)
        if now != state:
            raise AssertionError(
                f"stream {stream!r}: a refused duplicate completion changed the state "
                f"from {state!r} to {now!r}"
            )

    @rule()
    def crash_and_restore(self) -> None:
        """Kill the process and restart it on the same store; restore must cover every
        outstanding tracked id."""
        self.streams = self._open()
        for stream in self.config.streams:
            outstanding = self.streams.outstanding(stream)
            try:
                reissued = self.streams.restore(stream)
            except MachineError as exc:
                raise AssertionError(f"restore after a crash: {exc}") from exc
            again = {a.id: a.action for a in reissued if isinstance(a, Tracked)}
            timers = {i: a for i, a in outstanding.items() if isinstance(a, Timer)}
            forgotten = set(outstanding) - set(again) - set(timers)
            if forgotten:
                raise AssertionError(
                    f"stream {stream!r}: after a crash, restore does not re-issue the outstanding "
                    f"tracked action ids {sorted(map(repr, forgotten))}; they would never complete"
                )
            for key in [k for k in self.in_flight if k[0] == stream]:
                del self.in_flight[key]
            if again:
                _note("restore: re-issued tracked actions")
            for action_id, action in {**timers, **again}.items():
                self.in_flight[(stream, action_id)] = action

    # -- checked after every step --------------------------------------------------------

    def _fold_log(self, stream: str) -> StreamState[Any, Any]:
        """The fold of ``stream``'s log, each record checked to re-emit its recorded actions.

        Kept between steps and extended by the new records only: the log only grows.
        """
        current = self.folds.get(stream)
        if current is None:
            current = self.folds[stream] = initial(self.streams.machine, stream)
        actions = self.streams.machine.new_actions()
        for record in self.streams.records(stream, after=current.version):
            try:
                apply_record(self.streams.machine, current, record, actions, check_actions=True)
            except ReplayDivergence as exc:
                raise AssertionError(f"replay diverges from what was recorded: {exc}") from exc
        return current

    @invariant()
    def replay_equals_live(self) -> None:
        """Each stream's live state is the fold of its log, whose outstanding ids are in flight."""
        for stream in self.config.streams:
            folded = self._fold_log(stream)
            live = self.streams.peek(stream)
            if live != folded.state:
                raise AssertionError(
                    f"stream {stream!r} version {folded.version}: the live state {live!r} "
                    f"differs from the fold of the log {folded.state!r}"
                )
            expected = {i for s, i in self.in_flight if s == stream}
            if set(folded.outstanding) != expected:
                raise AssertionError(
                    f"stream {stream!r}: the log shows tracked ids "
                    f"{sorted(map(repr, folded.outstanding))} outstanding, but "
                    f"{sorted(map(repr, expected))} are in flight"
                )

    @invariant()
    def user_invariants_hold(self) -> None:
        """Every invariant given to :func:`machine_test`, on every stream."""
        for stream in self.config.streams:
            state = self.streams.peek(stream)
            for check in self.config.invariants:
                problem = invariant_failure(check, state)
                if problem is not None:
                    name = getattr(check, "__name__", repr(check))
                    raise AssertionError(f"invariant {name} on stream {stream!r}: {problem}")


def machine_test(
    machine: MachineFactory,
    *,
    world: Callable[[], World[Any, Any]] | None = None,
    invariants: Sequence[Invariant] = (),
    inputs: InputSource | None = None,
    results: SearchStrategy[Any] | None = None,
    streams: Sequence[str] = ("s1", "s2"),
    start: datetime = EPOCH,
    max_advance: timedelta | float = 3600.0,
    overrides: strategies.Overrides | None = None,
    settings: hypothesis.settings | None = None,
) -> type[MachineTest]:
    """A :class:`~hypothesis.stateful.RuleBasedStateMachine` testing ``machine``.

    ``machine`` is a factory (the class itself will do); every test case and
    every simulated restart gets a fresh instance. ``world`` builds the
    outside systems that answer tracked actions (the
    :class:`~fasm_es.testing.World` protocol); without one, results are drawn
    from ``results`` or the declared result type. ``inputs`` replaces the
    strategy derived from the declared input type. ``invariants`` are checked
    on every stream after every step. ``max_advance`` bounds one move of the
    clock. ``overrides`` supplies strategies for types that cannot be derived.
    ``settings`` become the class's ``TestCase.settings``, with no deadline (a
    step's speed is not under test); by default those are hypothesis's own
    without the *explain* phase, which re-runs a failing case many times to
    annotate it and costs tens of seconds here.

    Use the returned class's ``TestCase`` as a test (pytest collects it when
    bound to a ``Test...`` name) or pass the class to
    :func:`hypothesis.stateful.run_state_machine_as_test`. Raises
    :class:`~fasm_es.testing.strategies.StrategyError` when a declared type
    has no strategy and none was given.
    """
    if not streams:
        raise ValueError("machine_test needs at least one stream id")
    probe = machine()
    input_source: InputSource = (
        inputs if inputs is not None else strategies.inputs(probe, overrides=overrides)
    )
    result_source: SearchStrategy[Any] | None = results
    if world is None and result_source is None and probe.types.declares_tracked:
        result_source = strategies.results(probe, overrides=overrides)
    seconds = max_advance.total_seconds() if isinstance(max_advance, timedelta) else max_advance
    stream_ids = st.sampled_from(tuple(streams))
    namespace: dict[str, Any] = {
        "config": _Config(machine, world, tuple(invariants), tuple(streams), start),
        "advance_time": _advance_rule(seconds),
        "submit": (
            _fixed_input_rule(stream_ids, input_source, CRASHES)
            if isinstance(input_source, SearchStrategy)
            else _state_input_rule(stream_ids, input_source, CRASHES)
        ),
    }
    if world is not None:
        namespace["complete_from_world"] = _world_rule()
    elif result_source is not None:
        namespace["complete_with_result"] = _result_rule(result_source)
    name = f"{probe.name}Test"
    cls = cast("type[MachineTest]", type(name, (MachineTest,), namespace))
    cls.__qualname__ = name
    base = settings if settings is not None else DEFAULT_SETTINGS
    cls.TestCase.settings = hypothesis.settings(base, deadline=None)
    return cls


def simulation_test(
    spec: Simulation[Any],
    *,
    streams: Sequence[str] | None = None,
    max_advance: timedelta | float | None = None,
    settings: hypothesis.settings | None = None,
) -> type[MachineTest]:
    """:func:`machine_test` from a :class:`~fasm_es.testing.Simulation` spec.

    Its machine, world, invariants, streams and start time are reused, and its
    input generator ``inputs(rng, stream, state)`` is fed a random generator
    hypothesis controls, so a failing case shrinks like any other.
    """

    def spec_inputs(stream: str, state: Any) -> SearchStrategy[Any]:
        return st.randoms(use_true_random=False).map(lambda rng: spec.inputs(rng, stream, state))

    return machine_test(
        spec.machine,
        world=spec.world,
        invariants=spec.invariants,
        inputs=spec_inputs,
        streams=streams or spec.streams,
        start=spec.start,
        max_advance=max_advance if max_advance is not None else spec.faults.max_jump_seconds,
        settings=settings,
    )


# -- rules whose strategies come from the machine ------------------------------------------


def _fixed_input_rule(
    stream_ids: SearchStrategy[str], values: SearchStrategy[Any], crashes: SearchStrategy[Any]
) -> Any:
    @rule(stream=stream_ids, value=values, crash=crashes)
    def submit(self: MachineTest, stream: str, value: Any, crash: str | None) -> None:
        self.do_submit(stream, value, crash)

    return submit


def _state_input_rule(
    stream_ids: SearchStrategy[str],
    source: Callable[[str, Any], SearchStrategy[Any]],
    crashes: SearchStrategy[Any],
) -> Any:
    @rule(stream=stream_ids, data=st.data(), crash=crashes)
    def submit(self: MachineTest, stream: str, data: st.DataObject, crash: str | None) -> None:
        value = data.draw(source(stream, self.streams.state(stream)), label="value")
        self.do_submit(stream, value, crash)

    return submit


def _answerable(self: MachineTest) -> bool:
    return any(not isinstance(a, Timer) for a in self.in_flight.values())


def _world_rule() -> Any:
    @precondition(_answerable)
    @rule(pick=PICK)
    def complete_from_world(self: MachineTest, pick: int) -> None:
        self.do_complete(pick, None)

    return complete_from_world


def _result_rule(results: SearchStrategy[Any]) -> Any:
    @precondition(_answerable)
    @rule(pick=PICK, result=results)
    def complete_with_result(self: MachineTest, pick: int, result: Any) -> None:
        self.do_complete(pick, result)

    return complete_with_result


def _advance_rule(max_seconds: float) -> Any:
    @rule(seconds=st.integers(min_value=1, max_value=max(1, int(max_seconds))))
    def advance_time(self: MachineTest, seconds: int) -> None:
        self.do_advance(seconds)

    return advance_time


__all__ = ["InputSource", "MachineTest", "machine_test", "simulation_test"]
