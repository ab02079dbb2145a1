"""The coffee shop under deterministic simulation: ``SIMULATION`` is the spec.

Run it with ``python -m fasm_es.testing examples.coffee_shop.simulation:SIMULATION``
or from a test with :func:`fasm_es.testing.simulate`.
"""

from __future__ import annotations

import random
from typing import Any

from examples.coffee_shop.machine import (
    CheckStatus,
    CoffeeShop,
    CollectReward,
    EarnPoints,
    LoyaltyAccount,
    Redeem,
    RequestRedemption,
)
from examples.coffee_shop.service import RewardsService
from fasm_es import ActionId
from fasm_es.testing import Simulation

REWARDS = ("espresso", "cake", "tea", "mug")


def inputs(rng: random.Random, stream: str, state: LoyaltyAccount) -> Any:
    """A purchase, a redemption, a collection, or now and then a malformed payload."""
    roll = rng.random()
    if roll < 0.45:
        return EarnPoints(order_id=f"order-{rng.randrange(10**6)}", points=rng.randint(1, 60))
    if roll < 0.8:
        return RequestRedemption(reward=rng.choice(REWARDS), cost=rng.randint(10, 120))
    if roll < 0.95:
        uncollected = [r.redemption_id for r in state.rewards if not r.collected]
        target = (
            rng.choice(uncollected) if uncollected and rng.random() < 0.8 else rng.randint(1, 9)
        )
        return CollectReward(redemption_id=target)
    return {"kind": "earn_points", "order_id": "", "points": -5}


class RewardsWorld:
    """The rewards service as the simulated outside world (tea is always out of stock)."""

    def __init__(self) -> None:
        self.service = RewardsService(out_of_stock={"tea"}, pending_answers=1)

    def answer(
        self, stream: str, action_id: ActionId, action: Redeem | CheckStatus, rng: random.Random
    ) -> Any:
        """What the service answers for this call."""
        return self.service.answer(stream, action_id, action)


def points_are_conserved(state: LoyaltyAccount) -> str | None:
    """Earned points are spendable, held, or spent on issued rewards: never more, never less."""
    spent = sum(r.cost for r in state.rewards)
    if state.points < 0:
        return f"negative balance {state.points}"
    if state.points + state.held + spent != state.earned:
        return f"points {state.points} + held {state.held} + spent {spent} != earned {state.earned}"
    return None


SIMULATION = Simulation(
    machine=CoffeeShop,
    inputs=inputs,
    world=RewardsWorld,
    invariants=[points_are_conserved],
    streams=("alice", "bob", "carol"),
)
