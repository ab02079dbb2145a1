"""The payments machine: charges through an outside gateway, with a timeout.

One stream is one account. :class:`Deposit` adds funds. :class:`Process`
asks to pay ``amount`` (a positive integer, in cents) for ``user``: the
amount is reserved at once (so it cannot be spent twice), and two tracked
actions are emitted:

- ``charge-<n>``: :class:`Charge`, for the payment gateway. It answers
  :class:`Success` (the money moved: the balance goes down) or
  :class:`Failed` with a reason (the reservation is released);
- ``timeout-<n>``: a durable :class:`~fasm_es.Timer` at ``accepted_at +
  charge_timeout``. If the charge is still unanswered when it fires, the
  payment is *timed out* and ``cancel-<n>`` (:class:`Cancel`) asks the
  gateway to void the charge's idempotency key: a charge that landed is
  refunded, one that did not can no longer land. The gateway answers
  :class:`Cancelled`, and the payment ends *cancelled* with its reservation
  released. A charge answer that arrives after the timeout changes nothing.

Payment ids ``n`` come from a counter in the state, so action ids are
deterministic and never reused; the gateway's idempotency key for a charge
is the engine's ``(stream, "charge-<n>")``.

After a crash, :meth:`Payments.restore` does not send a ``Charge`` again: it
asks for the status of each unanswered charge with :class:`CheckStatus`
under the same id (so the same key), and re-sends each unanswered
``Cancel``. The gateway answers a status check with the charge's outcome,
or :class:`NotFound` if the charge never reached it; the payment then fails
("never reached the gateway") and the key is closed at the gateway, so a
stray copy of the request cannot land later. Timers need nothing from
``restore``: the engine re-arms them itself.

Rejections (nothing is appended): :class:`InsufficientFunds` and
:class:`UnexpectedResult`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from fasm_es import Actions, Completed, Input, Rejection, StateMachine, Timer, TimerFired

# -- state ----------------------------------------------------------------------------

Outcome = Literal["confirmed", "failed", "timed_out", "cancelled"]
PaymentStatus = Literal["pending", Outcome]


class Payment(BaseModel):
    """One payment; ``charge_open``/``cancel_open``: its charge/cancel awaits an answer."""

    amount: int
    user: str
    status: PaymentStatus = "pending"
    reason: str | None = None
    charge_open: bool = True
    cancel_open: bool = False

    @property
    def reserves(self) -> bool:
        """Whether the payment's amount is still held back from the balance."""
        return self.status in ("pending", "timed_out")


class Account(BaseModel):
    """One account: the state of one stream. ``balance`` includes reserved amounts."""

    balance: int = 0
    payments: dict[int, Payment] = Field(default_factory=dict)
    next_id: int = 1

    @property
    def reserved(self) -> int:
        """The sum of the payments not yet settled."""
        return sum(p.amount for p in self.payments.values() if p.reserves)

    @property
    def available(self) -> int:
        """What a new payment may use."""
        return self.balance - self.reserved


# -- inputs ---------------------------------------------------------------------------


class Deposit(BaseModel):
    """Add ``amount`` to the account's balance."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["deposit"] = "deposit"
    amount: PositiveInt


class Process(BaseModel):
    """Pay ``amount`` from the account on behalf of ``user``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["process"] = "process"
    amount: PositiveInt
    user: str = Field(min_length=1)


PaymentInput = Annotated[Deposit | Process, Field(discriminator="kind")]

# -- tracked actions and results --------------------------------------------------------


class Charge(BaseModel):
    """Ask the gateway to move ``amount`` for ``user``."""

    kind: Literal["charge"] = "charge"
    payment: int
    amount: int
    user: str


class CheckStatus(BaseModel):
    """Ask the gateway what became of payment ``payment``'s charge (after a restart)."""

    kind: Literal["check_status"] = "check_status"
    payment: int


class Cancel(BaseModel):
    """Ask the gateway to void payment ``payment``'s charge, refunding it if it landed."""

    kind: Literal["cancel"] = "cancel"
    payment: int


PaymentAction = Annotated[Charge | CheckStatus | Cancel | Timer, Field(discriminator="kind")]


class Success(BaseModel):
    """The charge went through."""

    kind: Literal["success"] = "success"


class Failed(BaseModel):
    """The charge did not go through, for ``reason``."""

    kind: Literal["failed"] = "failed"
    reason: str


class NotFound(BaseModel):
    """The gateway never received the charge (answer to :class:`CheckStatus`)."""

    kind: Literal["not_found"] = "not_found"


