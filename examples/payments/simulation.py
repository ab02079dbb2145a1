"""The payments machine under deterministic simulation: ``SIMULATION`` is the spec.

Run it with ``python -m fasm_es.testing examples.payments.simulation:SIMULATION``
or from a test with :func:`fasm_es.testing.simulate`.

The outside world is :class:`~examples.payments.gateway.FakeGateway`, reached
through the example's own :func:`~examples.payments.service.gateway_handlers`,
so a charge, a status check after a restart and a cancel all use the engine's
idempotency keys as they do in production. The gateway declines charges over
:data:`DECLINE_OVER`; time jumps let the charge timeouts (durable timers) fire,
which cancels charges that were still unanswered.
"""

from __future__ import annotations

import random
from datetime import timedelta
from functools import partial
from typing import Any

from examples.payments.gateway import FakeGateway
from examples.payments.machine import (
    Account,
    Cancel,
    Charge,
    CheckStatus,
    Deposit,
    Payments,
    Process,
)
from examples.payments.service import gateway_handlers
from fasm_es import ActionId, IdempotencyKey
from fasm_es.testing import Simulation

DECLINE_OVER = 4_000
"""The gateway declines charges above this many cents."""

CHARGE_TIMEOUT = timedelta(hours=1)
"""How long a charge may stay unanswered: some time jumps exceed it, most answers beat it."""

USERS = ("ann", "bob", "cy", "dan")


def inputs(rng: random.Random, stream: str, state: Account) -> Any:
    """Deposits, payments (some over the available balance or the gateway's limit), junk."""
    roll = rng.random()
    if roll < 0.25:
        return Deposit(amount=rng.randint(1, 50) * 100)
    if roll < 0.6:
        # Mostly within what is available; now and then more (InsufficientFunds).
        ceiling = max(state.available, 1) if rng.random() < 0.85 else 10_000
        return Process(amount=rng.randint(1, ceiling), user=rng.choice(USERS))
    if roll < 0.95:
        return Process(amount=rng.randint(1, 6_000), user=rng.choice(USERS))
    return rng.choice(
        (
            {"kind": "process", "amount": 0, "user": "ann"},
            {"kind": "process", "amount": 100, "user": ""},
            {"kind": "deposit", "amount": -5},
            {"kind": "refund", "amount": 100},
        )
    )


class GatewayWorld:
    """The fake gateway as the simulated outside world."""

    def __init__(self) -> None:
        self.gateway = FakeGateway(decline_over=DECLINE_OVER)
        self.handlers = gateway_handlers(self.gateway)

    def answer(
        self,
        stream: str,
        action_id: ActionId,
        action: Charge | CheckStatus | Cancel,
        rng: random.Random,
    ) -> Any:
        """What the gateway answers for this call, under the engine's idempotency key."""
        return self.handlers[type(action)](action, IdempotencyKey(stream, action_id))


def reservations_are_covered(account: Account) -> str | None:
    """The balance never goes negative and covers every reservation: no amount is spent twice."""
    if account.balance < 0:
        return f"negative balance {account.balance}"
    if account.available < 0:
        return f"reserved {account.reserved} exceeds the balance {account.balance}"
    return None


def payments_are_consistent(account: Account) -> list[str]:
    """Payment ids come from the counter, and each payment's flags fit its status.

    A pending payment waits for its charge and has no cancel; a timed-out one
    waits for its cancel; only timed-out payments have a cancel in flight; a
    confirmed or failed one has its charge answered; settled payments say why,
    except confirmed ones.
    """
    problems = []
    if sorted(account.payments) != list(range(1, account.next_id)):
        problems.append(f"payment ids {sorted(account.payments)} are not 1..{account.next_id - 1}")
    for n, p in sorted(account.payments.items()):
        where = f"payment {n} ({p.status})"
        if p.amount <= 0:
            problems.append(f"{where}: amount {p.amount}")
        if p.status == "pending" and not p.charge_open:
            problems.append(f"{where}: its charge was answered, yet it is still pending")
        if p.cancel_open != (p.status == "timed_out"):
            problems.append(f"{where}: cancel in flight is {p.cancel_open}")
        if p.status in ("confirmed", "failed") and p.charge_open:
            problems.append(f"{where}: settled by its charge, yet the charge is open")
        if (p.reason is None) != (p.status in ("pending", "confirmed")):
            problems.append(f"{where}: reason {p.reason!r}")
    return problems


SIMULATION = Simulation(
    machine=partial(Payments, CHARGE_TIMEOUT),
    inputs=inputs,
    world=GatewayWorld,
    invariants=[reservations_are_covered, payments_are_consistent],
    streams=("acct-1", "acct-2", "acct-3"),
)
