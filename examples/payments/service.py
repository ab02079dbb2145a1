"""The payments machine on the engine: gateway handlers, and a demo run end to end.

:func:`gateway_handlers` connects the tracked actions to a gateway: each
handler passes the engine's idempotency key (``stream/charge-<n>``) as the
gateway's key, so a retry, a restart or a status check all talk about the
same charge. :func:`demo` runs the story on a SQLite file::

    python -m examples.payments
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from examples.payments.gateway import FakeGateway
from examples.payments.machine import (
    Account,
    Cancel,
    Cancelled,
    Charge,
    CheckStatus,
    Deposit,
    Failed,
    InsufficientFunds,
    NotFound,
    Payments,
    Process,
    Success,
)
from fasm_es import Engine, IdempotencyKey, ManualClock, Record, RetryPolicy, Tracked

ACCOUNT = "acct-1"
CHARGE_TIMEOUT = timedelta(seconds=30)


def charge_key(stream: str, payment: int) -> str:
    """The gateway key of payment ``payment``'s charge: the engine's key of ``charge-<n>``."""
    return str(IdempotencyKey(stream, f"charge-{payment}"))


def payment_of(record: Record[Any, Any, Any, Any]) -> int:
    """The number of the payment a ``Process`` record opened."""
    for action in record.actions:
        if isinstance(action, Tracked) and isinstance(action.action, Charge):
            return action.action.payment
    raise ValueError(f"record {record.stream}/{record.version} opened no payment")


def gateway_handlers(gateway: FakeGateway) -> dict[type, Callable[..., Any]]:
    """Handlers for :class:`Charge`, :class:`CheckStatus` and :class:`Cancel` on ``gateway``."""

    def charge(action: Charge, key: IdempotencyKey) -> Success | Failed:
        return gateway.charge(str(key), action.amount, action.user)

    def check_status(action: CheckStatus, key: IdempotencyKey) -> Success | Failed | NotFound:
        return gateway.status(str(key))

    def cancel(action: Cancel, key: IdempotencyKey) -> Cancelled:
        # The key to void is the charge's, not the cancel's own.
        return gateway.cancel(charge_key(key.stream, action.payment))

    return {Charge: charge, CheckStatus: check_status, Cancel: cancel}


def _engine(
    path: Path, gateway: FakeGateway, clock: ManualClock
) -> Engine[Account, Any, Any, Any, Any]:
    return Engine(
        Payments(CHARGE_TIMEOUT),
        f"sqlite:///{path}",
        handlers=gateway_handlers(gateway),
        clock=clock,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
        rng=random.Random(7),
    )


async def demo(path: Path, say: Callable[[str], None] = print) -> Account:
    """Tell the payments story on the SQLite file ``path``; return the account's final state."""
    gateway = FakeGateway(decline_over=5_000)
    clock = ManualClock()

    def show(account: Account) -> None:
        for n, p in sorted(account.payments.items()):
            say(f"  payment {n}: {p.amount:>6} for {p.user:<8} {p.status:<10} {p.reason or ''}")
        say(f"  balance {account.balance}, available {account.available}")

    async with _engine(path, gateway, clock) as engine:
        await engine.submit(ACCOUNT, Deposit(amount=10_000))
        say("deposit 10000; ann pays 2500, bob 6000 (declined: over the gateway's limit)")
        await engine.submit(ACCOUNT, Process(amount=2_500, user="ann"))
        await engine.submit(ACCOUNT, Process(amount=6_000, user="bob"))
        try:
            await engine.submit(ACCOUNT, Process(amount=9_000, user="eve"))
        except InsufficientFunds as exc:
            say(f"eve pays 9000: rejected ({exc})")
        gateway.lose_answers.add("cy")
        say("cy pays 700; the gateway charges it but its answer is lost, so it is asked again")
        await engine.submit(ACCOUNT, Process(amount=700, user="cy"))
        gateway.unreachable.add("mallory")
        say("mallory pays 300; the gateway cannot be reached: retried, then stuck")
        record = await engine.submit(ACCOUNT, Process(amount=300, user="mallory"))
        mallory = payment_of(record)
        while not engine.stuck() or await _open_charges(engine) > 1:
            await asyncio.sleep(0.01)  # until the others are answered and mallory's is stuck
        for stuck in engine.stuck():
            say(f"  stuck: {stuck.key} after {stuck.attempts} attempts: {stuck.last_error}")
        say("30 s pass: mallory's charge times out and is cancelled at the gateway")
        clock.advance(CHARGE_TIMEOUT)
        while (await engine.state(ACCOUNT)).payments[mallory].status != "cancelled":
            await asyncio.sleep(0.01)
        say("an operator retries the stuck charge: the gateway refuses it, the key being void")
        gateway.unreachable.clear()
        engine.retry(ACCOUNT, f"charge-{mallory}")
        await engine.idle(timeout=10)
        show(await engine.state(ACCOUNT))
    say(f"gateway: charged {sorted(gateway.charged())}, refused repeats {gateway.duplicates()}")

    say("dan pays 400 while the gateway is down; the service stops before it answers")
    gateway.unreachable.add("dan")
    async with _engine(path, gateway, clock) as engine:
        dan = payment_of(await engine.submit(ACCOUNT, Process(amount=400, user="dan")))
    gateway.unreachable.clear()
    say("restart: restore asks the gateway about the open charge instead of charging again;")
    say("the gateway never saw it, so the payment fails and its key is closed")
    async with _engine(path, gateway, clock) as engine:
        while (await engine.state(ACCOUNT)).payments[dan].status == "pending":
            await asyncio.sleep(0.01)
        clock.advance(CHARGE_TIMEOUT)  # the restored timer fires, and finds nothing to do
        await engine.idle(timeout=10)
        account = await engine.state(ACCOUNT)
        show(account)
    say(f"gateway: charged {sorted(gateway.charged())}, refused repeats {gateway.duplicates()}")
    return account


async def _open_charges(engine: Engine[Account, Any, Any, Any, Any]) -> int:
    account = await engine.state(ACCOUNT)
    return sum(p.charge_open for p in account.payments.values())


def main() -> None:
    """Run :func:`demo` on a SQLite file in a fresh temporary directory."""
    # The demo tells what happens itself; the engine's retry warnings would repeat it.
    logging.getLogger("fasm_es.engine").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(demo(Path(tmp) / "payments.db"))
