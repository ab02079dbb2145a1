"""The pure fold: a stream's state from its initial state and its records.

Nothing here touches storage: records come in, a :class:`StreamState` comes
out. The engine, the replay checker and the simulator all fold through
:func:`apply_record`, so "replay equals live" compares one code path with itself;
:func:`fold_stored`, the path that loads a stream, runs the same STF calls and
bookkeeping on records as stored, decoding only what folding needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fasm_es.actions import Actions, Tracked, Untracked
from fasm_es.errors import CompletionNotOutstanding, MachineError, Rejection, ReplayDivergence
from fasm_es.inputs import ActionId, Completed
from fasm_es.machine import StateMachine, drive
from fasm_es.record import GENESIS, Codec, RawRecord, Record

S = TypeVar("S")
A = TypeVar("A")


@dataclass(slots=True)
class StreamState(Generic[S, A]):
    """Everything the log says about one stream after its ``version``-th record.

    ``outstanding`` maps each tracked action id the log shows as emitted and
    not yet completed to its action; ``completed`` holds the ids completed so
    far, so a second completion for one of them is recognised as a duplicate.
    """

    stream: str
    state: S
    version: int = 0
    last_hash: str = GENESIS
    outstanding: dict[ActionId, A] = field(default_factory=dict)
    completed: set[ActionId] = field(default_factory=set)
    snapshot_version: int = 0

    def check_completion(self, action_id: ActionId) -> None:
        """Raise :class:`CompletionNotOutstanding` unless ``action_id`` is outstanding."""
        if action_id not in self.outstanding:
            reason = "completed" if action_id in self.completed else "unknown"
            raise CompletionNotOutstanding(self.stream, action_id, reason)

    def record_outcome(
        self,
        completed_id: ActionId | None,
        actions: Iterable[Tracked[A] | Untracked[Any]],
        version: int,
        hash_: str,
    ) -> None:
        """Advance past an accepted record: its completion and the actions it emitted."""
        if completed_id is not None:
            self.outstanding.pop(completed_id, None)
            self.completed.add(completed_id)
        for action in actions:
            if isinstance(action, Tracked):
                self.outstanding[action.id] = action.action
        self.version = version
        self.last_hash = hash_


def initial(machine: StateMachine[S, Any, A, Any, Any], stream: str) -> StreamState[S, A]:
    """The stream state before any record."""
    return StreamState(stream, machine.initial_state())


def apply_record(
    machine: StateMachine[S, Any, A, Any, Any],
    current: StreamState[S, A],
    record: Record[Any, A, Any, Any],
    actions: Actions[A, Any],
    *,
    check_actions: bool = False,
) -> None:
    """Fold one recorded input into ``current`` (in place).

    The recorded input was accepted when it was appended, so the STF must
    accept it again; if it rejects or raises, or (with ``check_actions``)
    emits different actions than recorded, :class:`ReplayDivergence` names
    the stream, version and first difference.
    """
    if record.version != current.version + 1:
        raise ReplayDivergence(
            record.stream,
            record.version,
            f"expected version {current.version + 1} next; the log has a gap or is out of order",
        )
    inp = record.input
    completed_id = inp.id if isinstance(inp, Completed) else None
    actions.clear()
    try:
        drive(machine.stf(current.state, inp, actions), machine.name, "stf")
    except Exception as exc:
        raise _divergence(record.stream, record.version, exc) from exc
    if check_actions:
        emitted = actions.to_tuple()
        if emitted != record.actions:
            raise ReplayDivergence(
                record.stream, record.version, first_action_difference(record.actions, emitted)
            )
    current.record_outcome(completed_id, record.actions, record.version, record.hash)


def _divergence(stream: str, version: int, exc: Exception) -> Exception:
    """What a recorded input that the STF no longer accepts is reported as."""
    if isinstance(exc, MachineError):
        return exc
    what = "rejects it" if isinstance(exc, Rejection) else "raises"
    return ReplayDivergence(
        stream, version, f"the recorded input was accepted but the STF now {what}: {exc!r}"
    )


def first_action_difference(recorded: tuple[Any, ...], emitted: tuple[Any, ...]) -> str:
    """Describe where two action sequences first differ."""
    for index, (was, now) in enumerate(zip(recorded, emitted, strict=False)):
        if was != now:
            return f"action #{index} was recorded as {was!r} but the STF now emits {now!r}"
    return (
        f"the STF now emits {len(emitted)} actions where {len(recorded)} were recorded "
        f"(recorded {recorded!r}, now {emitted!r})"
    )


def fold(
    machine: StateMachine[S, Any, A, Any, Any],
    stream: str,
    records: Iterable[Record[Any, A, Any, Any]],
    start: StreamState[S, A] | None = None,
    *,
    check_actions: bool = False,
) -> StreamState[S, A]:
    """Fold ``records`` (in version order) onto ``start`` or the initial state."""
    current = start if start is not None else initial(machine, stream)
    actions = machine.new_actions()
    for record in records:
        apply_record(machine, current, record, actions, check_actions=check_actions)
    return current


def fold_stored(
    machine: StateMachine[S, Any, A, Any, Any],
    codec: Codec[Any, A, Any, Any],
    stream: str,
    raws: Iterable[RawRecord],
    start: StreamState[S, A] | None = None,
) -> StreamState[S, A]:
    """Decode and fold stored records (in version order) onto ``start`` or the initial state.

    The same as ``fold(machine, stream, map(codec.decode, raws), start)``,
    but a record :meth:`Codec.fold_input` can read is folded from its input
    alone (no :class:`Record` is built, and the actions in its untracked
    entries are not validated), and only the last record's hash is read.
    This is the replay hot path.
    """
    current = start if start is not None else initial(machine, stream)
    actions = machine.new_actions()
    fold_input = codec.fold_input
    stf = machine.stf
    state = current.state
    clear = actions.clear
    version = current.version
    last: RawRecord | None = None  # the newest record folded here, whose hash is not yet read
    for raw in raws:
        inp = fold_input(raw)
        if inp is None or raw.version != version + 1:
            # Anything else (a completion, an upcast, a gap): the general path.
            current.version = version
            if last is not None:
                current.last_hash = codec.stored_hash(last)
                last = None
            apply_record(machine, current, codec.decode(raw), actions)
            version = current.version
            continue
        clear()
        try:
            result = stf(state, inp, actions)
            if result is not None:
                drive(result, machine.name, "stf")
        except Exception as exc:
            raise _divergence(raw.stream, raw.version, exc) from exc
        version += 1
        last = raw
    current.version = version
    if last is not None:
        current.last_hash = codec.stored_hash(last)
    return current


def restore_actions(
    machine: StateMachine[S, Any, A, Any, Any], current: StreamState[S, A]
) -> tuple[Tracked[A] | Untracked[Any], ...]:
    """The actions to re-issue for a stream after a crash.

    The machine's ``restore`` if it defines one, else the default: the
    outstanding tracked actions, in the order they were emitted. A restore
    that emits a tracked id which is not outstanding raises
    :class:`~fasm_es.errors.MachineError`: no completion could ever match it.
    """
    if not machine.has_restore:
        return tuple(Tracked(i, a) for i, a in current.outstanding.items())
    # Restore re-issues outstanding ids only, so it needs room for all of them
    # even when there are more than one STF call may emit.
    actions: Actions[A, Any] = Actions(max(machine.actions_capacity, len(current.outstanding)))
    drive(machine.restore(current.state, actions), machine.name, "restore")
    for action in actions:
        # A completion is accepted only for an outstanding id, so a restore that
        # re-issues under any other id would wait forever for its result.
        if isinstance(action, Tracked) and action.id not in current.outstanding:
            why = "was already completed" if action.id in current.completed else "was never emitted"
            raise MachineError(
                f"machine {machine.name}: stream {current.stream!r}: restore emitted tracked "
                f"action id {action.id!r}, which {why}; restore must re-issue outstanding ids "
                f"only (outstanding: {sorted(map(repr, current.outstanding))})"
            )
    return actions.to_tuple()
