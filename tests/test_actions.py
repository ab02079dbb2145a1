"""The bounded actions container, and what an STF meets when it fills up."""

from __future__ import annotations

from pathlib import Path

import pytest
from machines import Burst, BurstState, Emit, Ping, WideBurst, folded_state, sqlite_url

from fasm_es import Actions, ActionsFull, Rejection, Streams, Tracked, Untracked, open_store


def test_add_up_to_capacity_then_actions_full() -> None:
    actions: Actions[str, str] = Actions(3)
    actions.track(1, "a")
    actions.emit("b")
    actions.add(Tracked("x", "c"))
    assert len(actions) == 3
    assert actions.remaining() == 0
    with pytest.raises(ActionsFull) as info:
        actions.emit("one too many")
    assert info.value.capacity == 3
    assert "capacity 3" in str(info.value)
    # The failed add left the container as it was.
    assert actions.to_tuple() == (Tracked(1, "a"), Untracked("b"), Tracked("x", "c"))


def test_actions_full_is_a_rejection() -> None:
    assert issubclass(ActionsFull, Rejection)


def test_zero_capacity_refuses_the_first_action() -> None:
    actions: Actions[str, str] = Actions(0)
    with pytest.raises(ActionsFull):
        actions.emit("x")
    assert len(actions) == 0


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Actions(-1)


def test_tracked_and_untracked_keep_emission_order() -> None:
    actions: Actions[str, str] = Actions(10)
    actions.track(2, "second id first")
    actions.emit("u1")
    actions.track(1, "first id second")
    actions.emit("u2")
    assert actions.tracked() == [Tracked(2, "second id first"), Tracked(1, "first id second")]
    assert actions.untracked() == [Untracked("u1"), Untracked("u2")]
    assert list(actions) == list(actions.to_tuple())
    assert [type(a) for a in actions] == [Tracked, Untracked, Tracked, Untracked]


def test_clear_empties_and_keeps_capacity() -> None:
    actions: Actions[str, str] = Actions(2)
    actions.emit("a")
    actions.emit("b")
    actions.clear()
    assert len(actions) == 0
    assert actions.capacity == 2
    assert actions.remaining() == 2
    actions.emit("c")
    actions.emit("d")
    with pytest.raises(ActionsFull):
        actions.emit("e")


def test_machine_capacity_is_configurable_per_class() -> None:
    assert Burst().new_actions().capacity == 3
    assert WideBurst().new_actions().capacity == 5


def test_stf_that_overflows_rejects_cleanly(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    streams = Streams(Burst(), open_store(url))
    streams.submit("b", Emit(n=2))
    before = list(streams.store.read_log())
    with pytest.raises(ActionsFull):
        streams.submit("b", Emit(n=4))
    assert list(streams.store.read_log()) == before
    # Burst counted two emitted pings before it overflowed; none of that stays.
    assert streams.state("b") == BurstState(emitted=2)
    assert streams.state("b") == folded_state(streams, "b")


def test_stf_that_catches_actions_full_still_accepts(tmp_path: Path) -> None:
    streams = Streams(Burst(), open_store(sqlite_url(tmp_path)))
    record = streams.submit("b", Emit(n=10, catch=True))
    assert record.actions == (
        Untracked(Ping(seq=0)),
        Untracked(Ping(seq=1)),
        Untracked(Ping(seq=2)),
    )
    assert streams.state("b") == BurstState(emitted=3, truncated=1)
    # The record folds back the same way: replay meets the same capacity.
    assert streams.verify_replay("b").state == BurstState(emitted=3, truncated=1)


def test_larger_capacity_accepts_what_the_smaller_rejects(tmp_path: Path) -> None:
    narrow = Streams(Burst(), open_store(sqlite_url(tmp_path, "narrow.db")))
    wide = Streams(WideBurst(), open_store(sqlite_url(tmp_path, "wide.db")))
    with pytest.raises(ActionsFull):
        narrow.submit("b", Emit(n=5))
    record = wide.submit("b", Emit(n=5))
    assert [a.action for a in record.actions] == [Ping(seq=i) for i in range(5)]
    with pytest.raises(ActionsFull):
        wide.submit("b", Emit(n=6))
    assert wide.version("b") == 1
    assert narrow.version("b") == 0
