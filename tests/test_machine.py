"""Declaring a machine: type arguments, input tags, declared actions, plain and async STFs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import pytest
from machines import (
    AsyncPayments,
    Cancel,
    Charge,
    CheckingPayments,
    Increment,
    Misbehave,
    Sloppy,
    SloppyState,
    Suspending,
    TallyState,
    folded_state,
    raw_records,
    sqlite_url,
)
from pydantic import BaseModel, create_model

from fasm_es import (
    Actions,
    DefinitionError,
    Input,
    MachineError,
    ManualClock,
    Normal,
    NoTracked,
    StateMachine,
    Streams,
    open_store,
)
from fasm_es.machine import drive

T = TypeVar("T")


class Empty(BaseModel):
    """A state with nothing in it."""


# -- declaration errors ---------------------------------------------------------------


def test_missing_type_arguments_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="must subclass StateMachine"):

        class Bare(StateMachine):  # type: ignore[type-arg]
            def stf(self, state: Any, input: Any, actions: Any) -> None:
                return None


def test_type_variable_arguments_are_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="concrete"):

        class Generic_(StateMachine[Empty, T, NoTracked, NoTracked, NoTracked]):
            def stf(self, state: Any, input: Any, actions: Any) -> None:
                return None


def test_too_few_type_arguments_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        StateMachine[Empty, int]  # type: ignore[misc]


def test_never_as_state_or_input_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="cannot be Never"):

        class NoInput(StateMachine[Empty, NoTracked, NoTracked, NoTracked, NoTracked]):
            def stf(self, state: Any, input: Any, actions: Any) -> None:
                return None


def test_missing_stf_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="stf"):

        class NoStf(StateMachine[Empty, int, NoTracked, NoTracked, NoTracked]):
            pass


def test_reserved_input_model_name_is_a_definition_error() -> None:
    class Completed(BaseModel):  # the tag of completion records
        id: int

    with pytest.raises(DefinitionError, match="'Completed' is reserved"):

        class Clash(StateMachine[Empty, Completed | Increment, NoTracked, NoTracked, NoTracked]):
            def stf(self, state: Any, input: Any, actions: Any) -> None:
                return None


def test_two_input_models_with_one_name_is_a_definition_error() -> None:
    first: Any = create_model("Item", a=(int, ...))
    second: Any = create_model("Item", b=(str, ...))
    union: Any = first | second
    with pytest.raises(DefinitionError, match="two input models are named 'Item'"):

        class Twins(StateMachine[Empty, union, NoTracked, NoTracked, NoTracked]):
            def stf(self, state: Any, input: Any, actions: Any) -> None:
                return None


def test_unencodable_type_is_a_definition_error_at_class_creation() -> None:
    class Opaque:
        """Not a pydantic model nor a JSON-able type."""

    with pytest.raises(DefinitionError, match="cannot be encoded"):

        class Odd(StateMachine[Empty, Opaque, NoTracked, NoTracked, NoTracked]):
            def stf(self, state: Any, input: Any, actions: Any) -> None:
                return None


def test_uncallable_initial_state_names_the_fix() -> None:
    class Needs(BaseModel):
        required: int

    class NeedsArgs(StateMachine[Needs, int, NoTracked, NoTracked, NoTracked]):
        def stf(self, state: Any, input: Any, actions: Any) -> None:
            return None

    with pytest.raises(DefinitionError, match="override initial_state"):
        NeedsArgs().initial_state()


def test_name_defaults_to_class_name_and_can_be_set() -> None:
    class Named(StateMachine[Empty, int, NoTracked, NoTracked, NoTracked]):
        name = "Custom"

        def stf(self, state: Any, input: Any, actions: Any) -> None:
            return None

    assert Sloppy.name == "Sloppy"
    assert Named.name == "Custom"
    assert Named.types.machine == "Custom"


# -- input tags -----------------------------------------------------------------------


def test_union_inputs_get_one_tag_per_model(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    assert set(CheckingPayments.types.input_tags) == {"Charge", "Cancel"}
    streams = Streams(CheckingPayments(), open_store(url))
    streams.submit("p", Charge(amount=3))
    streams.submit("p", Cancel(reason="changed my mind"))
    streams.submit("p", {"amount": 4})
    assert [r.tag for r in raw_records(url, "p")] == ["Charge", "Cancel", "Charge"]
    values = [r.input.value for r in streams.records("p") if isinstance(r.input, Normal)]
    assert [type(v) for v in values] == [Charge, Cancel, Charge]


def test_non_model_inputs_are_tagged_normal(tmp_path: Path) -> None:
    class Echo(StateMachine[list[str], int | str, NoTracked, NoTracked, NoTracked]):
        def initial_state(self) -> list[str]:
            return []

        def stf(
            self,
            state: list[str],
            input: Input[int | str, NoTracked],
            actions: Actions[NoTracked, NoTracked],
        ) -> None:
            state.append(repr(input.value) if hasattr(input, "value") else "?")

    assert set(Echo.types.input_tags) == {"Normal"}
    url = sqlite_url(tmp_path)
    streams = Streams(Echo(), open_store(url))
    streams.submit("e", 7)
    streams.submit("e", "seven")
    assert [r.tag for r in raw_records(url, "e")] == ["Normal", "Normal"]
    assert streams.state("e") == ["7", "'seven'"]
    assert folded_state(streams, "e") == ["7", "'seven'"]


def test_mixed_union_tags_models_by_name_and_the_rest_normal(tmp_path: Path) -> None:
    class Mixed(StateMachine[list[str], Increment | int, NoTracked, NoTracked, NoTracked]):
        def initial_state(self) -> list[str]:
            return []

        def stf(
            self,
            state: list[str],
            input: Input[Increment | int, NoTracked],
            actions: Actions[NoTracked, NoTracked],
        ) -> None:
            state.append(type(getattr(input, "value", None)).__name__)

    url = sqlite_url(tmp_path)
    streams = Streams(Mixed(), open_store(url))
    streams.submit("m", Increment(by=2))
    streams.submit("m", 5)
    assert [r.tag for r in raw_records(url, "m")] == ["Increment", "Normal"]
    assert folded_state(streams, "m") == ["Increment", "int"]


# -- declared actions -----------------------------------------------------------------


def test_no_tracked_machine_refuses_a_tracked_action_and_appends_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    streams = Streams(Sloppy(), open_store(url))
    streams.submit("s", Misbehave(emit="note"))
    with pytest.raises(MachineError, match="declares no tracked actions"):
        streams.submit("s", Misbehave(emit="tracked"))
    assert len(raw_records(url, "s")) == 1
    # The STF counted the input before the encoding failed; that count is gone.
    assert streams.state("s") == SloppyState(accepted=1)


def test_undeclared_action_type_is_a_machine_error_and_appends_nothing(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    streams = Streams(Sloppy(), open_store(url))
    with pytest.raises(MachineError, match="not of a declared action type"):
        streams.submit("s", Misbehave(emit="stranger"))
    assert raw_records(url, "s") == []
    assert streams.state("s") == SloppyState(accepted=0)


# -- plain and async STFs -------------------------------------------------------------


def _payment_script(streams: Streams[Any, Any, Any, Any, Any], clock: ManualClock) -> None:
    """The same inputs, at the same times, for either machine."""
    steps: list[tuple[str, Any]] = [
        ("submit", Charge(amount=10)),
        ("submit", Charge(amount=20, ids="str")),
        ("complete", (1, {"ok": True})),
        ("submit", Cancel(reason="second thoughts")),
        ("submit", Charge(amount=5)),
        ("complete", ("c2", {"ok": False})),
    ]
    for kind, arg in steps:
        clock.advance(1.25)
        if kind == "submit":
            streams.submit("pay", arg, actor="clerk")
        else:
            streams.complete("pay", arg[0], arg[1], causation_id="gateway")


def test_async_and_plain_stfs_give_identical_logs(tmp_path: Path) -> None:
    logs = []
    restores = []
    for machine, name in ((CheckingPayments(), "plain.db"), (AsyncPayments(), "async.db")):
        clock = ManualClock()
        url = sqlite_url(tmp_path, name)
        streams = Streams(machine, open_store(url), clock=clock)
        _payment_script(streams, clock)
        logs.append([(r.version, r.tag, r.body) for r in raw_records(url, "pay")])
        restores.append(streams.restore("pay"))
        assert streams.verify_replay("pay").state == streams.state("pay")
    plain, async_ = logs
    assert len(plain) == 6
    assert plain == async_
    assert restores[0] == restores[1]
    assert len(restores[0]) == 1  # charge 3 is still outstanding


def test_async_stf_that_suspends_is_a_machine_error(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    streams = Streams(Suspending(), open_store(url))
    with pytest.raises(MachineError, match="suspended"):
        streams.submit("s", Increment())
    assert raw_records(url, "s") == []
    assert streams.state("s") == TallyState()


def test_drive_refuses_a_non_none_return() -> None:
    with pytest.raises(MachineError, match="must return None"):
        drive(42, "M", "stf")  # type: ignore[arg-type]

    async def returns_value() -> int:
        return 1

    with pytest.raises(MachineError, match="must return None"):
        drive(returns_value(), "M", "stf")  # type: ignore[arg-type]


def test_drive_propagates_what_an_async_stf_raises() -> None:
    async def crashes() -> None:
        _ = 1 // 0

    with pytest.raises(ZeroDivisionError):
        drive(crashes(), "M", "stf")
