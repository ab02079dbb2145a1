"""Hypothesis strategies derived from a machine's declared types.

A machine declares its types once (:class:`~fasm_es.StateMachine`'s type
arguments); the same declaration yields strategies for property-based tests::

    from fasm_es.testing.strategies import inputs, results

    @given(inputs(CoffeeShop))
    def test_earning_never_rejects(value): ...

What is derived, and how:

- pydantic models: one value per field, from the field's type and its
  constraints (``Field(min_length=1)``, ``PositiveInt``, ``Field(ge=0, le=9)``,
  patterns), then validated by the model itself (values its validators refuse
  are discarded);
- unions, ``Optional`` and discriminated unions (``Annotated[A | B,
  Field(discriminator="kind")]``): one of the members; ``Literal``: one of
  its values; enums: one of their members;
- dataclasses and ``TypedDict``: their fields;
- ``list``, ``set``, ``frozenset``, ``tuple`` and ``dict`` (also their
  ``collections.abc`` forms), short by default (``max_size``);
- scalars: ``bool``, ``int``, ``float`` (finite only: NaN and infinities do
  not survive JSON), ``str``, ``bytes``, ``Decimal``, dates and times
  (pydantic's ``AwareDatetime`` and ``NaiveDatetime`` too), ``timedelta``,
  ``UUID``; ``Any`` gives JSON values.

Every value a top-level strategy yields is validated against the declared
type, so it is exactly what ``submit`` or ``complete`` accepts. A type none
of the rules covers raises :class:`StrategyError` at once, naming the type
and where it was met; supply a strategy for it with ``overrides={Type:
strategy}``.

This module imports hypothesis; :mod:`fasm_es.testing` itself does not.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, Never, NoReturn, Union, get_args, get_origin

import annotated_types
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from pydantic import (
    AwareDatetime,
    BaseModel,
    FutureDate,
    FutureDatetime,
    NaiveDatetime,
    PastDate,
    PastDatetime,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo

from fasm_es.errors import FasmError
from fasm_es.machine import MachineTypes, StateMachine, _Undeclared

DEFAULT_MAX_SIZE = 5
"""The longest collection a derived strategy draws unless the type asks for more."""

Overrides = Mapping[Any, SearchStrategy[Any]]
"""Strategies to use for given types instead of deriving them."""

_INVALID = object()

# A few fixed offsets: aware datetimes in more than one zone, without needing tzdata.
_OFFSETS = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)))

_SCALARS: dict[Any, Callable[[], SearchStrategy[Any]]] = {
    bool: st.booleans,
    int: st.integers,
    float: lambda: st.floats(allow_nan=False, allow_infinity=False),
    str: st.text,
    bytes: st.binary,
    Decimal: lambda: st.decimals(allow_nan=False, allow_infinity=False),
    datetime: st.datetimes,
    date: st.dates,
    time: st.times,
    timedelta: st.timedeltas,
    uuid.UUID: st.uuids,
    AwareDatetime: lambda: st.datetimes(timezones=st.sampled_from(_OFFSETS)),
    NaiveDatetime: st.datetimes,
    # Relative to the wall clock when validated: stay far from "now".
    PastDatetime: lambda: st.datetimes(max_value=datetime(2000, 1, 1)),
    FutureDatetime: lambda: st.datetimes(min_value=datetime(2200, 1, 1)),
    PastDate: lambda: st.dates(max_value=date(2000, 1, 1)),
    FutureDate: lambda: st.dates(min_value=date(2200, 1, 1)),
}

# Scalars whose annotated_types constraints hypothesis applies itself (efficiently).
_HYPOTHESIS_CONSTRAINED = (int, float, str, bytes, Decimal, datetime, date, time, timedelta)

# The annotated_types constraints hypothesis applies itself; others are validated afterwards.
_UNDERSTOOD = (
    annotated_types.Gt,
    annotated_types.Ge,
    annotated_types.Lt,
    annotated_types.Le,
    annotated_types.MinLen,
    annotated_types.MaxLen,
    annotated_types.Predicate,
)

_SEQUENCES = {list, Sequence, typing.MutableSequence, typing.Sequence, typing.List}  # noqa: UP006
_SETS = {set, frozenset, typing.AbstractSet, typing.MutableSet, typing.Set, typing.FrozenSet}  # noqa: UP006
_MAPPINGS = {dict, Mapping, typing.MutableMapping, typing.Mapping, typing.Dict}  # noqa: UP006


class StrategyError(FasmError, TypeError):
    """No hypothesis strategy can be derived for a declared type.

    The message names the type and where it was met (for example ``field
    'email' of model Signup``). Pass ``overrides={Type: strategy}`` to supply one.
    """


def json_values() -> SearchStrategy[Any]:
    """JSON-able values: None, booleans, integers, finite floats, text, and lists and
    dicts of them (what a field typed ``Any`` can hold in a record)."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8,
    )


