"""The simulator: the real engine, an in-memory store, virtual time, one seeded RNG.

One run is a sequence of steps (:mod:`fasm_es.testing.ops`) chosen by a
``random.Random(seed)``: submit a generated input, answer a waiting tracked
action (or fail it, lose it, or die while it is being answered), deliver a
completion twice or late, kill and restart the engine, let a second writer
append, let time pass, make the store fail an append (before it, or after it
has stored the record: a commit of unknown outcome), perhaps followed by an
outage in which the store refuses the engine's calls for a while. The engine is
:class:`fasm_es.Engine` itself, on a
:class:`~fasm_es.testing.virtual.VirtualEventLoop` with every "blocking"
call run inline, so the same seed gives the same run, byte for byte.

A kill abandons the engine's event loop where it stands (no cleanup runs, as
with SIGKILL); a new engine then starts on the same store and restores.
After each step the simulator checks, with no user code:

- ``rejection``: after a rejected input, the engine's state equals the fold of the log;
- ``invalid-input``: an invalid payload appended nothing;
- ``replay``: the log folds to the engine's live state and every record re-emits
  its recorded actions (every ``replay_every`` steps and at the end);
- ``completion-once``: no completion reached the STF for an id that was not
  outstanding (each id is completed at most once in the log);
- ``restore``: after a restart, the machine's restore covers every outstanding
  tracked id, re-issues none that is completed, and the engine dispatched them all;
- ``determinism``: sampled STF calls give equal outcomes on equal states;
- ``input-once``: after each submit, the log holds every input the engine
  accepted once, as it does one whose commit failed after storing it (killed
  or a store error after the append), and none that it refused or whose
  commit failed before storing it (a store error before the append, or a
  call refused during an outage);
- ``forgotten-action``: every tracked action the log shows outstanding, on a
  record the engine wrote, is known to the live engine: being handled or
  waiting to retry (``Engine.in_flight``) or stuck (``Engine.stuck``), never
  left waiting for the next restart (after every step, on every stream; while
  the store is down, the actions of a record whose commit failed after
  storing it are let off, since the engine cannot reread it yet);
- ``invariant``: the user's invariants, on the stream the step touched (all at the end);
- ``engine``: anything else the engine raised is a bug.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fasm_es.actions import Tracked
from fasm_es.engine import Engine
from fasm_es.errors import (
    CompletionNotOutstanding,
    ConcurrencyConflict,
    InvalidInput,
    MachineError,
    Rejection,
    ReplayDivergence,
    StoreUnavailable,
)
from fasm_es.fold import StreamState, apply_record, initial, restore_actions
from fasm_es.inputs import ActionId, Completed, Normal
from fasm_es.machine import StateMachine
from fasm_es.record import EncodedRecord, RawRecord, RawSnapshot
from fasm_es.store import DEFAULT_PAGE_SIZE, EventStore, open_store
from fasm_es.streams import Streams
from fasm_es.testing.ops import (
    Advance,
    AppendPoint,
    Conflict,
    Crash,
    Deliver,
    Duplicate,
    Late,
    Op,
    Outcome,
    Submit,
)
from fasm_es.testing.probe import Findings, NondeterministicStf, probe
from fasm_es.testing.spec import Simulation, invariant_failure
from fasm_es.testing.virtual import InlineExecutor, VirtualClock, VirtualEventLoop
from fasm_es.timers import Timer

SETTLE_ROUNDS = 10_000
RECOVERY_ROUNDS = 1_000
"""At most this many retry wake-ups are waited for after an outage (the engine retries with
backoff, so a few suffice; the bound only stops an engine that retries without end)."""
APPEND_POINTS: tuple[AppendPoint, ...] = ("before_append", "after_append")
ACTOR = "simulator"
SECOND_WRITER = "second-writer"

T = TypeVar("T")


class SimulatedCrash(Exception):
    """The simulated engine process dies here."""


class SimulatedFailure(Exception):
    """A simulated outside system fails this call."""


class CheckFailed(Exception):
    """An automatic check or a user invariant does not hold."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