class Cancelled(BaseModel):
    """The charge's key is void; ``refunded`` if the charge had landed and was refunded."""

    kind: Literal["cancelled"] = "cancelled"
    refunded: bool


PaymentResult = Annotated[
    Success | Failed | NotFound | Cancelled | TimerFired, Field(discriminator="kind")
]

# -- untracked notifications -------------------------------------------------------------


class Notification(BaseModel):
    """Tell ``user`` how payment ``payment`` ended (or that it timed out)."""

    payment: int
    user: str
    amount: int
    outcome: Outcome
    reason: str | None = None


NEVER_ARRIVED = "never reached the gateway"
"""The reason of a payment whose charge the gateway never received."""

# -- rejections -----------------------------------------------------------------------


class InsufficientFunds(Rejection):
    """The account's available balance is less than the amount."""


class UnexpectedResult(Rejection):
    """A result that does not fit the tracked action it completes."""


# -- the machine ----------------------------------------------------------------------


class Payments(StateMachine[Account, PaymentInput, PaymentAction, PaymentResult, Notification]):
    """Accounts paying through a gateway, with a timeout on every charge."""

    def __init__(self, charge_timeout: timedelta = timedelta(seconds=30)) -> None:
        # Part of the machine's definition: changing it changes how the log replays.
        self.charge_timeout = charge_timeout

    def stf(
        self,
        state: Account,
        input: Input[PaymentInput, PaymentResult],
        actions: Actions[PaymentAction, Notification],
    ) -> None:
        if isinstance(input, Completed):
            self._complete(state, input, actions)
            return
        value = input.value
        if isinstance(value, Deposit):
            state.balance += value.amount
            return
        if value.amount > state.available:
            raise InsufficientFunds(
                f"payment of {value.amount} exceeds the available {state.available}"
            )
        n = state.next_id
        at = input.meta.accepted_at + self.charge_timeout
        actions.track(f"charge-{n}", Charge(payment=n, amount=value.amount, user=value.user))
        actions.track(f"timeout-{n}", Timer(at=at))
        state.next_id += 1
        state.payments[n] = Payment(amount=value.amount, user=value.user)

    def _complete(
        self,
        state: Account,
        input: Completed[PaymentResult],
        actions: Actions[PaymentAction, Notification],
    ) -> None:
        what, _, number = str(input.id).partition("-")
        payment = state.payments.get(int(number)) if number.isdigit() else None
        if payment is None:
            raise UnexpectedResult(f"no payment for tracked action {input.id!r}")
        n, result = int(number), input.result
        # Actions first (adding one may fail), state changes after, as fasm advises.
        if what == "charge" and isinstance(result, Success | Failed | NotFound):
            if payment.status == "pending":  # else timed out: the cancel settles it
                if isinstance(result, Success):
                    _settle(actions, n, payment, "confirmed", None)
                    state.balance -= payment.amount
                else:
                    why = result.reason if isinstance(result, Failed) else NEVER_ARRIVED
                    _settle(actions, n, payment, "failed", why)
            payment.charge_open = False
        elif what == "timeout" and isinstance(result, TimerFired):
            if payment.status == "pending":
                actions.track(f"cancel-{n}", Cancel(payment=n))
                _settle(actions, n, payment, "timed_out", "the gateway did not answer in time")
                payment.cancel_open = True
        elif what == "cancel" and isinstance(result, Cancelled):
            why = "timed out; " + ("refunded" if result.refunded else "never charged")
            _settle(actions, n, payment, "cancelled", why)
            payment.cancel_open = False
        else:
            raise UnexpectedResult(f"{type(result).__name__} does not complete {input.id!r}")

    def restore(self, state: Account, actions: Actions[PaymentAction, Notification]) -> None:
        for n, payment in sorted(state.payments.items()):
            if payment.charge_open:
                actions.track(f"charge-{n}", CheckStatus(payment=n))
            if payment.cancel_open:
                actions.track(f"cancel-{n}", Cancel(payment=n))


def _settle(
    actions: Actions[PaymentAction, Notification],
    n: int,
    payment: Payment,
    outcome: Outcome,
    reason: str | None,
) -> None:
    """Tell ``payment``'s user of ``outcome``, then record it."""
    actions.emit(
        Notification(
            payment=n, user=payment.user, amount=payment.amount, outcome=outcome, reason=reason
        )
    )
    payment.status = outcome
    payment.reason = reason
