"""Strategies derived from declared types: valid values for every example machine,
each kind of type, and a clear error for a type with no strategy."""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, NewType

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    PositiveInt,
    StringConstraints,
    TypeAdapter,
    conint,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

from examples.coffee_shop.machine import (
    CheckStatus,
    CoffeeShop,
    CollectReward,
    EarnPoints,
    Pending,
    Redeem,
    RequestRedemption,
)
from examples.counter.machine import Counter
from examples.dentist_booking.machine import DentistBooking
from examples.payments.machine import Payments
from fasm_es import InvalidInput, Rejection, StateMachine, Streams, open_store
from fasm_es.testing import StrategyError, inputs, results, tracked_actions
from fasm_es.testing.strategies import from_declared

FAST = settings(max_examples=60, deadline=None, database=None, derandomize=True)
SEARCH = settings(
    max_examples=2000,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate],  # any example will do: no need to shrink it
)
EXAMPLES = [Counter, CoffeeShop, DentistBooking, Payments]


def fresh(machine: type[StateMachine[Any, Any, Any, Any, Any]]) -> Any:
    return machine()


@pytest.mark.parametrize("machine", EXAMPLES, ids=lambda m: m.__name__)
def test_drawn_inputs_are_accepted_by_submit_validation(
    machine: type[StateMachine[Any, Any, Any, Any, Any]],
) -> None:
    streams = Streams(fresh(machine), open_store("memory://"))
    adapter: TypeAdapter[Any] = TypeAdapter(machine.types.input)

    @FAST
    @given(inputs(machine))
    def check(value: Any) -> None:
        assert adapter.validate_python(value) == value
        before = streams.store.last_version("s")
        try:
            streams.submit("s", value)  # validates, runs the STF, encodes, appends
        except Rejection:
            assert streams.store.last_version("s") == before
        except InvalidInput as exc:  # pragma: no cover - the failure this test looks for
            pytest.fail(f"a drawn input was refused as invalid: {exc}")

    check()


@pytest.mark.parametrize("machine", EXAMPLES[1:], ids=lambda m: m.__name__)
def test_drawn_results_and_actions_validate(
    machine: type[StateMachine[Any, Any, Any, Any, Any]],
) -> None:
    streams = Streams(fresh(machine), open_store("memory://"))

    @FAST
    @given(results(machine), tracked_actions(machine))
    def check(result: Any, action: Any) -> None:
        assert streams.codec.validate_result(result) == result
        assert TypeAdapter(machine.types.tracked_action).validate_python(action) == action

    check()


def is_a(cls: type, value: object) -> bool:
    return isinstance(value, cls)


def test_every_member_of_a_discriminated_union_is_drawn() -> None:
    drawn = inputs(CoffeeShop)
    for member in (EarnPoints, RequestRedemption, CollectReward):
        found = find(drawn, functools.partial(is_a, member), settings=SEARCH)
        assert isinstance(found, member)
    assert isinstance(find(tracked_actions(CoffeeShop), lambda v: True), Redeem | CheckStatus)
    assert find(results(CoffeeShop), lambda v: isinstance(v, Pending), settings=SEARCH) == Pending()


def test_a_machine_without_tracked_results_says_so() -> None:
    with pytest.raises(StrategyError, match="machine Counter declares no tracked results"):
        results(Counter)
    with pytest.raises(StrategyError, match="machine Counter declares no tracked actions"):
        tracked_actions(Counter())
    with pytest.raises(StrategyError, match="is not a fasm-es StateMachine"):
        inputs(object())  # type: ignore[arg-type]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Shape(BaseModel):
    kind: Literal["square", "circle"]
    size: PositiveInt
    name: Annotated[str, Field(min_length=2, max_length=4)]
    code: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}-\d{2}$")]
    minute: Annotated[int, Field(ge=0, le=1440)]
    triple: conint(ge=0, le=100, multiple_of=3)  # type: ignore[valid-type]
    colour: Colour
    at: AwareDatetime
    tags: Annotated[list[str], Field(min_length=1, max_length=2)]
    scores: dict[str, float] = {}
    note: str | None = None


@dataclass(frozen=True)
class Point:
    x: int
    y: int = 0


class Row(TypedDict):
    id: int
    label: str


OrderId = NewType("OrderId", int)


@FAST
@given(from_declared(Shape))
def test_constraints_are_respected(shape: Shape) -> None:
    assert shape.kind in ("square", "circle")
    assert shape.size >= 1
    assert 2 <= len(shape.name) <= 4
    assert shape.code[3] == "-" and shape.code[:3].isupper()
    assert 0 <= shape.minute <= 1440
    assert shape.triple % 3 == 0 and 0 <= shape.triple <= 100
    assert isinstance(shape.colour, Colour)
    assert shape.at.tzinfo is not None
    assert 1 <= len(shape.tags) <= 2
    assert all(math.isfinite(v) for v in shape.scores.values())


@FAST
@given(
    from_declared(Point),
    from_declared(Row),
    from_declared(OrderId),
    from_declared(tuple[int, str]),
    from_declared(frozenset[int]),
    from_declared(Any),
)
def test_dataclasses_typeddicts_newtypes_collections_and_any(
    point: Point, row: Row, order: int, pair: tuple[int, str], ints: frozenset[int], value: Any
) -> None:
    assert isinstance(point, Point) and isinstance(point.x, int)
    assert set(row) == {"id", "label"}
    assert isinstance(order, int)
    assert isinstance(pair[0], int) and isinstance(pair[1], str)
    assert isinstance(ints, frozenset)
    TypeAdapter(Any).dump_json(value)  # JSON-able


class Window(BaseModel):
    start: int
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError("end before start")
        return self


class Even(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def _even(cls, n: int) -> int:
        if n % 2:
            raise ValueError("odd")
        return n


@FAST
@given(from_declared(Window), from_declared(Even))
def test_values_a_validator_refuses_are_never_drawn(window: Window, even: Even) -> None:
    assert window.end > window.start
    assert even.n % 2 == 0


class Tree(BaseModel):
    value: int
    children: list[Tree] = []


@FAST
@given(from_declared(Tree, max_size=2))
def test_recursive_models(tree: Tree) -> None:
    assert isinstance(tree, Tree)
    assert len(tree.children) <= 2


class Signup(BaseModel):
    email: complex
    when: datetime | None = None


class WithHook(BaseModel):
    hook: complex = 0j
    name: str


def test_a_type_with_no_strategy_is_named_and_can_be_overridden() -> None:
    with pytest.raises(StrategyError) as info:
        from_declared(Signup)
    message = str(info.value)
    assert "complex" in message and "field 'email' of model Signup" in message
    assert "overrides={complex: <strategy>}" in message

    drawn = find(from_declared(Signup, overrides={complex: st.just(2j)}), lambda s: True)
    assert drawn.email == 2j
    # An optional field with no strategy keeps its default.
    assert find(from_declared(WithHook), lambda o: True).hook == 0j
