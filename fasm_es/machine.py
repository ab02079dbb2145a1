"""The state machine a user writes: types declared once, an STF, a restore.

A machine declares its five types as the type arguments of
:class:`StateMachine`::

    class Counter(StateMachine[CounterState, Increment, NoTracked, NoTracked, Incremented]):
        def stf(self, state, input, actions) -> None: ...

in the order *state, input, tracked action, tracked result, untracked
action*. Each may be a pydantic model, a union of models, or a JSON-able type.
The same declaration gives static typing (mypy checks ``stf`` against it),
validation of submitted payloads, and the stored encoding of records and
snapshots. Use :data:`NoTracked` (``typing.Never``) for a kind of action a
machine never emits.

The rules an STF must follow (each one is checked by the simulator):

1. Deterministic: the same state and input give the same state change,
   actions and outcome. No wall clock (read ``input.meta.accepted_at``), no
   unseeded randomness, no I/O, no iteration order that can vary.
2. Reject by raising a subclass of :class:`~fasm_es.errors.Rejection`; any
   other exception is a bug and propagates.
3. Tracked action ids are chosen deterministically from state (a counter) and
   are unique within the stream.
4. Every tracked action's completion updates state, so that ``restore``
   re-emits only what is still outstanding.
5. ``restore`` is a pure function of state.

Unlike fasm, the STF may mutate state before it rejects: the engine discards
such a state and keeps the fold of the log (DESIGN guarantee 2).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Never,
    NoReturn,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from pydantic import BaseModel, TypeAdapter
from pydantic_core import core_schema

from fasm_es.actions import DEFAULT_CAPACITY, Actions
from fasm_es.errors import DefinitionError, MachineError
from fasm_es.inputs import Input
from fasm_es.schema import Schema

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
A = TypeVar("A")
R = TypeVar("R")
U = TypeVar("U")

NoTracked = Never
"""Declare a kind of action or result a machine never has (``typing.Never``)."""

RESERVED_TAGS = frozenset({"Completed", "Normal", "Snapshot"})


class _Undeclared:
    """Stands in for ``Never``: every value is refused, with a message saying why."""

    def __init__(self, machine: str, what: str) -> None:
        self.machine = machine
        self.what = what

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        def refuse(value: Any) -> NoReturn:
            raise ValueError(f"machine {self.machine} declares no {self.what}")

        return core_schema.no_info_plain_validator_function(
            refuse,
            serialization=core_schema.plain_serializer_function_ser_schema(refuse),
        )


def _is_never(tp: Any) -> bool:
    return tp is Never or tp is NoReturn


def _members(tp: Any) -> tuple[Any, ...]:
    """The members of a (possibly ``Annotated``) union type, or the type itself."""
    if get_origin(tp) is Annotated:
        return _members(get_args(tp)[0])
    if get_origin(tp) is Union or isinstance(tp, types.UnionType):
        return get_args(tp)
    return (tp,)


@dataclass(frozen=True)
class MachineTypes:
    """The five declared types of a machine and what is derived from them.

    ``input_tags`` maps each stored type tag of a normal input to the
    declared type its value decodes to: one tag per pydantic model in the
    input union (the class name), plus ``"Normal"`` for the union of any
    other members.
    """

    machine: str
    state: Any
    input: Any
    tracked_action: Any
    tracked_result: Any
    untracked_action: Any
    input_tags: dict[str, Any]

    @property
    def declares_tracked(self) -> bool:
        """Whether the machine declares tracked actions."""
        return not isinstance(self.tracked_action, _Undeclared)

    def tag_of(self, value: object) -> str:
        """The stored type tag for a (validated) normal input value."""
        name = type(value).__name__
        if isinstance(value, BaseModel) and self.input_tags.get(name) is type(value):
            return name
        return "Normal"

    @classmethod
    def declare(cls, machine: str, args: tuple[Any, ...]) -> MachineTypes:
        if len(args) != 5:
            raise DefinitionError(
                f"machine {machine}: StateMachine takes 5 type arguments "
                "(state, input, tracked action, tracked result, untracked action), "
                f"got {len(args)}"
            )
        state, input_, tracked, result, untracked = args
        if isinstance(state, TypeVar) or any(isinstance(a, TypeVar) for a in args):
            raise DefinitionError(f"machine {machine}: all five type arguments must be concrete")
        if _is_never(state) or _is_never(input_):
            raise DefinitionError(f"machine {machine}: state and input types cannot be Never")

        def declared(tp: Any, what: str) -> Any:
            return _Undeclared(machine, what) if _is_never(tp) else tp

        tags: dict[str, Any] = {}
        others: list[Any] = []
        for member in _members(input_):
            if isinstance(member, type) and issubclass(member, BaseModel):
                name = member.__name__
                if name in RESERVED_TAGS:
                    raise DefinitionError(
                        f"machine {machine}: input model name {name!r} is reserved "
                        "for the stored encoding; rename the model"
                    )
                if name in tags and tags[name] is not member:
                    raise DefinitionError(
                        f"machine {machine}: two input models are named {name!r}; "
                        "stored records are tagged by class name, so rename one"
                    )
                tags[name] = member
            else:
                others.append(member)
        if others:
            tags["Normal"] = others[0] if len(others) == 1 else Union[tuple(others)]  # noqa: UP007
        result_types = cls(
            machine=machine,
            state=state,
            input=input_,
            tracked_action=declared(tracked, "tracked actions"),
            tracked_result=declared(result, "tracked results"),
            untracked_action=declared(untracked, "untracked actions"),
            input_tags=tags,
        )
        # Building every adapter now turns an unusable type into an error at
        # class creation, not at the first submit.
        for what, tp in (
            ("state", result_types.state),
            ("input", result_types.input),
            ("tracked action", result_types.tracked_action),
            ("tracked result", result_types.tracked_result),
            ("untracked action", result_types.untracked_action),
        ):
            try:
                TypeAdapter(tp)
            except Exception as exc:
                raise DefinitionError(
                    f"machine {machine}: the declared {what} type {tp!r} cannot be encoded: {exc}"
                ) from exc
        return result_types


def _declared_args(cls: type) -> tuple[Any, ...] | None:
    for base in getattr(cls, "__orig_bases__", ()):
        if get_origin(base) is StateMachine:
            return get_args(base)
    return None


class StateMachine(Generic[S, I, A, R, U]):
    """Base class of a machine: subclass ``StateMachine[State, Input, Action, Result, Untracked]``.

    Class attributes a machine may set:

    - ``name``: the machine's name in errors and tools (default: the class name);
    - ``actions_capacity``: how many actions one STF call may emit (default 64);
    - ``snapshot_every``: take a snapshot of a stream every this many records
      (default 1000; ``None`` turns snapshots off);
    - ``schema_versions``: the current version of record tags and of
      ``"Snapshot"`` whose shape changed, with upcasters marked by
      :func:`~fasm_es.schema.upcaster` (see :mod:`fasm_es.schema`).

    Override :meth:`stf` (required), :meth:`initial_state` (when the state
    type cannot be built with no arguments) and :meth:`restore` (to re-issue
    something other than the outstanding tracked actions after a crash).
    """

    name: ClassVar[str] = "StateMachine"
    actions_capacity: ClassVar[int] = DEFAULT_CAPACITY
    snapshot_every: ClassVar[int | None] = 1000
    schema_versions: ClassVar[Mapping[str, int]] = {}
    types: ClassVar[MachineTypes]
    schema: ClassVar[Schema]
    has_restore: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        args = _declared_args(cls)
        if args is not None:
            cls.types = MachineTypes.declare(cls.name, args)
        elif not hasattr(cls, "types"):
            raise DefinitionError(
                f"machine {cls.__name__} must subclass StateMachine[State, Input, "
                "TrackedAction, TrackedResult, UntrackedAction] with concrete types"
            )
        if cls.__dict__.get("stf") is None and cls.stf is StateMachine.stf:
            raise DefinitionError(f"machine {cls.__name__} must define stf(state, input, actions)")
        cls.has_restore = cls.restore is not StateMachine.restore
        inherited = getattr(cls, "schema", None)
        cls.schema = Schema.collect(
            cls.name,
            cls.__dict__,
            cls.schema_versions,
            inherited.upcasters if inherited is not None else {},
        )
        if cls.snapshot_every is not None and cls.snapshot_every < 1:
            raise DefinitionError(
                f"machine {cls.__name__}: snapshot_every must be >= 1 or None, "
                f"got {cls.snapshot_every}"
            )

    def initial_state(self) -> S:
        """The state of a stream with no records. Default: the state type called with no args."""
        state_type = self.types.state
        try:
            return state_type()  # type: ignore[no-any-return]
        except Exception as exc:
            raise DefinitionError(
                f"machine {self.name}: cannot build the initial state by calling "
                f"{state_type!r}() ({exc}); override initial_state()"
            ) from exc

    def stf(self, state: S, input: Input[I, R], actions: Actions[A, U]) -> Awaitable[None] | None:
        """Accept ``input`` (return) or reject it (raise a Rejection), emitting ``actions``."""
        raise NotImplementedError

    def restore(self, state: S, actions: Actions[A, U]) -> Awaitable[None] | None:
        """Emit the tracked actions to re-issue after a crash.

        Not overriding it selects the default: re-emit exactly the tracked
        actions the log shows as emitted and not yet completed.
        """
        raise NotImplementedError

    def new_actions(self) -> Actions[A, U]:
        """An empty actions container with this machine's capacity."""
        return Actions(self.actions_capacity)


def drive(result: Awaitable[None] | None, machine: str, what: str) -> None:
    """Run a plain or ``async`` STF/restore result to completion, synchronously.

    An async STF must not suspend (it may not do I/O), so its coroutine
    finishes on the first step. One that suspends breaks the determinism
    rule and is reported as a :class:`MachineError`.
    """
    if result is None:
        return
    if not inspect.iscoroutine(result):
        raise MachineError(
            f"machine {machine}: {what} returned {result!r}; it must return None "
            "(accept) or raise (reject)"
        )
    coro: Coroutine[Any, Any, Any] = result
    try:
        coro.send(None)
    except StopIteration as stop:
        if stop.value is not None:
            raise MachineError(
                f"machine {machine}: {what} returned {stop.value!r}; it must return None "
                "(accept) or raise (reject)"
            ) from None
        return
    coro.close()
    raise MachineError(
        f"machine {machine}: async {what} suspended on an await; an STF or restore must not "
        "do I/O or wait on anything (rule 1: deterministic)"
    )
