"""The coffee-shop loyalty machine: earn points, redeem them for rewards.

One stream is one customer's loyalty account. Purchases earn whole points
(:class:`EarnPoints`). A customer redeems points for a reward
(:class:`RequestRedemption`): the machine holds the points at once, so they
cannot be spent twice, and emits the tracked action :class:`Redeem` for the
outside rewards service. The service answers with a :class:`RedemptionResult`:

- :class:`Success` carries the voucher for the reward: the held points are spent;
- :class:`Failed` says why it could not be issued: the held points go back;
- :class:`Pending` means the service queued it: the machine asks again later with
  the tracked action :class:`CheckStatus` (under a fresh action id).

At most one redemption is in flight per account. The barista hands the reward
over with :class:`CollectReward`. Every other effect is an untracked UI action
(the :data:`UIAction` union) for the till or the customer's app.

After a crash, :meth:`CoffeeShop.restore` does not send the ``Redeem`` again
(the service may already have applied it): it asks for the status of the
in-flight redemption with ``CheckStatus``, under the id of the tracked action
still outstanding, so its answer completes that action. The idempotency key
the service sees is ``(stream, redemption id)``; the redemption id is the
action id of the ``Redeem`` that started it.

Rejections (subclasses of :class:`~fasm_es.Rejection`; nothing is appended):
:class:`InsufficientPoints`, :class:`RedemptionAlreadyPending`,
:class:`FailedToQueueAction` and :class:`InvalidRedemptionId`. A rejection
emits no UI action (its actions are discarded with it): the caller shows the
rejection's message instead.

The STF is an ``async def`` (``restore`` is a plain function) to show that
both forms work. It follows fasm's rules even though the engine would forgive
a mutation before a rejection: it validates first, queues every action, and
only then changes state. Points are integers.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from fasm_es import (
    ActionId,
    Actions,
    ActionsFull,
    Completed,
    Input,
    Rejection,
    StateMachine,
)

# -- state ----------------------------------------------------------------------------


class PendingRedemption(BaseModel):
    """The redemption in flight: its points are held until the service answers.

    ``awaiting`` is the id of the tracked action (``Redeem`` or the latest
    ``CheckStatus``) whose answer the machine is waiting for; ``checks``
    counts the status checks sent after the service answered ``Pending``.
    """

    redemption_id: int
    reward: str
    cost: int
    awaiting: int
    checks: int = 0


class IssuedReward(BaseModel):
    """A reward the service issued; ``collected`` once the barista handed it over."""

    redemption_id: int
    reward: str
    cost: int
    voucher: str
    collected: bool = False


class LoyaltyAccount(BaseModel):
    """One customer's account: the state of one stream.

    ``points`` is the spendable balance (held points excluded).
    ``next_action_id`` is the counter tracked action ids are taken from, so
    ids are deterministic and never reused on the stream.
    """

    points: int = 0
    earned: int = 0
    next_action_id: int = 1
    pending: PendingRedemption | None = None
    rewards: list[IssuedReward] = Field(default_factory=list)
    failed_redemptions: int = 0

    @property
    def held(self) -> int:
        """Points held by the redemption in flight (0 when there is none)."""
        return self.pending.cost if self.pending is not None else 0


# -- inputs ---------------------------------------------------------------------------


class EarnPoints(BaseModel):
    """A purchase (``order_id``) earned ``points`` (at least 1)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored
    kind: Literal["earn_points"] = "earn_points"
    order_id: str = Field(min_length=1)
    points: PositiveInt


class RequestRedemption(BaseModel):
    """The customer spends ``cost`` points (at least 1) on ``reward``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored
    kind: Literal["request_redemption"] = "request_redemption"
    reward: str = Field(min_length=1)
    cost: PositiveInt


class CollectReward(BaseModel):
    """The barista hands over the reward of redemption ``redemption_id``."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored
    kind: Literal["collect_reward"] = "collect_reward"
    redemption_id: int


LoyaltyInput = Annotated[
    EarnPoints | RequestRedemption | CollectReward, Field(discriminator="kind")
]
"""What a till or the customer's app submits."""

# -- tracked actions and their results --------------------------------------------------


class Redeem(BaseModel):
    """Ask the rewards service to issue ``reward`` for ``cost`` points."""

    kind: Literal["redeem"] = "redeem"
    redemption_id: int
    reward: str
    cost: int


