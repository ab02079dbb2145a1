"""The store-error fault, step by step: the store fails an append before or after storing
it, the caller or the dispatcher hears ``StoreUnavailable``, and the engine goes on; an
outage then refuses every call for a while, and the engine catches up once it ends."""

from __future__ import annotations

import broken
import pytest

from examples.coffee_shop.machine import EarnPoints, RequestRedemption
from examples.coffee_shop.simulation import SIMULATION
from fasm_es import Completed
from fasm_es.store import EventStore
from fasm_es.testing import Faults
from fasm_es.testing.ops import Advance, Crash, Deliver, Op, Submit
from fasm_es.testing.simulator import CheckFailed, Run, _FaultyStore

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


# -- outages: the store refuses every call for a while ------------------------------------

EARN_MORE = [Submit("alice", EarnPoints(order_id=f"o{n}", points=5)) for n in (2, 3)]


def test_while_the_store_is_down_the_engine_cannot_reread_and_is_not_blamed_for_it() -> None:
    done = run(EARN, Submit("alice", REDEEM, store_error="after_append", outage=3))
    assert done.store.last_version("alice") == 2  # the Redeem's record is stored...
    assert waiting(done) == []  # ...but its reread was refused: nothing dispatched yet
    assert (done.stats.outages, done.stats.refused_calls) == (1, 1)


def test_submits_during_an_outage_are_refused_and_the_engine_catches_up_when_it_ends() -> None:
    done = run(EARN, Submit("alice", REDEEM, store_error="after_append", outage=3), *EARN_MORE)
    # Both submits were refused (one call each) and stored nothing; the third refusal
    # ended the outage, and the engine's next reread dispatched the Redeem.
    assert done.store.last_version("alice") == 2
    assert done.stats.accepted == 1 and done.stats.refused_calls == 3
    assert waiting(done) == [("alice", 1, 1)]


def test_the_engine_retries_a_failed_reread_with_backoff_in_virtual_time() -> None:
    down = run(EARN, Submit("alice", REDEEM, store_error="before_append", outage=4))
    assert down.stats.refused_calls == 1  # the first reread, at once
    # Each retry waits longer; a second of virtual time covers four of them.
    back = run(*down.trace, Advance(1), *EARN_MORE)
    assert back.stats.refused_calls == 4
    assert back.stats.accepted == 3  # the store answers again


def test_an_engine_that_gives_up_rereading_is_caught_only_with_outages() -> None:
    spec = broken.GIVES_UP_ON_DOUBTS
    with pytest.raises(CheckFailed) as info:
        Run(
            spec, 0, 0, ops=[EARN, Submit("alice", REDEEM, store_error="after_append", outage=1)]
        ).run()
    assert info.value.check == "forgotten-action"
    assert "tracked action ids [1]" in info.value.message
    # With the store back at once, its single reread succeeds: nothing tells it apart.
    Run(spec, 0, 0, ops=[EARN, Submit("alice", REDEEM, store_error="after_append")]).run()


def test_an_outage_nobody_calls_through_ends_after_its_time() -> None:
    # The impatient engine stops calling after one refused reread: only time ends the outage.
    stalled = [EARN, Submit("alice", REDEEM, store_error="before_append", outage=5)]
    seconds = broken.GIVES_UP_ON_DOUBTS.faults.max_outage_seconds
    for waited, accepted in ((seconds - 1, 1), (seconds + 1, 2)):
        done = Run(broken.GIVES_UP_ON_DOUBTS, 0, 0, ops=[*stalled, Advance(waited), EARN_MORE[0]])
        done.run()
        assert done.stats.accepted == accepted, waited


def test_a_restarted_engine_reaches_the_store_again() -> None:
    done = run(
        EARN, Submit("alice", REDEEM, store_error="before_append", outage=8), Crash(), EARN_MORE[0]
    )
    assert done.stats.accepted == 2 and done.stats.refused_calls == 1


def test_outages_need_a_bound_in_calls_and_in_time() -> None:
    with pytest.raises(ValueError, match="max_outage_calls >= 1"):
        Faults(max_outage_calls=0)
    with pytest.raises(ValueError, match="max_outage_seconds > 0"):
        Faults(max_outage_seconds=0)
    assert Faults(outage=0.0, max_outage_calls=0).outage == 0.0  # no outage, no bound needed


def test_an_outage_reaches_every_call_the_store_offers() -> None:
    """A store method added later must be refused during an outage too (overridden here)."""
    offered = {
        name
        for name, value in vars(EventStore).items()
        if callable(value) and not name.startswith("_") and name != "close"
    }
    assert "read_stream" in offered and "append" in offered
    assert offered <= set(vars(_FaultyStore)), sorted(offered - set(vars(_FaultyStore)))
