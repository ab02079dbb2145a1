"""A fake rewards service that answers the coffee shop's tracked actions.

It stands in for the outside system in tests and the demo. Its answers depend
only on the calls it received, in order, so every run is reproducible. It
keys each redemption by its idempotency key ``(stream, redemption id)`` and
applies a redemption (issues the voucher) at most once per key, however often
the ``Redeem`` or ``CheckStatus`` for it arrives: :attr:`RewardsService.applied`
lists every key it applied, so a test can check nothing was applied twice.

A ``CheckStatus`` for a key it never saw a ``Redeem`` for (the request was
lost in a crash) is answered ``Failed``, and the key is closed: a ``Redeem``
with that key arriving late is refused too, so the refunded points can never
also buy a reward.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from examples.coffee_shop.machine import (
    CheckStatus,
    Failed,
    LoyaltyAccount,
    LoyaltyInput,
    Pending,
    Redeem,
    RedemptionAction,
    RedemptionResult,
    Success,
    UIAction,
)
from fasm_es import ActionId, Record, Streams, Tracked, Untracked

NEVER_ARRIVED = "the redemption request never arrived"
OUT_OF_STOCK = "the reward is out of stock"

Key = tuple[str, int]


@dataclass
class _Redemption:
    reward: str
    pending_answers: int
    result: Success | Failed | None = None


class RewardsService:
    """Deterministic stand-in for the rewards system.

    ``out_of_stock`` names rewards it fails with :data:`OUT_OF_STOCK`;
    ``pending_answers`` is how many times it answers ``Pending`` for a new
    redemption before it decides. Vouchers are numbered in the order
    redemptions are applied (``V0001``, ``V0002``, ...).
    """

    def __init__(self, *, out_of_stock: Iterable[str] = (), pending_answers: int = 0) -> None:
        self.out_of_stock = frozenset(out_of_stock)
        self.pending_answers = pending_answers
        self.applied: list[Key] = []
        self.calls: list[tuple[str, ActionId, str]] = []
        self._redemptions: dict[Key, _Redemption] = {}

    def answer(
        self, stream: str, action_id: ActionId, action: Redeem | CheckStatus
    ) -> Success | Failed | Pending:
        """Handle tracked action ``action_id`` of ``stream`` and return its result."""
        self.calls.append((stream, action_id, action.kind))
        key = (stream, action.redemption_id)
        entry = self._redemptions.get(key)
        if entry is None:
            if isinstance(action, CheckStatus):
                # Close the key: a late Redeem for it must not spend refunded points.
                entry = _Redemption("", 0, Failed(reason=NEVER_ARRIVED))
            else:
                entry = _Redemption(action.reward, self.pending_answers)
            self._redemptions[key] = entry
        return self._progress(key, entry)

    def _progress(self, key: Key, entry: _Redemption) -> Success | Failed | Pending:
        if entry.result is not None:
            return entry.result
        if entry.pending_answers > 0:
            entry.pending_answers -= 1
            return Pending()
        if entry.reward in self.out_of_stock:
            entry.result = Failed(reason=OUT_OF_STOCK)
        else:
            self.applied.append(key)
            entry.result = Success(voucher=f"V{len(self.applied):04d}")
        return entry.result


CoffeeStreams: TypeAlias = Streams[
    LoyaltyAccount, LoyaltyInput, RedemptionAction, RedemptionResult, UIAction
]
"""The coffee shop's streams, as ``Streams(CoffeeShop(), store)`` builds them."""

CoffeeRecord: TypeAlias = Record[LoyaltyInput, RedemptionAction, RedemptionResult, UIAction]
"""A decoded record of the coffee shop."""


def deliver(
    streams: CoffeeStreams,
    stream: str,
    actions: Iterable[Tracked[RedemptionAction] | Untracked[UIAction]],
    service: RewardsService,
    *,
    actor: str = "rewards-service",
) -> list[CoffeeRecord]:
    """Send ``stream``'s tracked ``actions`` to ``service`` and complete each with its answer.

    Follow-up tracked actions (a ``CheckStatus`` after ``Pending``) are sent
    too, until none is left. Returns the completion records, in order.
    """
    queue = [a for a in actions if isinstance(a, Tracked)]
    records: list[CoffeeRecord] = []
    while queue:
        tracked = queue.pop(0)
        result = service.answer(stream, tracked.id, tracked.action)
        record = streams.complete(stream, tracked.id, result, actor=actor)
        records.append(record)
        queue.extend(a for a in record.actions if isinstance(a, Tracked))
    return records
