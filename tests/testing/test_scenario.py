"""Given/when/then scenarios: they pass on the examples' rules, and fail with messages
that show the steps, what was expected and where it differs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from examples.coffee_shop.machine import (
    CoffeeShop,
    EarnPoints,
    InsufficientPoints,
    LoyaltyAccount,
    PendingRedemption,
    Redeem,
    RedemptionAlreadyPending,
    RequestRedemption,
    ShowBalance,
    ShowRedemptionPending,
    Success,
)
from examples.coffee_shop.simulation import points_are_conserved
from examples.counter.machine import Counter, CounterState, Increment, Incremented
from examples.dentist_booking.machine import (
    AptType,
    Day,
    DentistBooking,
    ExpireHolds,
    NoExpiredHolds,
    RequestSlot,
)
from examples.payments.machine import Deposit, Payments, Process
from fasm_es import (
    Actions,
    CompletionNotOutstanding,
    Input,
    InvalidInput,
    NoTracked,
    Rejection,
    StateMachine,
    TimerFired,
    Tracked,
    Untracked,
)
from fasm_es.testing import ScenarioError, completed, elapsed, scenario
from fasm_es.testing.scenario import differences

SHOP = scenario(CoffeeShop()).given(EarnPoints(order_id="o1", points=50))
REDEEM = RequestRedemption(reward="cake", cost=30)


def test_then_state_actions_and_outstanding_pass() -> None:
    (
        SHOP.when(REDEEM)
        .then_state(points=20, earned=50)
        .then_actions(
            [
                Tracked(1, Redeem(redemption_id=1, reward="cake", cost=30)),
                Untracked(ShowRedemptionPending(redemption_id=1, reward="cake")),
                Untracked(ShowBalance(points=20, held=30)),
            ]
        )
        .then_outstanding([1])
        .then_outstanding({1: Redeem(redemption_id=1, reward="cake", cost=30)})
        .then(points_are_conserved)
    )
    expected = LoyaltyAccount(
        points=20,
        earned=50,
        next_action_id=2,
        pending=PendingRedemption(redemption_id=1, reward="cake", cost=30, awaiting=1),
    )
    SHOP.when(REDEEM).then_state(expected)


def test_completions_and_rejections() -> None:
    SHOP.given(REDEEM).when(completed(1, Success(voucher="V1"))).then_state(points=20, pending=None)
    SHOP.when(RequestRedemption(reward="cake", cost=99)).then_rejects(InsufficientPoints)
    SHOP.when(RequestRedemption(reward="cake", cost=99)).then_rejects(match="balance is 50")
    SHOP.given(REDEEM).when(REDEEM).then_rejects(RedemptionAlreadyPending, match="in flight")
    (
        SHOP.given(REDEEM, completed(1, Success(voucher="V1")))
        .when(completed(1, Success(voucher="V1")))
        .then_rejects(CompletionNotOutstanding)
    )
    scenario(Counter()).when({"by": 0}).then_rejects(InvalidInput, match="greater than 0")


def test_a_refused_when_step_leaves_the_state_as_before() -> None:
    outcome = SHOP.when(RequestRedemption(reward="cake", cost=99)).then_rejects()
    assert outcome.state == SHOP.state()
    assert outcome.state.points == 50


def test_elapsed_moves_the_clock_for_the_next_steps() -> None:
    clinic = scenario(DentistBooking()).given(
        RequestSlot(patient="ann", apt_type=AptType.CHECKUP, day=Day.MON, start_minute=9 * 60)
    )
    clinic.when(ExpireHolds()).then_rejects(NoExpiredHolds)
    expired = clinic.given(elapsed(timedelta(minutes=31))).when(ExpireHolds())
    assert expired.state.requests[1].status == "Cancelling"
    assert expired.record.input.meta.accepted_at == clinic.start + timedelta(minutes=31)


def test_timer_completions_are_given_as_steps() -> None:
    account = scenario(Payments()).given(Deposit(amount=100), Process(amount=60, user="ann"))
    at = account.start + timedelta(seconds=30)
    account.when(completed("timeout-1", TimerFired(at=at))).then_outstanding(
        ["charge-1", "cancel-1"]
    )


def test_given_base_is_shared_not_mutated() -> None:
    base = scenario(Counter()).given(Increment(by=2))
    base.given(Increment(by=5)).when(Increment(by=1)).then_state(value=8)
    base.when(Increment(by=1)).then_state(CounterState(value=3))
    assert base.steps == (Increment(by=2),)


# -- failures say what went wrong -------------------------------------------------------


def failure(check: Any) -> str:
    with pytest.raises(AssertionError) as info:
        check()
    return str(info.value)


def test_state_mismatch_lists_the_differing_fields() -> None:
    text = failure(lambda: SHOP.when(REDEEM).then_state(points=21, pending=None))
    assert "the state after the input does not have the expected fields" in text
    assert "1. EarnPoints(kind='earn_points', order_id='o1', points=50)" in text
    assert "when: RequestRedemption(" in text
    assert "state.points: expected 21, actual 20" in text
    assert "state.pending: expected None, actual PendingRedemption(" in text

    text = failure(lambda: SHOP.when(REDEEM).then_state(LoyaltyAccount(points=20, earned=50)))
    assert "state.next_action_id: expected 1, actual 2" in text
    assert "expected: LoyaltyAccount(" in text and "actual:   LoyaltyAccount(" in text

    text = failure(lambda: SHOP.when(REDEEM).then_state(balance=20))
    assert "state.balance: the state has no such field" in text


def test_action_mismatch_shows_the_first_difference() -> None:
    text = failure(
        lambda: (
            scenario(Counter())
            .given(Increment(by=2))
            .when(Increment(by=3))
            .then_actions([Untracked(Incremented(previous=2, current=6))])
        )
    )
    assert "the actions emitted are not the expected ones" in text
    assert "first difference at action #0" in text
    assert "expected Untracked(action=Incremented(previous=2, current=6))" in text
    assert "actual Untracked(action=Incremented(previous=2, current=5))" in text


def test_rejection_expected_but_accepted_and_the_wrong_rejection() -> None:
    text = failure(lambda: SHOP.when(REDEEM).then_rejects(InsufficientPoints))
    assert "expected the input to be refused with InsufficientPoints, but it was accepted" in text
    assert "actions: [Tracked(id=1" in text

    text = failure(lambda: SHOP.given(REDEEM).when(REDEEM).then_rejects(InsufficientPoints))
    assert "but it was refused with RedemptionAlreadyPending" in text

    text = failure(
        lambda: SHOP.when(RequestRedemption(reward="x", cost=99)).then_rejects(match="nope")
    )
    assert "does not contain 'nope'" in text

    text = failure(lambda: SHOP.when(RequestRedemption(reward="x", cost=99)).then_state(points=1))
    assert "expected the input to be accepted (to check its state), but it was refused" in text
    assert "InsufficientPoints: the reward costs 99 points but the balance is 50" in text


def test_a_refused_given_step_is_reported_as_such() -> None:
    with pytest.raises(ScenarioError) as info:
        SHOP.given(RequestRedemption(reward="x", cost=99)).when(REDEEM).then_state(points=0)
    text = str(info.value)
    assert "given step 2 of 2 (RequestRedemption(" in text
    assert "InsufficientPoints" in text
    assert "make it the when step" in text


def test_outstanding_and_check_mismatches() -> None:
    text = failure(lambda: SHOP.when(REDEEM).then_outstanding([2]))
    assert "expected: [2]" in text and "actual:   [1]" in text
    text = failure(lambda: SHOP.when(REDEEM).then(lambda s: s.points > 100))
    assert "<lambda> does not hold: False" in text


class Forgetful(StateMachine[CounterState, Increment, NoTracked, NoTracked, NoTracked]):
    """Each STF call adds a number kept outside the state: replay cannot agree."""

    def __init__(self) -> None:
        self.calls = 0

    def stf(
        self,
        state: CounterState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, NoTracked],
    ) -> None:
        self.calls += 1
        state.value += self.calls


def test_a_log_that_does_not_replay_fails_the_scenario() -> None:
    text = failure(lambda: scenario(Forgetful()).when(Increment(by=1)).then_state(value=1))
    assert "replaying the scenario's log fails" in text


def test_differences_walks_models_mappings_and_sequences() -> None:
    assert differences({"a": [1, 2], "b": 1}, {"a": [1, 3, 4], "c": 1}, "x") == [
        "x['a'][1]: expected 2, actual 3",
        "x['a']: expected 2 items, actual 3",
        "x['b']: expected 1, actual missing",
        "x['c']: not expected, actual 1",
    ]
    assert differences(CounterState(value=1), CounterState(value=1)) == []
    assert differences(1, "1") == ["value: expected 1, actual '1'"]


def test_bad_use_is_refused() -> None:
    with pytest.raises(TypeError, match="put elapsed"):
        scenario(Counter()).when(elapsed(5))
    with pytest.raises(ValueError, match="backwards"):
        elapsed(-1)
    with pytest.raises(TypeError, match="not both"):
        SHOP.when(REDEEM).then_state(LoyaltyAccount(), points=1)
    with pytest.raises(TypeError, match="needs the expected state"):
        SHOP.when(REDEEM).then_state()
    assert issubclass(ScenarioError, AssertionError)
    assert not issubclass(Rejection, AssertionError)
