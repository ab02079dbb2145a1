"""The counter example on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.counter import Counter, CounterState, Increment, Incremented, Overflowed
from fasm_es import InvalidInput, Streams, Untracked, open_store

STREAM = "visits"


class SmallCounter(Counter):
    """A counter that overflows past 5."""

    def initial_state(self) -> CounterState:
        return CounterState(limit=5)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'counter.db'}"


def test_increments_are_recorded_with_their_notifications(db_url: str) -> None:
    with open_store(db_url) as store:
        streams = Streams(Counter(), store)
        first = streams.submit(STREAM, Increment(), actor="door")
        second = streams.submit(STREAM, {"by": 4})

        assert (first.version, second.version) == (1, 2)
        assert first.actions == (Untracked(Incremented(previous=0, current=1)),)
        assert second.actions == (Untracked(Incremented(previous=1, current=5)),)
        assert [r.meta.actor for r in streams.records(STREAM)] == ["door", None]
        assert streams.state(STREAM).value == 5


def test_state_survives_reopening_the_file_and_replay_equals_live(db_url: str) -> None:
    with open_store(db_url) as store:
        streams = Streams(Counter(), store)
        for by in (1, 2, 3):
            streams.submit(STREAM, Increment(by=by))
        streams.submit("other", Increment(by=10))

    with open_store(db_url) as store:
        streams = Streams(Counter(), store)
        assert streams.state(STREAM) == CounterState(value=6)
        assert streams.state(STREAM, at=2).value == 3
        assert streams.state("other").value == 10
        assert streams.verify_replay(STREAM).state == streams.state(STREAM)
        assert sorted(store.streams()) == ["other", STREAM]


def test_an_overflow_is_rejected_and_appends_nothing(db_url: str) -> None:
    with open_store(db_url) as store:
        streams = Streams(SmallCounter(), store)
        streams.submit(STREAM, Increment(by=4))
        with pytest.raises(Overflowed):
            streams.submit(STREAM, Increment(by=2))
        assert store.last_version(STREAM) == 1
        assert streams.state(STREAM) == CounterState(value=4, limit=5)
        streams.submit(STREAM, Increment(by=1))
        assert streams.state(STREAM).value == 5


@pytest.mark.parametrize("payload", [{"by": 0}, {"by": -3}, {"by": "many"}, 7])
def test_an_invalid_increment_is_refused_before_the_stf(db_url: str, payload: object) -> None:
    with open_store(db_url) as store:
        streams = Streams(Counter(), store)
        streams.submit(STREAM, Increment())
        with pytest.raises(InvalidInput):
            streams.submit(STREAM, payload)
        assert store.last_version(STREAM) == 1
        assert streams.state(STREAM).value == 1
