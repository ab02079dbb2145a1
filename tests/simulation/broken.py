"""Deliberately broken machines, each with a simulation spec the simulator must fail.

Module-level names, so a failure's replay command can import them
(``python -m fasm_es.testing broken:WALL_CLOCK ...`` run from this directory).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from examples.coffee_shop.machine import CoffeeShop, LoyaltyAccount
from examples.coffee_shop.simulation import SIMULATION as COFFEE
from examples.coffee_shop.simulation import RewardsWorld, inputs
from examples.counter import CounterState, Increment
from fasm_es import (
    Actions,
    Completed,
    Engine,
    Input,
    Normal,
    NoTracked,
    Record,
    StateMachine,
    StoreUnavailable,
)
from fasm_es.testing import Faults, Simulation


class NoWorld:
    """For machines without tracked actions: nothing is ever asked."""

    def answer(self, stream: str, action_id: Any, action: Any, rng: random.Random) -> Any:
        raise AssertionError("this machine emits no tracked actions")


def increments(rng: random.Random, stream: str, state: Any) -> Increment:
    return Increment(by=rng.randint(1, 3))


# 1. An STF that reads the wall clock.


class Stamped(CounterState):
    last_seen: datetime | None = None


class WallClockCounter(StateMachine[Stamped, Increment, NoTracked, NoTracked, NoTracked]):
    def stf(
        self, state: Stamped, input: Input[Increment, NoTracked], actions: Actions[Any, Any]
    ) -> None:
        assert isinstance(input, Normal)
        state.value += input.value.by
        state.last_seen = datetime.now(UTC)  # the bug: use input.meta.accepted_at


WALL_CLOCK = Simulation(machine=WallClockCounter, inputs=increments, world=NoWorld)


# 2. An STF that draws from an unseeded random generator.


class Lucky(CounterState):
    luck: float = 0.0


class Lottery(StateMachine[Lucky, Increment, NoTracked, NoTracked, NoTracked]):
    def stf(
        self, state: Lucky, input: Input[Increment, NoTracked], actions: Actions[Any, Any]
    ) -> None:
        assert isinstance(input, Normal)
        state.value += input.value.by
        state.luck = random.random()  # the bug under test: unseeded randomness


UNSEEDED_RANDOM = Simulation(machine=Lottery, inputs=increments, world=NoWorld)


# 3. A restore that forgets a pending id.


class ForgetfulShop(CoffeeShop):
    def restore(self, state: LoyaltyAccount, actions: Actions[Any, Any]) -> None:
        return None  # the bug: the redemption in flight is never checked again


FORGETFUL_RESTORE = Simulation(
    machine=ForgetfulShop,
    inputs=inputs,
    world=RewardsWorld,
    invariants=COFFEE.invariants,
    streams=COFFEE.streams,
)


# 4. An STF that ignores a completion, so its restore re-emits an action already completed.


class DeafShop(CoffeeShop):
    async def stf(self, state: LoyaltyAccount, input: Any, actions: Any) -> None:
        if isinstance(input, Completed) and input.id % 2 == 0:
            return  # the bug: this answer changes nothing, the redemption stays pending
        await super().stf(state, input, actions)


DEAF_TO_COMPLETIONS = Simulation(
    machine=DeafShop,
    inputs=inputs,
    world=RewardsWorld,
    streams=COFFEE.streams,
)


# 5. An invariant that breaks only after a crash and restore.


class Mirrored(CounterState):
    # The bug: a field left out of the stored encoding, so a state loaded
    # from a snapshot after a restart has lost it.
    mirror: int = Field(default=0, exclude=True)


class MirrorCounter(StateMachine[Mirrored, Increment, NoTracked, NoTracked, NoTracked]):
    snapshot_every = 3

    def stf(
        self, state: Mirrored, input: Input[Increment, NoTracked], actions: Actions[Any, Any]
    ) -> None:
        assert isinstance(input, Normal)
        state.value += input.value.by
        state.mirror += input.value.by


def mirror_matches(state: Mirrored) -> str | None:
    if state.mirror != state.value:
        return f"mirror {state.mirror} != value {state.value}"
    return None


LOST_ON_RESTART = Simulation(
    machine=MirrorCounter,
    inputs=increments,
    world=NoWorld,
    invariants=[mirror_matches],
    faults=Faults(crash=0.02),
)


def shop_with_engine(engine: type[Engine[Any, Any, Any, Any, Any]]) -> Simulation[Any]:
    """The coffee shop's own simulation, run on ``engine`` (an engine with a bug)."""
    return Simulation(
        machine=CoffeeShop,
        inputs=inputs,
        world=RewardsWorld,
        invariants=COFFEE.invariants,
        streams=COFFEE.streams,
        engine=engine,
    )


# 6. An engine that forgets commits of unknown outcome.


class DoubtlessEngine(Engine[Any, Any, Any, Any, Any]):
    def _doubted(self) -> None:
        # The bug: a commit that failed after storing its record is never reread,
        # so that record's tracked actions wait, undispatched, for the next restart.
        return None


FORGETS_UNKNOWN_OUTCOMES = shop_with_engine(DoubtlessEngine)


# 7. An engine that retries a commit of unknown outcome as if nothing had been stored.


class BlindRetryEngine(Engine[Any, Any, Any, Any, Any]):
    async def submit(self, stream: str, value: Any, **meta: Any) -> Record[Any, Any, Any, Any]:
        try:
            return await super().submit(stream, value, **meta)
        except StoreUnavailable:
            # The bug: the failed commit may have stored the input; this stores it again.
            return await super().submit(stream, value, **meta)


RETRIES_BLINDLY = shop_with_engine(BlindRetryEngine)


# 8. An engine that stops rereading streams in doubt when the store does not answer.


class ImpatientEngine(Engine[Any, Any, Any, Any, Any]):
    async def _settle_doubts(self) -> None:
        while self._commits.in_doubt and self._state in ("starting", "running"):
            plans, error = await self._commits.exclusive(
                self._commits.settle_doubts, self._plan_doubted
            )
            for made in plans:
                self._carry_out(made, leave_stuck=True)
            if error is not None:
                # The bug: no retry with backoff. The streams stay in doubt until some
                # later commit happens to start a reread, so a record stored by the
                # failed commit has its tracked actions wait, undispatched, until then.
                return


GIVES_UP_ON_DOUBTS = shop_with_engine(ImpatientEngine)
