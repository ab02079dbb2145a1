"""The store-error fault, step by step: the store fails an append before or after storing
it, the caller or the dispatcher hears ``StoreUnavailable``, and the engine goes on."""

from __future__ import annotations

from examples.coffee_shop.machine import EarnPoints, RequestRedemption
from examples.coffee_shop.simulation import SIMULATION
from fasm_es import Completed
from fasm_es.testing.ops import Advance, Deliver, Op, Submit
from fasm_es.testing.simulator import Run

EARN = Submit("alice", EarnPoints(order_id="o1", points=50))
REDEEM = RequestRedemption(reward="cake", cost=30)


def run(*ops: Op) -> Run:
    """Run ``ops`` (every check on) and return the run as it ended."""
    done = Run(SIMULATION, 0, 0, ops=ops)
    done.run()
    return done


def waiting(done: Run) -> list[tuple[str, object, int]]:
    """The requests the engine's handlers wait on: (stream, action id, attempt)."""
    return [(r.stream, r.action_id, r.attempt) for r in done.pending]


def test_a_submit_stored_before_the_error_is_in_the_log_once_and_its_action_dispatched() -> None:
    done = run(EARN, Submit("alice", REDEEM, store_error="after_append"))
    assert done.store.last_version("alice") == 2
    assert waiting(done) == [("alice", 1, 1)]  # the Redeem, without waiting for a restart
    assert (done.stats.store_errors, done.stats.unknown_outcomes) == (1, 1)
    assert done.stats.accepted == 1  # the caller heard the error


def test_a_submit_that_failed_before_the_append_left_no_trace() -> None:
    done = run(EARN, Submit("alice", REDEEM, store_error="before_append"))
    assert done.store.last_version("alice") == 1
    assert waiting(done) == []
    assert (done.stats.store_errors, done.stats.unknown_outcomes) == (1, 0)


def test_an_answer_whose_commit_failed_is_retried_by_the_dispatcher() -> None:
    failed = run(EARN, Submit("alice", REDEEM), Deliver(0, "ok", "before_append"))
    assert failed.store.last_version("alice") == 2  # the answer is not in the log
    assert waiting(failed) == []  # the dispatcher waits for its backoff
    retried = run(*failed.trace, Advance(60))
    assert waiting(retried) == [("alice", 1, 2)]  # the handler is called again


def test_an_answer_stored_before_the_error_completes_the_action_once() -> None:
    stored: list[Op] = [
        EARN,
        Submit("alice", REDEEM),
        Deliver(0, "ok", "after_append"),
        Advance(60),
    ]
    done = run(*stored)
    # The answer (Pending) asked for a status check, id 2, dispatched after the reread;
    # the dispatcher, which heard an error, calls the handler of id 1 again.
    assert waiting(done) == [("alice", 2, 1), ("alice", 1, 2)]
    again = run(*stored, Deliver(1, "ok"))  # that second answer is refused
    log = list(again.second_writer.records("alice"))
    assert [r.input.id for r in log if isinstance(r.input, Completed)] == [1]
    assert again.life.engine.stats().dispatch.results_not_outstanding == 1
    assert again.stats.unknown_outcomes == 1
