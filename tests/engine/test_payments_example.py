"""The payments example on the engine: charges, declines, timeouts, restarts, and its demo."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_support import run, until

from examples.payments import (
    NEVER_ARRIVED,
    Account,
    Charge,
    Deposit,
    FakeGateway,
    InsufficientFunds,
    Notification,
    Payments,
    Process,
    Success,
    charge_key,
    demo,
    gateway_handlers,
)
from fasm_es import Engine, IdempotencyKey, ManualClock, RetryPolicy

TIMEOUT = timedelta(seconds=30)
FAST = RetryPolicy(max_attempts=2, base_delay=0.001)


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'payments.db'}"


def engine_for(
    tmp_path: Path, gateway: FakeGateway, clock: ManualClock, **handlers: Any
) -> Engine[Account, Any, Any, Any, Any]:
    chosen = gateway_handlers(gateway)
    if "charge" in handlers:
        chosen[Charge] = handlers["charge"]
    return Engine(Payments(TIMEOUT), url(tmp_path), handlers=chosen, clock=clock, retry=FAST)


async def status(engine: Engine[Account, Any, Any, Any, Any], n: int) -> str:
    return (await engine.state("acct")).payments[n].status


def test_a_charge_that_succeeds_moves_the_money_and_tells_the_user(tmp_path: Path) -> None:
    gateway, clock = FakeGateway(), ManualClock()
    told: list[Notification] = []

    async def scenario() -> None:
        async with engine_for(tmp_path, gateway, clock) as engine:
            engine.subscribe(Notification, lambda n, record: told.append(n))
            await engine.submit("acct", Deposit(amount=1_000))
            await engine.submit("acct", Process(amount=400, user="ann"))
            await until(lambda: told, "the user is told")
            account = await engine.state("acct")
            assert (account.balance, account.available) == (600, 600)
            assert told == [Notification(payment=1, user="ann", amount=400, outcome="confirmed")]
            with pytest.raises(InsufficientFunds):
                await engine.submit("acct", Process(amount=601, user="ann"))
        assert gateway.charged() == {charge_key("acct", 1): 1}

    run(scenario())


def test_a_declined_charge_releases_the_reservation(tmp_path: Path) -> None:
    gateway, clock = FakeGateway(decline_over=100), ManualClock()

    async def scenario() -> None:
        async with engine_for(tmp_path, gateway, clock) as engine:
            await engine.submit("acct", Deposit(amount=1_000))
            await engine.submit("acct", Process(amount=900, user="bob"))
            await until(lambda: _is(engine, 1, "failed"), "the decline arrives")
            account = await engine.state("acct")
            assert (account.balance, account.available) == (1_000, 1_000)
            assert account.payments[1].reason == "declined"

    run(scenario())


async def _is(engine: Engine[Account, Any, Any, Any, Any], n: int, expected: str) -> bool:
    return await status(engine, n) == expected


def test_a_charge_that_never_answers_times_out_and_is_cancelled(tmp_path: Path) -> None:
    gateway, clock = FakeGateway(), ManualClock()
    gateway.unreachable.add("mallory")

    async def scenario() -> None:
        async with engine_for(tmp_path, gateway, clock) as engine:
            await engine.submit("acct", Deposit(amount=1_000))
            await engine.submit("acct", Process(amount=300, user="mallory"))
            await until(engine.stuck, "the charge is stuck")
            assert (await engine.state("acct")).available == 700
            clock.advance(TIMEOUT)
            await until(lambda: _is(engine, 1, "cancelled"), "the payment is cancelled")
            account = await engine.state("acct")
            assert (account.balance, account.available) == (1_000, 1_000)
            assert account.payments[1].reason == "timed out; never charged"
            # The stuck charge, retried once the gateway is back, can no longer land.
            gateway.unreachable.clear()
            engine.retry("acct", "charge-1")
            await engine.idle(timeout=10)
            assert await engine.outstanding("acct") == {}
            assert (await engine.state("acct")).payments[1].status == "cancelled"
        assert gateway.charged() == {}
        assert gateway.state_of(charge_key("acct", 1)) == "voided"

    run(scenario())


def test_a_charge_that_lands_after_the_timeout_is_refunded(tmp_path: Path) -> None:
    gateway, clock = FakeGateway(), ManualClock()
    answer = asyncio.Event()

    async def slow_charge(action: Charge, key: IdempotencyKey) -> Any:
        result = gateway.charge(str(key), action.amount, action.user)
        await answer.wait()
        return result

    async def scenario() -> None:
        async with engine_for(tmp_path, gateway, clock, charge=slow_charge) as engine:
            await engine.submit("acct", Deposit(amount=500))
            await engine.submit("acct", Process(amount=200, user="cy"))
            await until(gateway.charged, "the gateway charges")
            clock.advance(TIMEOUT)
            await until(lambda: _is(engine, 1, "cancelled"), "the payment is cancelled")
            answer.set()
            await engine.idle(timeout=10)
            account = await engine.state("acct")
            assert account.payments[1].reason == "timed out; refunded"
            assert (account.balance, account.available) == (500, 500)
        assert gateway.state_of(charge_key("acct", 1)) == "refunded"

    run(scenario())


class CheckedGateway(FakeGateway):
    """Remembers the keys it was asked the status of."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[str] = []

    def status(self, key: str) -> Any:
        self.checked.append(key)
        return super().status(key)