@dataclass
class RunStats:
    """Counts of what one or more runs exercised."""

    steps: int = 0
    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    invalid: int = 0
    conflicts: int = 0
    delivered: int = 0
    failed_calls: int = 0
    lost: int = 0
    duplicates_refused: int = 0
    late_refused: int = 0
    late_accepted: int = 0
    crashes: int = 0
    second_writer: int = 0
    time_jumps: int = 0
    replay_checks: int = 0
    store_errors: int = 0
    unknown_outcomes: int = 0
    outages: int = 0
    refused_calls: int = 0

    def add(self, other: RunStats) -> None:
        """Add ``other``'s counts to these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class SimulatedStoreError(StoreUnavailable):
    """A store error the simulator injected; ``point`` is the append point it failed at,
    or None for a call refused during an outage (refused before it did anything)."""

    def __init__(self, point: AppendPoint | None, message: str) -> None:
        super().__init__(message)
        self.point = point


class _FaultyStore(EventStore):
    """The shared in-memory store as the engine reaches it: able to fail.

    ``crash_at`` kills the engine before or after the next append; ``fail_at``
    makes the next append raise :class:`StoreUnavailable` there instead, as a
    database that goes away does (after the append: the record is stored, the
    caller hears an error). Each is used by the next append only; ``failed``
    lists where an append failed since :meth:`disarm`. With ``outage`` set,
    that failure begins an outage: the next ``outage`` calls, reads and
    writes alike, are refused before they do anything, unless
    ``outage_seconds`` of virtual time pass first. The simulator's own reads
    and the second writer go to the database directly, past all of this.
    """

    def __init__(self, inner: EventStore, clock: VirtualClock) -> None:
        super().__init__(inner.backend, inner.url)
        self.clock = clock
        self.crash_at: AppendPoint | None = None
        self.fail_at: AppendPoint | None = None
        self.outage = 0
        self.outage_seconds = 0.0
        self.failed: list[AppendPoint] = []
        self.down = 0
        """Calls the outage in progress still refuses."""
        self.up_at = 0.0
        """Virtual seconds at which the outage in progress ends, calls refused or not."""
        self.recovering = False
        """An outage began and the engine has not yet been given the time to recover."""
        self.unheard: set[tuple[str, int]] = set()
        """(stream, version) of records an outage's failing append stored."""
        self.outages = 0
        self.refused = 0
        self.looking = False
        """The simulator itself is reading through the engine: no call is refused."""

    def arm(self, crash: AppendPoint | None, fail: AppendPoint | None, outage: int) -> None:
        """Crash or fail the next append at that point; ``outage`` calls fail after it."""
        self.crash_at, self.fail_at, self.outage = crash, fail, outage

    def is_down(self) -> bool:
        """Whether an outage is in progress (it ends once its calls or its time run out)."""
        if self.down and self.clock.seconds() >= self.up_at:
            self.down = 0
        return self.down > 0

    def end_outage(self) -> None:
        """The engine restarts: its new connections reach the database."""
        self.down = 0
        self.recovering = False
        self.unheard.clear()

    def _gate(self) -> None:
        if self.down and not self.looking and self.is_down():
            self.down -= 1
            self.refused += 1
            raise SimulatedStoreError(None, "simulated: the database is unreachable (an outage)")

    def _fail(self, point: AppendPoint, outage: int, records: Sequence[EncodedRecord]) -> None:
        self.failed.append(point)
        if outage:
            self.outages += 1
            self.down, self.up_at = outage, self.clock.seconds() + self.outage_seconds
            self.recovering = True
            if point == "after_append":
                self.unheard.update((r.stream, r.version) for r in records)
        if point == "before_append":
            raise SimulatedStoreError(point, "simulated: the database went away before the commit")
        raise SimulatedStoreError(
            point, "simulated: the connection broke after the commit was stored"
        )

    def append(self, records: Sequence[EncodedRecord]) -> list[int]:
        crash, fail, outage = self.crash_at, self.fail_at, self.outage
        self.crash_at = self.fail_at = None
        self.outage = 0
        self._gate()
        if crash == "before_append":
            raise SimulatedCrash("killed before the append")
        if fail == "before_append":
            self._fail(fail, outage, records)
        positions = super().append(records)
        if crash == "after_append":
            raise SimulatedCrash("killed after the append, before anything was dispatched")
        if fail == "after_append":
            self._fail(fail, outage, records)
        return positions

    def read_stream(
        self,
        stream: str,
        *,
        after: int = 0,
        upto: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[RawRecord]:
        self._gate()
        return super().read_stream(stream, after=after, upto=upto, page_size=page_size)

    def read_log(
        self, *, after: int = 0, upto: int | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[RawRecord]:
        self._gate()
        return super().read_log(after=after, upto=upto, page_size=page_size)

    def last_version(self, stream: str) -> int:
        self._gate()
        return super().last_version(stream)

    def last_versions(self, streams: Sequence[str]) -> dict[str, int]:
        self._gate()
        return super().last_versions(streams)

    def last_position(self) -> int:
        self._gate()
        return super().last_position()

    def streams(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[str]:
        self._gate()
        return super().streams(page_size=page_size)

    def save_snapshot(self, snapshot: RawSnapshot) -> None:
        self._gate()
        super().save_snapshot(snapshot)

    def prune_snapshots(self, stream: str, *, keep_from: int) -> int:
        self._gate()
        return super().prune_snapshots(stream, keep_from=keep_from)

    def load_snapshot(self, stream: str, *, at: int | None = None) -> RawSnapshot | None:
        self._gate()
        return super().load_snapshot(stream, at=at)

    def disarm(self) -> list[AppendPoint]:
        """Fail no further append; return where the store failed since the last call.

        An outage in progress goes on: it ends by itself.
        """
        self.crash_at = self.fail_at = None
        self.outage = 0
        failed, self.failed = self.failed, []
        return failed


@dataclass
class _Request:
    life: int
    stream: str
    action_id: ActionId
    action: Any
    attempt: int
    future: asyncio.Future[Any]


@dataclass
class _Life:
    number: int
    loop: VirtualEventLoop
    engine: Engine[Any, Any, Any, Any, Any]
    dispatched: list[tuple[str, ActionId]] = field(default_factory=list)
    # When each retry the engine put off during an outage wakes (virtual seconds).
    waking: list[float] = field(default_factory=list)


class Run:
    """One simulation run: a seed (generating steps) or a fixed list of steps (replaying them)."""

    def __init__(
        self,
        spec: Simulation[Any],
        seed: int,
        steps: int,
        *,
        ops: Sequence[Op] | None = None,
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.steps = steps if ops is None else len(ops)
        self.fixed_ops = list(ops) if ops is not None else None
        self.rng = random.Random(seed)
        self.findings = Findings()
        self.machine = spec.machine()
        self.probed = probe(
            self.machine, spec.determinism_every, self.findings, spec.snapshot_every
        )
        self.world = spec.world()
        self.clock = VirtualClock(spec.start)
        # One database: the engine reaches it through the faults, the simulator's own
        # reads and the second writer (another process) reach it directly.
        self.database = open_store("memory://")
        self.store = _FaultyStore(self.database, self.clock)
        self.store.outage_seconds = spec.faults.max_outage_seconds
        self.second_writer = Streams(spec.machine(), self.database, clock=self.clock)
        self.stats = RunStats()
        self.trace: list[Op] = []
        self.pending: list[_Request] = []
        self.delivered: list[tuple[str, ActionId, Any]] = []
        self.orphans: list[tuple[str, ActionId, Any]] = []
        self.attempts: dict[tuple[str, ActionId], int] = {}
        self._graveyard: list[Any] = []
        self._folds: dict[str, StreamState[Any, Any]] = {}
        # Tracked ids emitted by the second writer's records: that writer's to carry out.
        self._foreign: dict[str, set[ActionId]] = {}
        # Tracked ids emitted by records an outage's failing append stored: the
        # engine cannot reread those until the store is back.
        self._unheard: dict[str, set[ActionId]] = {}
        # Per stream: the simulator's inputs the log should hold, and those it holds.
        self._inputs_stored: dict[str, int] = {}
        self._inputs_logged: dict[str, int] = {}
        self._killed = False
        self.life = self._start_life(0)

    # -- engine lives ---------------------------------------------------------------

    def _start_life(self, number: int) -> _Life:
        loop = VirtualEventLoop()
        loop.set_default_executor(InlineExecutor())
        self.clock.attach(loop)
        engine: Engine[Any, Any, Any, Any, Any] = self.spec.engine(
            self.probed,
            self.store,
            handlers={object: self._handle},
            clock=self.clock,
            rng=random.Random(f"{self.seed}/engine/{number}"),
            executor=InlineExecutor(),
            retry_sleep=self._retry_sleep,
            checkpoint_interval=10**9,
            # Saving the stuck list for operators would wake every 2 virtual seconds of a jump.
            stuck_interval=None,
        )
        life = _Life(number, loop, engine)
        self.life = life
        loop.run_until_complete(engine.start())
        self._settle()
        return life

    def _kill(self) -> None:
        """Abandon the engine's loop where it stands: nothing of it runs again."""
        old = self.life
        tasks = asyncio.all_tasks(old.loop)
        _silence(tasks)
        # Keep the abandoned coroutines referenced: collecting them would run
        # their cleanup code, which a killed process never does.
        self._graveyard.append((old.loop, tasks, old.engine))
        self.pending = [r for r in self.pending if r.life != old.number]
        self.stats.crashes += 1
        self._killed = True
        self.store.end_outage()
        self._unheard.clear()
        self.life = self._start_life(old.number + 1)
        self._check_restore()

    async def _handle(self, action: Any, key: Any) -> Any:
        """The engine's handler for every tracked action: wait for the simulator to answer."""
        life = self.life
        life.dispatched.append((key.stream, key.action_id))
        attempt = self.attempts.get((key.stream, key.action_id), 0) + 1
        self.attempts[(key.stream, key.action_id)] = attempt
        future: asyncio.Future[Any] = life.loop.create_future()
        self.pending.append(
            _Request(life.number, key.stream, key.action_id, action, attempt, future)
        )
        return await future

    async def _retry_sleep(self, seconds: float) -> None:
        """The engine's wait between retries, noted while the engine recovers from an outage."""
        if not self.store.recovering:
            await asyncio.sleep(seconds)
            return
        waking = self.life.waking
        wake = asyncio.get_running_loop().time() + seconds
        waking.append(wake)
        try:
            await asyncio.sleep(seconds)
        finally:
            waking.remove(wake)

    def _run(self, coro: Any) -> Any:
        return self.life.loop.run_until_complete(coro)

    def _settle(self) -> None:
        """Let the engine finish what the last step started (in zero virtual time)."""
        self._run(_quiesce(self.life.loop))

    def _recover(self) -> None:
        """The store is back after an outage: each retry the engine put off meets it.

        Virtual time moves on to each such retry's wake-up in turn (the
        engine's rereads of the streams in doubt among them), so an engine that
        keeps retrying has caught up by the checks after this step, and one
        that gave up has not.
        """
        life = self.life

        async def recover() -> None:
            for _ in range(RECOVERY_ROUNDS):
                await _quiesce(life.loop)
                if not life.waking:
                    return
                await asyncio.sleep(max(min(life.waking) - life.loop.time(), 0.0))

        self._run(recover())
        self.store.recovering = False
        self.store.unheard.clear()
        self._unheard.clear()

    def _look(self, read: Callable[[str], T], stream: str) -> T:
        """``read(stream)`` through the engine's streams, by the simulator: never refused."""
        if not self.store.down:
            return read(stream)
        self.store.looking = True
        try:
            return read(stream)
        finally:
            self.store.looking = False

    def _peek(self, stream: str) -> Any:
        return self._look(self.life.engine.streams.peek, stream)

    # -- choosing steps -------------------------------------------------------------

    def _next_op(self) -> Op:
        f, r = self.spec.faults, self.rng
        choices: list[tuple[str, float]] = [("submit", 1.0)]
        if self.pending:
            choices.append(("deliver", 1.0 - f.delay))
        if self.delivered:
            choices.append(("duplicate", f.duplicate))
        if self.orphans:
            choices.append(("late", 0.3))
        choices += [("crash", f.crash), ("conflict", f.conflict), ("advance", f.time_jump)]
        total = sum(w for _, w in choices)
        point = r.random() * total
        kind = choices[-1][0]
        for name, weight in choices:
            if point < weight:
                kind = name
                break
            point -= weight
        if kind == "submit":
            stream = r.choice(list(self.spec.streams))
            value = self.spec.inputs(r, stream, self._peek(stream))
            crash = r.choice(APPEND_POINTS) if r.random() < f.crash else None
            # Drawn only when on, so a spec without store errors keeps its runs.
            store_error, outage = None, 0
            if crash is None and f.store_error and r.random() < f.store_error:
                store_error = r.choice(APPEND_POINTS)
                outage = self._outage_calls()
            return Submit(stream, value, crash, store_error, outage)
        if kind == "deliver":
            roll = r.random()
            outcome: Outcome = "ok"
            failing: AppendPoint | None = None
            outage = 0
            for name, rate in (
                ("fail", f.action_failure),
                ("lose", f.loss),
                ("crash", f.crash),
                ("store_error", f.store_error),
            ):
                if roll < rate:
                    if name == "store_error":
                        failing = r.choice(APPEND_POINTS)
                        outage = self._outage_calls()
                    else:
                        outcome = name  # type: ignore[assignment]
                    break
                roll -= rate
            return Deliver(r.randrange(1 << 30), outcome, failing, outage)
        if kind == "duplicate":
            return Duplicate(r.randrange(1 << 30))
        if kind == "late":
            return Late(r.randrange(1 << 30))
        if kind == "crash":
            return Crash()
        if kind == "conflict":
            stream = r.choice(list(self.spec.streams))
            return Conflict(stream, self.spec.inputs(r, stream, self._log_state(stream)))
        return Advance(round(r.uniform(0.001, f.max_jump_seconds), 3))

    def _outage_calls(self) -> int:
        """How many calls the outage a store error begins refuses (0: none begins)."""
        f, r = self.spec.faults, self.rng
        if f.outage and r.random() < f.outage:
            return r.randint(1, f.max_outage_calls)
        return 0

    # -- running --------------------------------------------------------------------

    def run(self) -> None:
        """Run every step, checking as it goes; raises :class:`CheckFailed` at the first failure.

        The engine's own log messages (retries, stuck actions) are expected here
        by the thousand: they are silenced for the run.
        """
        engine_log = logging.getLogger("fasm_es")
        level = engine_log.level
        engine_log.setLevel(logging.CRITICAL)
        try:
            self._run_steps()
        finally:
            engine_log.setLevel(level)
            self.close()

    def _run_steps(self) -> None:
        for step in range(self.steps):
            op = self.fixed_ops[step] if self.fixed_ops is not None else self._next_op()
            self.trace.append(op)
            self.stats.steps += 1
            self._killed = False
            touched = self._execute(op)
            if self._killed:  # a restart may break what held before it
                for stream in self.spec.streams:
                    self._check_invariants(stream)
            elif touched is not None:
                self._check_invariants(touched)
            self._check_forgotten_actions()
            if self.spec.replay_every and (step + 1) % self.spec.replay_every == 0:
                self._check_replay()
        self._check_replay()
        for stream in self.spec.streams:
            self._check_invariants(stream)

    def _execute(self, op: Op) -> str | None:
        try:
            touched = self._perform(op)
            if self.store.recovering and not self.store.is_down():
                self._recover()
            return touched
        except NondeterministicStf as exc:
            raise CheckFailed("determinism", str(exc)) from exc
        except CheckFailed:
            raise
        except MachineError as exc:
            raise CheckFailed("machine", str(exc)) from exc
        except Exception as exc:
            raise CheckFailed("engine", f"{type(exc).__name__}: {exc}") from exc

    def _perform(self, op: Op) -> str | None:
        if isinstance(op, Submit):
            return self._submit(op)
        if isinstance(op, Deliver):
            return self._deliver(op)
        if isinstance(op, Duplicate):
            return self._duplicate(op)
        if isinstance(op, Late):
            return self._late(op)
        if isinstance(op, Crash):
            self._kill()
            return None
        if isinstance(op, Conflict):
            return self._conflict(op)
        self.stats.time_jumps += 1
        self._run(asyncio.sleep(op.seconds))
        self._settle()
        return None

    def _submit(self, op: Submit) -> str | None:
        if op.value is None:
            return None
        self.stats.submitted += 1
        before = self.database.last_version(op.stream)
        self.store.arm(op.crash, op.store_error, op.outage)
        try:
            self._run(self.life.engine.submit(op.stream, op.value, actor=ACTOR))
        except SimulatedCrash:
            self._disarm()
            self._kill()
            assert op.crash is not None
            outcome, stored = f"engine killed {_spoken(op.crash)}", op.crash == "after_append"
        except SimulatedStoreError as exc:
            self._settle()  # the engine rereads the stream in doubt
            if exc.point is None:
                outcome, stored = "the store refused it during an outage", False
            else:
                outcome, stored = (
                    f"the store failed {_spoken(exc.point)}",
                    exc.point == "after_append",
                )
        except InvalidInput:
            self.stats.invalid += 1
            if self.database.last_version(op.stream) != before:
                raise CheckFailed("invalid-input", "an invalid input appended a record") from None
            return None
        except Rejection:
            self.stats.rejected += 1
            self._check_rejection(op.stream, before)
            return op.stream
        except ConcurrencyConflict:
            self.stats.conflicts += 1
            outcome, stored = "conflict", False
        else:
            self.stats.accepted += 1
            self._settle()
            outcome, stored = "accepted", True
        finally:
            self._disarm()
        self._check_input_once(op.stream, stored, outcome)
        return op.stream

    def _deliver(self, op: Deliver) -> str | None:
        if not self.pending:
            return None
        request = self.pending.pop(op.pick % len(self.pending))
        if request.future.done():
            return None
        if op.outcome == "lose":
            self.stats.lost += 1
            return None
        if op.outcome == "fail":
            self.stats.failed_calls += 1
            request.future.set_exception(SimulatedFailure("the outside system failed"))
            self._settle()
            return request.stream
        rng = random.Random(f"{self.seed}/{request.stream}/{request.action_id}/{request.attempt}")
        try:
            result = self.world.answer(request.stream, request.action_id, request.action, rng)
        except Exception as exc:
            self.stats.failed_calls += 1
            request.future.set_exception(exc)
            self._settle()
            return request.stream
        if op.outcome == "crash":
            self.orphans.append((request.stream, request.action_id, result))
            self._kill()
            return request.stream
        self.stats.delivered += 1
        # Met by the append of the answer's completion.
        self.store.arm(None, op.store_error, op.outage)
        try:
            request.future.set_result(result)
            self.delivered.append((request.stream, request.action_id, result))
            self._settle()
        finally:
            self._disarm()
        return request.stream

    def _disarm(self) -> list[AppendPoint]:
        """End the step's store faults, counting those that happened."""
        failed = self.store.disarm()
        self.stats.store_errors += len(failed)
        self.stats.unknown_outcomes += failed.count("after_append")
        return failed

    def _complete(self, stream: str, action_id: ActionId, result: Any) -> bool | None:
        """Deliver a completion from outside; True if accepted, False if refused,
        None if the store was down."""
        try:
            self._run(self.life.engine.complete(stream, action_id, result, actor=ACTOR))
        except CompletionNotOutstanding:
            return False
        except Rejection:
            self._check_rejection(stream, self.database.last_version(stream))
            return False
        except SimulatedStoreError:
            self._settle()
            return None
        self._settle()
        return True

    def _duplicate(self, op: Duplicate) -> str | None:
        if not self.delivered:
            return None
        stream, action_id, result = self.delivered[op.pick % len(self.delivered)]
        if self._complete(stream, action_id, result) is False:
            self.stats.duplicates_refused += 1
        return stream

    def _late(self, op: Late) -> str | None:
        if not self.orphans:
            return None
        index = op.pick % len(self.orphans)
        stream, action_id, result = self.orphans.pop(index)
        accepted = self._complete(stream, action_id, result)
        if accepted:
            self.stats.late_accepted += 1
        elif accepted is False:
            self.stats.late_refused += 1
        else:  # the store was down: the outside system tries again later
            self.orphans.insert(index, (stream, action_id, result))
        return stream

    def _conflict(self, op: Conflict) -> str | None:
        if op.value is None:
            return None
        self.stats.second_writer += 1
        try:
            self.second_writer.submit(op.stream, op.value, actor=SECOND_WRITER)
        except (Rejection, InvalidInput, ConcurrencyConflict):
            pass
        finally:
            self.second_writer.forget()
        return op.stream

    # -- checks ---------------------------------------------------------------------

    def _fold_log(self, stream: str) -> StreamState[Any, Any]:
        """The fold of ``stream``'s log so far, checking actions and completions on the way.

        Kept between checks and extended by the new records only: the log only grows.
        """
        current = self._folds.get(stream)
        if current is None:
            current = self._folds[stream] = initial(self.machine, stream)
        if self.database.last_version(stream) == current.version:
            return current  # nothing new: cheaper than a read that finds nothing
        actions = self.machine.new_actions()
        unheard = self.store.unheard
        for record in self.second_writer.records(stream, after=current.version):
            inp = record.input
            actor = record.meta.actor
            if unheard and (stream, record.version) in unheard:
                ids = self._unheard.setdefault(stream, set())
                ids.update(a.id for a in record.actions if isinstance(a, Tracked))
            if actor == SECOND_WRITER:
                foreign = self._foreign.setdefault(stream, set())
                foreign.update(a.id for a in record.actions if isinstance(a, Tracked))
            elif actor == ACTOR and isinstance(inp, Normal):
                self._inputs_logged[stream] = self._inputs_logged.get(stream, 0) + 1
            if isinstance(inp, Completed) and inp.id not in current.outstanding:
                raise CheckFailed(
                    "completion-once",
                    f"stream {stream!r} version {record.version}: a completion for "
                    f"{inp.id!r} reached the STF although that id was not outstanding",
                )
            try:
                apply_record(self.machine, current, record, actions, check_actions=True)
            except ReplayDivergence as exc:
                raise CheckFailed("replay", str(exc)) from exc
        return current

    def _log_state(self, stream: str) -> Any:
        return self._fold_log(stream).state

    def _check_rejection(self, stream: str, version_before: int) -> None:
        if self.database.last_version(stream) != version_before:
            raise CheckFailed("rejection", f"stream {stream!r}: a rejected input appended a record")
        live = self._peek(stream)
        folded = self._fold_log(stream).state
        if live != folded:
            raise CheckFailed(
                "rejection",
                f"stream {stream!r}: after a rejection the engine holds {live!r} "
                f"but the log folds to {folded!r}",
            )

    def _check_replay(self) -> None:
        self.stats.replay_checks += 1
        streams = self.life.engine.streams
        for stream in self.spec.streams:
            folded = self._fold_log(stream)
            if self._look(streams.version, stream) != folded.version:
                continue  # a second writer appended since: the engine reloads on next use
            live = self._look(streams.peek, stream)
            if live != folded.state:
                raise CheckFailed(
                    "replay",
                    f"stream {stream!r} version {folded.version}: the live state {live!r} "
                    f"differs from the fold of the log {folded.state!r}",
                )

    def _check_restore(self) -> None:
        for stream in self.spec.streams:
            folded = self._fold_log(stream)
            if not folded.outstanding and not self.machine.has_restore:
                continue
            try:
                emitted = restore_actions(self.machine, folded)
            except MachineError as exc:
                raise CheckFailed("restore", str(exc)) from exc
            reissued = {a.id for a in emitted if isinstance(a, Tracked)}
            timers = {i for i, a in folded.outstanding.items() if isinstance(a, Timer)}
            forgotten = set(folded.outstanding) - reissued - timers
            if forgotten:
                raise CheckFailed(
                    "restore",
                    f"stream {stream!r}: restore does not re-issue outstanding tracked "
                    f"action ids {sorted(map(repr, forgotten))}; they would never complete",
                )
            dispatched = {i for s, i in self.life.dispatched if s == stream}
            missing = (reissued | timers) - dispatched - timers
            if missing:
                raise CheckFailed(
                    "restore",
                    f"stream {stream!r}: the engine did not dispatch restored ids "
                    f"{sorted(map(repr, missing))} after the restart",
                )

    def _check_input_once(self, stream: str, stored: bool, outcome: str) -> None:
        """After a submit: the log holds each input the engine accepted, or whose commit
        stored it before failing, once, and none that it refused."""
        expected = self._inputs_stored.get(stream, 0) + stored
        self._inputs_stored[stream] = expected
        self._fold_log(stream)
        logged = self._inputs_logged.get(stream, 0)
        if logged != expected:
            raise CheckFailed(
                "input-once",
                f"stream {stream!r}: after a submit ({outcome}) the log holds {logged} of the "
                f"simulator's inputs where it should hold {expected} (those accepted, or stored "
                "by a commit that then failed): an input was "
                f"{'lost' if logged < expected else 'stored twice, or stored though refused'}",
            )

    def _check_forgotten_actions(self) -> None:
        """Each tracked action outstanding on a record the engine wrote is one it knows of."""
        known: set[tuple[str, ActionId]] | None = None
        for stream in self.spec.streams:
            outstanding = self._fold_log(stream).outstanding
            if not outstanding:
                continue
            if known is None:
                engine = self.life.engine
                known = {(k.stream, k.action_id) for k in engine.in_flight()}
                known.update((s.stream, s.action_id) for s in engine.stuck())
            foreign = self._foreign.get(stream, ())
            unheard = self._unheard.get(stream, ())  # the store is still down
            forgotten = [
                i
                for i in outstanding
                if (stream, i) not in known and i not in foreign and i not in unheard
            ]
            if forgotten:
                ids = ", ".join(sorted(map(repr, forgotten)))
                raise CheckFailed(
                    "forgotten-action",
                    f"stream {stream!r}: tracked action ids [{ids}] "
                    "are outstanding in the log, but the engine is neither handling them "
                    "(in_flight()) nor lists them as stuck (stuck()): they would wait for "
                    "the next restart",
                )

    def _check_invariants(self, stream: str) -> None:
        if not self.spec.invariants:
            return
        state = self._peek(stream)
        for invariant in self.spec.invariants:
            problem = invariant_failure(invariant, state)
            if problem is not None:
                name = getattr(invariant, "__name__", repr(invariant))
                raise CheckFailed("invariant", f"{name} on stream {stream!r}: {problem}")

    def close(self) -> None:
        """Abandon the last engine like the others (a run ends as if killed)."""
        _silence(asyncio.all_tasks(self.life.loop))
        self._graveyard.append((self.life.loop, self.life.engine))
        self.store.end_outage()
        self.stats.outages = self.store.outages
        self.stats.refused_calls = self.store.refused

    def log_bytes(self) -> list[tuple[str, int, str, bytes]]:
        """Every stored record as (stream, version, tag, body): for byte-for-byte comparisons."""
        return [(r.stream, r.version, r.tag, r.body) for r in self.database.read_log()]


async def _quiesce(loop: VirtualEventLoop) -> None:
    """Run until no callback is ready (timers and unresolved futures may still wait)."""
    for _ in range(SETTLE_ROUNDS):
        await asyncio.sleep(0)
        if loop.quiescent():
            return


def _spoken(point: AppendPoint) -> str:
    return point.replace("_", " ")


def _silence(tasks: set[asyncio.Task[Any]]) -> None:
    # Abandoned on purpose: asyncio need not warn that they never finished.
    for task in tasks:
        task._log_destroy_pending = False  # type: ignore[attr-defined]


def machine_of(spec: Simulation[Any]) -> StateMachine[Any, Any, Any, Any, Any]:
    """A fresh machine from the spec (for messages)."""
    return spec.machine()
