"""The STF probe: equal, independent copies of the state, and what a probed call reports."""

from __future__ import annotations

from typing import Any

import pytest
from machines import Fragile, FragileState, Increment, Op, OverLimit, Refused, Tally, TallyState
from pydantic import BaseModel, Field

from fasm_es import Actions, Input, Streams, open_store
from fasm_es.testing.probe import Findings, NondeterministicStf, clone, probe


class Nested(BaseModel):
    tags: list[str] = []
    counts: dict[str, list[int]] = {}


class Outer(BaseModel):
    inner: Nested = Nested()
    items: list[Nested] = []


class Hidden(BaseModel):
    """A state that does not survive a dump: ``cache`` is excluded from it."""

    shown: int = 0
    cache: list[int] = Field(default_factory=list, exclude=True)


def test_a_clone_is_equal_and_shares_nothing_with_the_original() -> None:
    state = Outer(inner=Nested(tags=["a"], counts={"x": [1]}), items=[Nested(tags=["b"])])
    copied = clone(state)
    assert copied == state and copied is not state
    copied.inner.tags.append("changed")
    copied.inner.counts["x"].append(2)
    copied.items[0].tags.clear()
    assert state == Outer(inner=Nested(tags=["a"], counts={"x": [1]}), items=[Nested(tags=["b"])])


def test_a_state_that_does_not_survive_a_dump_is_deep_copied() -> None:
    state = Hidden(shown=1, cache=[7, 8])
    copied = clone(state)
    assert copied.cache == [7, 8] and copied == state
    copied.cache.append(9)
    assert state.cache == [7, 8]


def test_plain_values_are_deep_copied() -> None:
    state: dict[str, Any] = {"a": [1, 2]}
    copied = clone(state)
    copied["a"].append(3)
    assert state == {"a": [1, 2]}


def test_a_rejection_after_a_change_is_noted_and_the_state_is_refolded() -> None:
    findings = Findings()
    streams = Streams(probe(Fragile(), 1, findings), open_store("memory://"))
    streams.submit("s", Op(by=2))
    with pytest.raises(Refused):
        streams.submit("s", Op(by=5, then="reject"))
    assert findings.probed_calls == 2
    assert len(findings.mutates_before_rejecting) == 1
    assert "Refused after changing state" in findings.mutates_before_rejecting[0]
    assert streams.peek("s") == FragileState(total=2, history=[2])


def test_a_rejection_that_changes_nothing_is_not_noted() -> None:
    findings = Findings()
    streams = Streams(probe(Tally(), 1, findings), open_store("memory://"))
    streams.submit("s", Increment(by=100))
    with pytest.raises(OverLimit):
        streams.submit("s", Increment(by=1))
    assert findings.probed_calls == 2
    assert findings.mutates_before_rejecting == []


class Drifting(Tally):
    """Reads a counter outside its state: the same input gives different results."""

    def __init__(self) -> None:
        self.seen = 0

    def stf(self, state: TallyState, input: Input[Any, Any], actions: Actions[Any, Any]) -> None:
        self.seen += 1
        state.value += self.seen


def test_a_nondeterministic_stf_is_reported_on_a_probed_call() -> None:
    streams = Streams(probe(Drifting(), 1, Findings()), open_store("memory://"))
    with pytest.raises(NondeterministicStf, match="not deterministic"):
        streams.submit("s", Increment(by=1))


def test_only_every_nth_live_call_is_probed() -> None:
    findings = Findings()
    streams = Streams(probe(Tally(), 3, findings), open_store("memory://"))
    for _ in range(7):
        streams.submit("s", Increment(by=1))
    assert findings.probed_calls == 3  # calls 0, 3 and 6