def test_after_a_restart_the_open_charge_is_checked_not_charged_again(tmp_path: Path) -> None:
    gateway, clock = CheckedGateway(), ManualClock()

    async def charge_then_die(action: Charge, key: IdempotencyKey) -> Any:
        gateway.charge(str(key), action.amount, action.user)
        await asyncio.Event().wait()  # the process stops before the answer is recorded

    async def scenario() -> None:
        async with engine_for(tmp_path, gateway, clock, charge=charge_then_die) as engine:
            await engine.submit("acct", Deposit(amount=500))
            await engine.submit("acct", Process(amount=100, user="dan"))
            await until(gateway.charged, "the gateway charges")
        async with engine_for(tmp_path, gateway, clock) as engine:
            await until(lambda: _is(engine, 1, "confirmed"), "the status check confirms it")
            assert (await engine.state("acct")).balance == 400
        assert gateway.checked == [charge_key("acct", 1)]
        assert gateway.charged() == {charge_key("acct", 1): 1}
        assert gateway.duplicates() == []  # asked about, never charged again

    run(scenario())


def test_a_charge_that_never_reached_the_gateway_fails_after_a_restart(tmp_path: Path) -> None:
    gateway, clock = FakeGateway(), ManualClock()
    gateway.unreachable.add("eve")

    async def scenario() -> None:
        async with engine_for(tmp_path, gateway, clock) as engine:
            await engine.submit("acct", Deposit(amount=500))
            await engine.submit("acct", Process(amount=100, user="eve"))
        gateway.unreachable.clear()
        async with engine_for(tmp_path, gateway, clock) as engine:
            await until(lambda: _is(engine, 1, "failed"), "the payment fails")
            account = await engine.state("acct")
            assert account.payments[1].reason == NEVER_ARRIVED
            assert (account.balance, account.available) == (500, 500)
            # The closed key: a stray copy of the original request is refused.
            assert gateway.charge(charge_key("acct", 1), 100, "eve") != Success()

    run(scenario())


def test_the_demo_tells_the_whole_story(tmp_path: Path) -> None:
    lines: list[str] = []
    account = run(demo(tmp_path / "demo.db", lines.append))
    statuses = {n: (p.user, p.status) for n, p in account.payments.items()}
    assert statuses == {
        1: ("ann", "confirmed"),
        2: ("bob", "failed"),
        3: ("cy", "confirmed"),
        4: ("mallory", "cancelled"),
        5: ("dan", "failed"),
    }
    assert (account.balance, account.available) == (10_000 - 2_500 - 700,) * 2
    assert any("stuck: acct-1/charge-4 after 3 attempts" in line for line in lines)