class CheckStatus(BaseModel):
    """Ask the rewards service how redemption ``redemption_id`` stands."""

    kind: Literal["check_status"] = "check_status"
    redemption_id: int


RedemptionAction = Annotated[Redeem | CheckStatus, Field(discriminator="kind")]
"""The tracked actions: requests to the rewards service."""


class Success(BaseModel):
    """The reward was issued; ``voucher`` identifies it."""

    kind: Literal["success"] = "success"
    voucher: str


class Failed(BaseModel):
    """The reward could not be issued, for ``reason``; nothing was charged."""

    kind: Literal["failed"] = "failed"
    reason: str


class Pending(BaseModel):
    """The service has queued the redemption and not decided yet."""

    kind: Literal["pending"] = "pending"


RedemptionResult = Annotated[Success | Failed | Pending, Field(discriminator="kind")]
"""The rewards service's answer to ``Redeem`` or ``CheckStatus``."""

# -- untracked UI actions ---------------------------------------------------------------


class ShowBalance(BaseModel):
    """Show the spendable balance and the points held by a redemption in flight."""

    kind: Literal["show_balance"] = "show_balance"
    points: int
    held: int


class ShowPointsEarned(BaseModel):
    """Tell the customer a purchase earned ``points``."""

    kind: Literal["show_points_earned"] = "show_points_earned"
    order_id: str
    points: int


class ShowRedemptionPending(BaseModel):
    """Tell the customer the redemption was sent to the rewards service."""

    kind: Literal["show_redemption_pending"] = "show_redemption_pending"
    redemption_id: int
    reward: str


class ShowStillProcessing(BaseModel):
    """Tell the customer the rewards service has not decided yet."""

    kind: Literal["show_still_processing"] = "show_still_processing"
    redemption_id: int


class ShowRedemptionSucceeded(BaseModel):
    """Show the voucher for the reward."""

    kind: Literal["show_redemption_succeeded"] = "show_redemption_succeeded"
    redemption_id: int
    reward: str
    voucher: str


class ShowRedemptionFailed(BaseModel):
    """Tell the customer the reward could not be issued and the points are back."""

    kind: Literal["show_redemption_failed"] = "show_redemption_failed"
    redemption_id: int
    reason: str
    refunded: int


class NotifyBarista(BaseModel):
    """Ask the barista to prepare ``reward``."""

    kind: Literal["notify_barista"] = "notify_barista"
    redemption_id: int
    reward: str
    voucher: str


class ShowRewardCollected(BaseModel):
    """Confirm the reward was handed over."""

    kind: Literal["show_reward_collected"] = "show_reward_collected"
    redemption_id: int
    reward: str


UIAction = Annotated[
    ShowBalance
    | ShowPointsEarned
    | ShowRedemptionPending
    | ShowStillProcessing
    | ShowRedemptionSucceeded
    | ShowRedemptionFailed
    | NotifyBarista
    | ShowRewardCollected,
    Field(discriminator="kind"),
]
"""The untracked actions: screens on the till, the app and the barista's display."""

# -- rejections -----------------------------------------------------------------------


class InsufficientPoints(Rejection):
    """The account has fewer spendable points than the reward costs."""

    def __init__(self, cost: int, points: int) -> None:
        super().__init__(f"the reward costs {cost} points but the balance is {points}")
        self.cost = cost
        self.points = points


class RedemptionAlreadyPending(Rejection):
    """A redemption is already in flight on this account."""

    def __init__(self, redemption_id: int) -> None:
        super().__init__(f"redemption {redemption_id} is still in flight: wait for it to finish")
        self.redemption_id = redemption_id


class FailedToQueueAction(Rejection):
    """The actions container had no room for the actions this input needs."""


class InvalidRedemptionId(Rejection):
    """No redemption matches the id given (or it is not in the expected stage)."""

    def __init__(self, redemption_id: ActionId, detail: str) -> None:
        super().__init__(f"redemption {redemption_id!r}: {detail}")
        self.redemption_id = redemption_id


# -- the machine ----------------------------------------------------------------------

CoffeeActions = Actions[RedemptionAction, UIAction]
"""The actions container the coffee shop's STF and restore emit into."""