def from_declared(
    tp: Any,
    *,
    overrides: Overrides | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    where: str | None = None,
) -> SearchStrategy[Any]:
    """A strategy for valid values of the declared type ``tp`` (see the module docstring).

    Raises :class:`StrategyError` when some part of ``tp`` has no strategy.
    """
    strategy = _Deriver(overrides or {}, max_size).derive(tp, where or _name(tp))
    adapter: TypeAdapter[Any] = TypeAdapter(tp)
    return strategy.map(lambda value: _validate(adapter, value)).filter(_is_valid)


def inputs(
    machine: StateMachine[Any, Any, Any, Any, Any] | type[StateMachine[Any, Any, Any, Any, Any]],
    *,
    overrides: Overrides | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> SearchStrategy[Any]:
    """Valid values of ``machine``'s declared input type (a class or an instance)."""
    types_ = _types(machine)
    return from_declared(
        types_.input,
        overrides=overrides,
        max_size=max_size,
        where=f"machine {types_.machine} input",
    )


def results(
    machine: StateMachine[Any, Any, Any, Any, Any] | type[StateMachine[Any, Any, Any, Any, Any]],
    *,
    overrides: Overrides | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> SearchStrategy[Any]:
    """Valid values of ``machine``'s declared tracked result type.

    Raises :class:`StrategyError` for a machine that declares no tracked results.
    """
    types_ = _types(machine)
    return _declared(types_, types_.tracked_result, "tracked result", overrides, max_size)


def tracked_actions(
    machine: StateMachine[Any, Any, Any, Any, Any] | type[StateMachine[Any, Any, Any, Any, Any]],
    *,
    overrides: Overrides | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> SearchStrategy[Any]:
    """Valid values of ``machine``'s declared tracked action type.

    Raises :class:`StrategyError` for a machine that declares no tracked actions.
    """
    types_ = _types(machine)
    return _declared(types_, types_.tracked_action, "tracked action", overrides, max_size)


def _types(
    machine: StateMachine[Any, Any, Any, Any, Any] | type[StateMachine[Any, Any, Any, Any, Any]],
) -> MachineTypes:
    declared = getattr(machine, "types", None)
    if not isinstance(declared, MachineTypes):
        raise StrategyError(f"{machine!r} is not a fasm-es StateMachine (class or instance)")
    return declared


def _declared(
    types_: MachineTypes, tp: Any, what: str, overrides: Overrides | None, max_size: int
) -> SearchStrategy[Any]:
    if isinstance(tp, _Undeclared) or _is_never(tp):
        raise StrategyError(
            f"machine {types_.machine} declares no {what}s (NoTracked): there is nothing to draw"
        )
    return from_declared(
        tp, overrides=overrides, max_size=max_size, where=f"machine {types_.machine} {what}"
    )


def _validate(adapter: TypeAdapter[Any], value: Any) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        return _INVALID


def _is_valid(value: Any) -> bool:
    return value is not _INVALID


def _is_never(tp: Any) -> bool:
    return tp is Never or tp is NoReturn


def _name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


class _Deriver:
    """Derives strategies for one top-level type; remembers models (for recursive ones)."""

    def __init__(self, overrides: Overrides, max_size: int) -> None:
        self.overrides = overrides
        self.max_size = max_size
        self.models: dict[type, SearchStrategy[Any]] = {}

    def fail(self, tp: Any, where: str, why: str) -> StrategyError:
        return StrategyError(
            f"cannot derive a hypothesis strategy for {_name(tp)} ({where}): {why}; "
            f"pass overrides={{{_name(tp)}: <strategy>}} to supply one"
        )

    def override(self, tp: Any) -> SearchStrategy[Any] | None:
        try:
            return self.overrides.get(tp)
        except TypeError:  # an unhashable type form cannot be a key
            return None

    def derive(self, tp: Any, where: str) -> SearchStrategy[Any]:
        """The strategy for ``tp``, met at ``where`` (for error messages)."""
        chosen = self.override(tp)
        if chosen is not None:
            return chosen
        origin = get_origin(tp)
        if origin is Annotated:
            base, *metadata = get_args(tp)
            return self.constrained(base, metadata, where)
        if _is_never(tp):
            raise self.fail(tp, where, "Never has no values")
        if tp is Any or tp is object:
            return json_values()
        if tp is None or tp is type(None):
            return st.none()
        if origin is Literal:
            return st.sampled_from(get_args(tp))
        if origin is Union or isinstance(tp, types.UnionType):
            return st.one_of([self.derive(m, where) for m in get_args(tp)])
        if isinstance(tp, typing.NewType):
            return self.derive(tp.__supertype__, where)
        if origin is not None:
            return self.generic(tp, origin, get_args(tp), (), where)
        if tp in _SEQUENCES or tp in _SETS or tp in _MAPPINGS or tp is tuple:
            return self.generic(tp, tp, (), (), where)
        if not isinstance(tp, type):
            raise self.fail(tp, where, "it is not a type fasm-es knows how to draw")
        return self.cls(tp, where)

    def cls(self, tp: type, where: str) -> SearchStrategy[Any]:
        if tp in _SCALARS:
            return _SCALARS[tp]()
        if issubclass(tp, enum.Enum):
            members = list(tp)
            if not members:
                raise self.fail(tp, where, "the enum has no members")
            return st.sampled_from(members)
        if issubclass(tp, BaseModel):
            return self.model(tp)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp)
        if issubclass(tp, dict) and hasattr(tp, "__required_keys__"):  # any TypedDict flavour
            return self.typed_dict(tp)
        raise self.fail(tp, where, "it is not a pydantic model, dataclass, union or known scalar")

    def constrained(self, base: Any, metadata: Sequence[Any], where: str) -> SearchStrategy[Any]:
        """``Annotated[base, *metadata]``: apply the constraints hypothesis understands.

        Anything else in the metadata (validators, pydantic-only options) is
        left to the final validation, which discards values it refuses.
        """
        constraints = list(_flatten(metadata))
        known = [c for c in constraints if isinstance(c, _UNDERSTOOD)]
        pattern = next((p for c in constraints if (p := getattr(c, "pattern", None))), None)
        if base is str and isinstance(pattern, str):
            lengths = [
                c for c in known if isinstance(c, annotated_types.MinLen | annotated_types.MaxLen)
            ]
            text = st.from_regex(pattern, fullmatch=True)
            return text.filter(lambda s: all(_holds(c, s) for c in lengths)) if lengths else text
        if base in _HYPOTHESIS_CONSTRAINED and known:
            strategy: SearchStrategy[Any] = st.from_type(_annotated(base, known))
            if base is float:
                strategy = strategy.filter(math.isfinite)
            elif base is Decimal:
                strategy = strategy.filter(lambda d: d.is_finite())
            step = next(
                (c.multiple_of for c in constraints if isinstance(c, annotated_types.MultipleOf)),
                None,
            )
            if base is int and isinstance(step, int) and step > 0:
                # Round down to a multiple, then keep those still inside the bounds.
                return strategy.map(lambda v: v - v % step).filter(
                    lambda v: all(_holds(c, v) for c in known)
                )
            return strategy
        origin = get_origin(base)
        if origin is not None and origin is not Annotated and _is_collection(origin):
            return self.generic(base, origin, get_args(base), known, where)
        if _is_collection(base):
            return self.generic(base, base, (), known, where)
        return self.derive(base, where)

    def generic(
        self,
        tp: Any,
        origin: Any,
        args: tuple[Any, ...],
        constraints: Sequence[Any],
        where: str,
    ) -> SearchStrategy[Any]:
        """Collections: ``list[X]``, ``set[X]``, ``tuple[X, ...]``, ``dict[K, V]`` and kin."""
        low = max(
            (c.min_length for c in constraints if isinstance(c, annotated_types.MinLen)), default=0
        )
        high = min(
            (c.max_length for c in constraints if isinstance(c, annotated_types.MaxLen)),
            default=max(self.max_size, low),
        )
        inner = f"items of {where}"
        if origin in _SEQUENCES:
            return st.lists(
                self.derive(args[0] if args else Any, inner), min_size=low, max_size=high
            )
        if origin in _SETS:
            items = self.derive(args[0] if args else Any, inner)
            make = st.frozensets if origin is frozenset else st.sets
            return make(items, min_size=low, max_size=high)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return st.lists(self.derive(args[0], inner), min_size=low, max_size=high).map(tuple)
            if args == ((),):
                return st.just(())
            if not args:
                return st.lists(json_values(), min_size=low, max_size=high).map(tuple)
            return st.tuples(*(self.derive(a, inner) for a in args))
        if origin in _MAPPINGS:
            key, value = args if args else (str, Any)
            return st.dictionaries(
                self.derive(key, f"keys of {where}"),
                self.derive(value, f"values of {where}"),
                min_size=low,
                max_size=high,
            )
        raise self.fail(tp, where, f"the generic type {_name(origin)} is not supported")

    def model(self, model: type[BaseModel]) -> SearchStrategy[Any]:
        """A pydantic model: its fields drawn, then validated by the model."""
        known = self.models.get(model)
        if known is not None:
            return known
        built: list[SearchStrategy[Any]] = []
        # A model that contains itself refers to this placeholder while it is being built.
        self.models[model] = st.deferred(lambda: built[0])
        fields: dict[str, SearchStrategy[Any]] = {}
        for name, info in model.model_fields.items():
            key = _input_key(name, info)
            tp = _annotated(info.annotation, info.metadata) if info.metadata else info.annotation
            try:
                fields[key] = self.derive(tp, f"field {name!r} of model {model.__qualname__}")
            except StrategyError:
                if info.is_required():
                    raise
                # An optional field with no strategy keeps its default.
        strategy = st.fixed_dictionaries(fields).map(lambda data: _build_model(model, data))
        built.append(strategy.filter(_is_valid))
        self.models[model] = built[0]
        return built[0]

    def dataclass(self, cls: type) -> SearchStrategy[Any]:
        hints = typing.get_type_hints(cls, include_extras=True)
        required: dict[str, SearchStrategy[Any]] = {}
        optional: dict[str, SearchStrategy[Any]] = {}
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            has_default = (
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING
            )
            where = f"field {field.name!r} of dataclass {cls.__qualname__}"
            try:
                strategy = self.derive(hints[field.name], where)
            except StrategyError:
                if not has_default:
                    raise
                continue
            (optional if has_default else required)[field.name] = strategy
        return (
            st.fixed_dictionaries(required, optional=optional)
            .map(lambda kwargs: _call(cls, kwargs))
            .filter(_is_valid)
        )

    def typed_dict(self, cls: type) -> SearchStrategy[Any]:
        hints = typing.get_type_hints(cls, include_extras=True)
        required_keys: frozenset[str] = getattr(cls, "__required_keys__", frozenset(hints))
        required: dict[str, SearchStrategy[Any]] = {}
        optional: dict[str, SearchStrategy[Any]] = {}
        for key, tp in hints.items():
            strategy = self.derive(tp, f"key {key!r} of {cls.__qualname__}")
            (required if key in required_keys else optional)[key] = strategy
        return st.fixed_dictionaries(required, optional=optional)


def _flatten(metadata: Sequence[Any]) -> typing.Iterator[Any]:
    """Constraints in ``Annotated`` metadata, with groups and ``Field(...)`` opened up."""
    for item in metadata:
        if item is None:
            continue
        if isinstance(item, FieldInfo):
            yield from _flatten(item.metadata)
        elif isinstance(item, annotated_types.GroupedMetadata):
            yield from _flatten(list(item))
        else:
            yield item


def _holds(constraint: Any, value: Any) -> bool:
    """Whether ``value`` meets one understood constraint."""
    if isinstance(constraint, annotated_types.MinLen):
        return len(value) >= constraint.min_length
    if isinstance(constraint, annotated_types.MaxLen):
        return len(value) <= constraint.max_length
    if isinstance(constraint, annotated_types.Gt):
        return bool(value > constraint.gt)
    if isinstance(constraint, annotated_types.Ge):
        return bool(value >= constraint.ge)
    if isinstance(constraint, annotated_types.Lt):
        return bool(value < constraint.lt)
    if isinstance(constraint, annotated_types.Le):
        return bool(value <= constraint.le)
    return True


def _annotated(base: Any, metadata: Sequence[Any]) -> Any:
    """``Annotated[base, *metadata]`` built at run time."""
    return Annotated[(base, *metadata)]


def _is_collection(tp: Any) -> bool:
    return tp in _SEQUENCES or tp in _SETS or tp in _MAPPINGS or tp is tuple


def _input_key(name: str, info: FieldInfo) -> str:
    """The key a model validates the field from: its alias if it has one."""
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return info.alias or name


def _build_model(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError:
        return _INVALID


def _call(cls: type, kwargs: dict[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except (ValidationError, ValueError, TypeError):
        return _INVALID


__all__ = [
    "DEFAULT_MAX_SIZE",
    "Overrides",
    "StrategyError",
    "from_declared",
    "inputs",
    "json_values",
    "results",
    "tracked_actions",
]
