"""The blocking facade: the same engine, driven from plain threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from engine_support import Done, Jobs, Start, Work
from machines import Increment, OverLimit, Tally

from fasm_es import CompletionNotOutstanding, IdempotencyKey, RetryPolicy, SyncEngine


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'engine.db'}"


def test_submits_from_many_threads_are_committed_together(tmp_path: Path) -> None:
    with SyncEngine(Tally(), url(tmp_path)) as engine:

        def submit_many(name: str) -> None:
            for _ in range(10):
                engine.submit(name, Increment(by=1))

        threads = [threading.Thread(target=submit_many, args=(f"t{i}",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [engine.state(f"t{i}").value for i in range(8)] == [10] * 8
        assert engine.stats().commits.committed == 80
        with pytest.raises(OverLimit):
            engine.submit("t0", Increment(by=1000))
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit("t0", Increment())
    engine.close()  # a second close does nothing


def test_handlers_stuck_actions_and_completions_from_blocking_code(tmp_path: Path) -> None:
    failing = True

    def work(action: Work, key: IdempotencyKey) -> Done:
        if failing:
            raise ConnectionError("down")
        return Done(output=str(key))

    policy = RetryPolicy(max_attempts=2, base_delay=0.001)
    with SyncEngine(Jobs(), url(tmp_path), handlers={Work: work}, retry=policy) as engine:
        engine.submit("j", Start(job="a"))
        engine.idle(timeout=10)
        (stuck,) = engine.stuck()
        assert stuck.key == IdempotencyKey("j", "w1")
        assert "w1" in engine.outstanding("j")
        failing = False
        engine.retry("j", "w1")
        engine.idle(timeout=10)
        assert engine.state("j").jobs == {"a": "done"}
        with pytest.raises(CompletionNotOutstanding):
            engine.complete("j", "w1", Done(output="again"))
        assert engine.stats().completions_ignored == 1
        assert [c.action_id for c in engine.ignored_completions()] == ["w1"]
        assert engine.in_flight() == []
        assert engine.checkpoint() >= 2


def test_a_failed_start_releases_the_thread(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_size"):
        SyncEngine(Tally(), url(tmp_path), cache_size=1, max_batch=2)
    assert not [t for t in threading.enumerate() if t.name == "fasm-es-engine"]