class CoffeeShop(
    StateMachine[LoyaltyAccount, LoyaltyInput, RedemptionAction, RedemptionResult, UIAction]
):
    """Loyalty points: earn on purchases, redeem through the rewards service."""

    async def stf(
        self,
        state: LoyaltyAccount,
        input: Input[LoyaltyInput, RedemptionResult],
        actions: CoffeeActions,
    ) -> None:
        """Apply one input; see the module docstring for the rules."""
        try:
            if isinstance(input, Completed):
                _answer(state, input.id, input.result, actions)
                return
            value = input.value
            if isinstance(value, EarnPoints):
                _earn(state, value, actions)
            elif isinstance(value, RequestRedemption):
                _request(state, value, actions)
            else:
                _collect(state, value, actions)
        except ActionsFull as exc:
            # Every action is queued before state changes, so state is untouched here.
            raise FailedToQueueAction(str(exc)) from exc

    def restore(self, state: LoyaltyAccount, actions: CoffeeActions) -> None:
        """Ask for the status of the redemption in flight, never redeem again."""
        if state.pending is not None:
            actions.track(
                state.pending.awaiting, CheckStatus(redemption_id=state.pending.redemption_id)
            )


def _earn(state: LoyaltyAccount, value: EarnPoints, actions: CoffeeActions) -> None:
    """Credit a purchase's points."""
    actions.emit(ShowPointsEarned(order_id=value.order_id, points=value.points))
    actions.emit(ShowBalance(points=state.points + value.points, held=state.held))
    state.points += value.points
    state.earned += value.points


def _request(state: LoyaltyAccount, value: RequestRedemption, actions: CoffeeActions) -> None:
    """Hold the points and send ``Redeem`` to the rewards service."""
    if state.pending is not None:
        raise RedemptionAlreadyPending(state.pending.redemption_id)
    if value.cost > state.points:
        raise InsufficientPoints(value.cost, state.points)
    redemption_id = state.next_action_id
    actions.track(
        redemption_id, Redeem(redemption_id=redemption_id, reward=value.reward, cost=value.cost)
    )
    actions.emit(ShowRedemptionPending(redemption_id=redemption_id, reward=value.reward))
    actions.emit(ShowBalance(points=state.points - value.cost, held=value.cost))
    state.next_action_id += 1
    state.points -= value.cost
    state.pending = PendingRedemption(
        redemption_id=redemption_id, reward=value.reward, cost=value.cost, awaiting=redemption_id
    )


def _answer(
    state: LoyaltyAccount,
    action_id: ActionId,
    result: Success | Failed | Pending,
    actions: CoffeeActions,
) -> None:
    """Apply the rewards service's answer to the tracked action ``action_id``."""
    pending = state.pending
    if pending is None or action_id != pending.awaiting:
        # The engine only lets outstanding ids through; this guards direct callers.
        raise InvalidRedemptionId(action_id, "no redemption is waiting for this answer")
    rid, reward = pending.redemption_id, pending.reward
    if isinstance(result, Success):
        voucher = result.voucher
        actions.emit(ShowRedemptionSucceeded(redemption_id=rid, reward=reward, voucher=voucher))
        actions.emit(NotifyBarista(redemption_id=rid, reward=reward, voucher=voucher))
        actions.emit(ShowBalance(points=state.points, held=0))
        state.rewards.append(
            IssuedReward(redemption_id=rid, reward=reward, cost=pending.cost, voucher=voucher)
        )
        state.pending = None
    elif isinstance(result, Failed):
        actions.emit(
            ShowRedemptionFailed(redemption_id=rid, reason=result.reason, refunded=pending.cost)
        )
        actions.emit(ShowBalance(points=state.points + pending.cost, held=0))
        state.points += pending.cost
        state.failed_redemptions += 1
        state.pending = None
    else:
        check_id = state.next_action_id
        actions.track(check_id, CheckStatus(redemption_id=rid))
        actions.emit(ShowStillProcessing(redemption_id=rid))
        state.next_action_id += 1
        pending.awaiting = check_id
        pending.checks += 1


def _collect(state: LoyaltyAccount, value: CollectReward, actions: CoffeeActions) -> None:
    """Mark an issued reward as handed over."""
    reward = next((r for r in state.rewards if r.redemption_id == value.redemption_id), None)
    if reward is None:
        raise InvalidRedemptionId(value.redemption_id, "no reward was issued for it")
    if reward.collected:
        raise InvalidRedemptionId(value.redemption_id, "its reward was already collected")
    actions.emit(ShowRewardCollected(redemption_id=reward.redemption_id, reward=reward.reward))
    reward.collected = True
