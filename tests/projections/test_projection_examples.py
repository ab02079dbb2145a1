"""The examples' read models agree with the folded state of every stream, after any history.

Each test drives a machine through a seeded random history (requests,
answers from the outside service, cancels, timeouts), runs the read model,
and compares it with what the live states say. A rebuild must give the same
view.
"""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from examples.coffee_shop.machine import (
    CoffeeShop,
    CollectReward,
    EarnPoints,
    LoyaltyAccount,
    RequestRedemption,
)
from examples.coffee_shop.machine import Failed as RewardFailed
from examples.coffee_shop.machine import Pending as RewardPending
from examples.coffee_shop.machine import Success as RewardSuccess
from examples.coffee_shop.read_model import leaderboard, points_of, points_per_user
from examples.dentist_booking.machine import (
    AptType,
    BookingState,
    Cancel,
    DentistBooking,
    ExpireHolds,
    Failed,
    Pending,
    Release,
    Released,
    RequestAuto,
    RequestStatus,
    Success,
)
from examples.dentist_booking.read_model import bookings_by_day, confirmed_bookings
from examples.payments.machine import Account, Deposit, Payments, Process
from examples.payments.machine import Cancel as CancelCharge
from examples.payments.machine import Cancelled as ChargeCancelled
from examples.payments.machine import Failed as ChargeFailed
from examples.payments.machine import Success as ChargeSuccess
from examples.payments.read_model import balance_of, balances, pending_charges
from fasm_es import ManualClock, Rejection, Streams, TimerFired, open_store
from projections import Runner

SEEDS = [1, 2, 3]


def _answer_one(
    rng: random.Random, streams: Streams[Any, Any, Any, Any, Any], stream: str, answer: Any
) -> None:
    """Complete a random outstanding tracked action of ``stream`` with ``answer(id, action)``."""
    outstanding = streams.outstanding(stream)
    if not outstanding:
        return
    action_id = rng.choice(sorted(outstanding, key=str))
    result = answer(action_id, outstanding[action_id])
    if result is not None:
        with contextlib.suppress(Rejection):
            streams.complete(stream, action_id, result)


# -- dentist booking ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_confirmed_bookings_by_day_match_the_clinics_states(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    clock = ManualClock()
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    clinics = Streams(DentistBooking(), store, clock=clock)
    names = ["clinic-a", "clinic-b"]

    def answer(action_id: Any, action: Any) -> Any:
        if isinstance(action, Release):
            return Released()
        state: BookingState = clinics.state(clinic)
        request = state.requests[action.request_id]
        roll = rng.random()
        if roll < 0.65:
            return Success(amount_cents=request.amount_cents)
        return Failed(reason="card declined") if roll < 0.85 else Pending()

    for step in range(150):
        clinic = rng.choice(names)
        clock.advance(timedelta(minutes=rng.randint(1, 20)))
        roll = rng.random()
        try:
            if roll < 0.35:
                apt = rng.choice(list(AptType))
                clinics.submit(clinic, RequestAuto(patient=f"p{step}", apt_type=apt), actor="desk")
            elif roll < 0.45:
                requests = clinics.state(clinic).requests
                if requests:
                    clinics.submit(clinic, Cancel(request_id=rng.choice(sorted(requests))))
            elif roll < 0.5:
                clinics.submit(clinic, ExpireHolds())
            else:
                _answer_one(rng, clinics, clinic, answer)
        except Rejection:
            pass

    with Runner(confirmed_bookings, store, f"sqlite:///{tmp_path / 'views.db'}") as runner:
        runner.catch_up()
        with runner.engine.connect() as connection:
            view = {name: bookings_by_day(connection, name) for name in names}
        flat = {
            name: sorted(
                (day, b.start, b.end, b.patient, b.request_id)
                for day, bookings in days.items()
                for b in bookings
            )
            for name, days in view.items()
        }
        truth = {
            name: sorted(
                (r.day, r.start, r.end, r.patient, r.request_id)
                for r in clinics.state(name).requests.values()
                if r.status == RequestStatus.CONFIRMED
            )
            for name in names
        }
        assert flat == truth
        assert sum(len(v) for v in truth.values()) > 0
        for days in view.values():
            for bookings in days.values():
                assert [b.start for b in bookings] == sorted(b.start for b in bookings)
        runner.rebuild()
        with runner.engine.connect() as connection:
            assert {name: bookings_by_day(connection, name) for name in names} == view
    store.close()


# -- coffee shop -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_points_per_user_match_the_accounts(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    shop = Streams(CoffeeShop(), store, clock=ManualClock())
    users = [f"user-{n}" for n in range(4)]

    def answer(action_id: Any, action: Any) -> Any:
        roll = rng.random()
        if roll < 0.6:
            return RewardSuccess(voucher=f"v{action_id}")
        return RewardFailed(reason="out of stock") if roll < 0.8 else RewardPending()

    for step in range(200):
        user = rng.choice(users)
        roll = rng.random()
        try:
            if roll < 0.45:
                earned = EarnPoints(order_id=f"o{step}", points=rng.randint(1, 30))
                shop.submit(user, earned, actor="till")
            elif roll < 0.6:
                shop.submit(user, RequestRedemption(reward="latte", cost=rng.randint(5, 40)))
            elif roll < 0.7:
                rewards = shop.state(user).rewards
                if rewards:
                    shop.submit(
                        user, CollectReward(redemption_id=rng.choice(rewards).redemption_id)
                    )
            else:
                _answer_one(rng, shop, user, answer)
        except Rejection:
            pass

    with Runner(
        points_per_user, store, f"sqlite:///{tmp_path / 'views.db'}", batch_size=16
    ) as runner:
        runner.catch_up()

        def view() -> dict[str, tuple[int, int, int, int] | None]:
            with runner.engine.connect() as connection:
                found = {u: points_of(connection, u) for u in users}
            return {
                u: None if p is None else (p.points, p.held, p.earned, p.rewards)
                for u, p in found.items()
            }

        states: dict[str, LoyaltyAccount] = {u: shop.state(u) for u in users}
        truth = {u: (s.points, s.held, s.earned, len(s.rewards)) for u, s in states.items()}
        assert view() == truth
        assert any(r[3] > 0 for r in truth.values())  # the history issued rewards
        with runner.engine.connect() as connection:
            top = leaderboard(connection, limit=2)
        assert [p.earned for p in top] == sorted((t[2] for t in truth.values()), reverse=True)[:2]
        runner.rebuild()
        assert view() == truth
    store.close()


# -- payments ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_balances_and_pending_charges_match_the_accounts(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    clock = ManualClock()
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    accounts = Streams(Payments(), store, clock=clock)
    names = ["acct-1", "acct-2", "acct-3"]

    def answer(action_id: Any, action: Any) -> Any:
        kind = str(action_id).split("-")[0]
        if kind == "timeout":
            return TimerFired(at=action.at)
        if isinstance(action, CancelCharge):
            return ChargeCancelled(refunded=rng.random() < 0.5)
        return ChargeSuccess() if rng.random() < 0.7 else ChargeFailed(reason="declined")

    for _ in range(200):
        account = rng.choice(names)
        clock.advance(timedelta(seconds=rng.randint(1, 10)))
        roll = rng.random()
        try:
            if roll < 0.25:
                accounts.submit(account, Deposit(amount=rng.randint(100, 1000)), actor="bank")
            elif roll < 0.55:
                process = Process(amount=rng.randint(50, 600), user=f"u{rng.randint(1, 5)}")
                accounts.submit(account, process, actor="shop")
            else:
                _answer_one(rng, accounts, account, answer)
        except Rejection:
            pass

    with Runner(balances, store, f"sqlite:///{tmp_path / 'views.db'}", batch_size=8) as runner:
        runner.catch_up()

        def view() -> tuple[dict[str, Any], list[Any]]:
            with runner.engine.connect() as connection:
                money = {a: balance_of(connection, a) for a in names}
                pending = pending_charges(connection)
            return (
                {
                    a: None if b is None else (b.balance, b.reserved, b.available)
                    for a, b in money.items()
                },
                sorted((c.account, c.payment, c.user, c.amount, c.status) for c in pending),
            )

        states: dict[str, Account] = {a: accounts.state(a) for a in names}
        truth_money = {a: (s.balance, s.reserved, s.available) for a, s in states.items()}
        truth_pending = sorted(
            (a, n, p.user, p.amount, p.status)
            for a, s in states.items()
            for n, p in s.payments.items()
            if p.status in ("pending", "timed_out")
        )
        money, pending = view()
        assert money == truth_money
        assert pending == truth_pending
        statuses = {p.status for s in states.values() for p in s.payments.values()}
        # The history reached every outcome, and left some charges open.
        assert statuses == {"pending", "confirmed", "failed", "timed_out", "cancelled"}
        runner.rebuild()
        assert view() == (money, pending)
    store.close()
