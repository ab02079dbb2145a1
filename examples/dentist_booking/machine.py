"""The dentist-booking machine: a clinic's week of appointments, held while payment clears.

One stream is one clinic's week. The clinic opens Monday to Friday in
windows with a lunch gap (by default 09:00-12:00 and 13:00-17:00); times are
minutes since midnight of their day. Four appointment types
(:class:`AptType`) differ in length and price: cleaning 15 min / 50.00,
checkup 30 / 75.00, filling 45 / 150.00, root canal 60 / 200.00 (money is in
integer cents).

A patient asks for a slot (:class:`RequestSlot`) or for the first free one
from a given time on (:class:`RequestAuto`, which tries starts in 15-minute
steps from each window's opening). A request that fits **holds** its slot at
once, so no one else can take it, and sends the tracked action
:class:`Preauth` to the payment service. The service answers with a
:data:`PaymentResult` describing the authorization:

- :class:`Success`: the amount is authorized: the booking is confirmed;
- :class:`Failed`: nothing is authorized: the hold is freed;
- :class:`Released`: an authorization existed and was released: nothing is held;
- :class:`Pending`: not decided yet: the machine asks again with
  :class:`CheckStatus` under a fresh action id.

A patient may :class:`Cancel`; a hold nobody paid for within ``hold_minutes``
is freed by :class:`ExpireHolds` (time comes from the input's recorded
``accepted_at``, so replay sees the same time). Money taken for a booking
that no longer exists goes back with the tracked action :class:`Release`.

Request lifecycle (:class:`RequestStatus`; *in flight* = one payment call
outstanding, recorded in ``BookingState.payments`` under its action id)::

    PendingPayment ─ Success ─────────► Confirmed ─ Cancel ──► Releasing
      (holds slot,  ─ Failed/Released ─► PaymentFailed           (in flight)
       in flight)   ─ Success, wrong amount ──────────────────► Releasing
                    ─ Cancel/expiry ──► Cancelling ─ Success ──► Releasing
                                          (in flight) ─ Failed/Released ─► Cancelled
    Releasing ─ Released/Failed ─► Released     Releasing ─ Success ─► Releasing (Release again)
    any in-flight status ─ Pending ─► the same status, CheckStatus under a fresh id

Only ``PendingPayment`` and ``Confirmed`` requests hold a slot. Every result
kind is handled for every in-flight status; the terminal statuses
(``Confirmed``, ``PaymentFailed``, ``Cancelled``, ``Released``) have no call
in flight, so no completion is ever owed to them.

**Duplicate completions.** In fasm's example a second ``Success`` for a
confirmed request found "its" slot occupied (by its own booking), marked
the request as taken and released the money while the booking stayed.
Here three things stand in the way:

1. the runtime refuses a completion whose id is not outstanding
   (``Streams.complete`` raises ``CompletionNotOutstanding``; the STF never
   sees it);
2. a caller who bypasses the runtime and calls :meth:`DentistBooking.stf`
   directly gets :class:`PaymentNotOutstanding`: the STF only accepts an
   answer for an id in ``state.payments``;
3. ``invariants.check_invariants`` has an invariant (every booking belongs
   to a request that holds it) that reports the state fasm's bug leaves
   behind, which fasm's own three invariants miss.

**Restore.** After a crash the machine does not send a ``Preauth`` again
(the service may already have authorized it): for every call in flight, in
action id order, it sends ``CheckStatus`` under the outstanding id, so the
answer completes that id. An outstanding ``Release`` is sent again as is
(releasing is idempotent under its key). The service's idempotency key is
``(stream, action id)``; a payment is named by the id of its ``Preauth``.

**Backpressure.** At most ``max_in_flight`` payment calls may be in flight
(new requests and cancellations of confirmed bookings are refused with
:class:`PaymentBacklog` beyond it), so ``restore`` never emits more actions
than the container holds.

The STF is a plain function and ``restore`` an ``async`` one, to show both
forms. The STF follows fasm's rules: validate, queue every action, then
change state.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
    model_validator,
)

from fasm_es import ActionId, Actions, Completed, Input, Rejection, StateMachine

# -- time and the week ---------------------------------------------------------------------

MINUTES_PER_DAY = 24 * 60
STEP_MINUTES = 15
"""RequestAuto tries starts in steps of this many minutes from each window's opening."""

Minute = Annotated[int, Field(ge=0, le=MINUTES_PER_DAY)]
"""A time of day as minutes since midnight (1440 means midnight at the day's end)."""


def clock(minute: int) -> str:
    """``minute`` as ``HH:MM`` (for messages)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


class Day(StrEnum):
    """A day of the week; declaration order is the week's order."""

    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


WEEK: tuple[Day, ...] = tuple(Day)


class AptType(StrEnum):
    """An appointment type; see :attr:`minutes` and :attr:`price_cents`."""

    CLEANING = "Cleaning"
    CHECKUP = "Checkup"
    FILLING = "Filling"
    ROOT_CANAL = "RootCanal"

    @property
    def minutes(self) -> int:
        """How long the appointment takes."""
        return _APT_MINUTES[self]

    @property
    def price_cents(self) -> int:
        """What the appointment costs, in cents (the amount preauthorized)."""
        return _APT_PRICE_CENTS[self]


_APT_MINUTES = {
    AptType.CLEANING: 15,
    AptType.CHECKUP: 30,
    AptType.FILLING: 45,
    AptType.ROOT_CANAL: 60,
}
_APT_PRICE_CENTS = {
    AptType.CLEANING: 5_000,
    AptType.CHECKUP: 7_500,
    AptType.FILLING: 15_000,
    AptType.ROOT_CANAL: 20_000,
}


class Window(BaseModel):
    """Opening hours: the clinic takes appointments from ``start`` up to ``end``."""

    model_config = ConfigDict(frozen=True)

    start: Minute
    end: Minute

    @model_validator(mode="after")
    def _ends_after_start(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts ({self})")
        return self

    def holds(self, start: int, end: int) -> bool:
        """Whether ``start``-``end`` lies inside this window."""
        return self.start <= start and end <= self.end

    def __str__(self) -> str:
        return f"{clock(self.start)}-{clock(self.end)}"


def default_schedule() -> dict[Day, list[Window]]:
    """Monday to Friday, 09:00-12:00 and 13:00-17:00."""
    return {
        day: [Window(start=9 * 60, end=12 * 60), Window(start=13 * 60, end=17 * 60)]
        for day in WEEK[:5]
    }


DEFAULT_HOLD_MINUTES = 30
DEFAULT_MAX_IN_FLIGHT = 256

# -- state ---------------------------------------------------------------------------------


class RequestStatus(StrEnum):
    """Where a booking request stands; see the module docstring's diagram."""

    PENDING_PAYMENT = "PendingPayment"
    CONFIRMED = "Confirmed"
    PAYMENT_FAILED = "PaymentFailed"
    CANCELLING = "Cancelling"
    RELEASING = "Releasing"
    CANCELLED = "Cancelled"
    RELEASED = "Released"


HOLDS_SLOT = frozenset({RequestStatus.PENDING_PAYMENT, RequestStatus.CONFIRMED})
"""Statuses whose request has a booking."""

IN_FLIGHT = frozenset(
    {RequestStatus.PENDING_PAYMENT, RequestStatus.CANCELLING, RequestStatus.RELEASING}
)
"""Statuses whose request waits for exactly one payment call."""


class Booking(BaseModel):
    """A slot taken on a day, by request ``request_id``."""

    request_id: int
    start: Minute
    end: Minute


class BookingRequest(BaseModel):
    """One patient's request and its payment.

    ``preauth_id`` is the action id of its ``Preauth``: the name of its
    payment at the service. ``awaiting`` is the id of the payment call in
    flight (``None`` in a terminal status). ``authorized_cents`` is what the
    service last said it authorized.
    """

    request_id: int
    patient: str
    apt_type: AptType
    day: Day
    start: Minute
    end: Minute
    amount_cents: int
    status: RequestStatus
    held_at: AwareDatetime
    preauth_id: int
    awaiting: int | None
    authorized_cents: int = 0
    checks: int = 0
    reason: str | None = None


class Preauth(BaseModel):
    """Authorize ``amount_cents`` from ``patient`` for request ``request_id``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["preauth"] = "preauth"
    request_id: int
    patient: str
    amount_cents: int


class CheckStatus(BaseModel):
    """Ask how the payment started by ``Preauth`` ``preauth_id`` stands."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["check_status"] = "check_status"
    request_id: int
    preauth_id: int


class Release(BaseModel):
    """Release the authorization of ``Preauth`` ``preauth_id`` (``amount_cents`` goes back)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["release"] = "release"
    request_id: int
    preauth_id: int
    amount_cents: int


PaymentReq = Annotated[Preauth | CheckStatus | Release, Field(discriminator="kind")]
"""The tracked actions: calls to the payment service."""


class PaymentCall(BaseModel):
    """A payment call in flight: the action sent, for request ``request_id``."""

    request_id: int
    action: PaymentReq


class BookingState(BaseModel):
    """A clinic's week: its schedule, bookings, requests and payment calls in flight.

    ``bookings`` lists each day's bookings sorted by start. ``requests`` and
    ``payments`` are keyed by ids taken from the two counters, so ids are
    deterministic and never reused on the stream.
    """

    schedule: dict[Day, list[Window]] = Field(default_factory=default_schedule)
    hold_minutes: PositiveInt = DEFAULT_HOLD_MINUTES
    max_in_flight: PositiveInt = DEFAULT_MAX_IN_FLIGHT
    bookings: dict[Day, list[Booking]] = Field(default_factory=dict)
    requests: dict[int, BookingRequest] = Field(default_factory=dict)
    payments: dict[int, PaymentCall] = Field(default_factory=dict)
    next_request_id: int = 1
    next_action_id: int = 1

    @field_validator("schedule")
    @classmethod
    def _windows_in_order(cls, schedule: dict[Day, list[Window]]) -> dict[Day, list[Window]]:
        for day, windows in schedule.items():
            for before, after in itertools.pairwise(windows):
                if after.start < before.end:
                    raise ValueError(
                        f"{day}: windows must be in order and not overlap ({before}, {after})"
                    )
        return schedule

    def windows(self, day: Day) -> list[Window]:
        """The opening windows of ``day`` (empty when the clinic is closed)."""
        return self.schedule.get(day, [])

    def clash(self, day: Day, start: int, end: int) -> Booking | None:
        """The first booking on ``day`` overlapping ``start``-``end``, if any."""
        for booking in self.bookings.get(day, []):
            if booking.start < end and start < booking.end:
                return booking
        return None

    def find_slot(self, apt_type: AptType, day: Day, minute: int) -> tuple[Day, int] | None:
        """The first free start for ``apt_type`` at or after ``day`` ``minute``.

        Starts are tried from each window's opening in steps of
        :data:`STEP_MINUTES`, day by day to the end of the week.
        """
        need = apt_type.minutes
        for current in WEEK[WEEK.index(day) :]:
            floor = minute if current == day else 0
            for window in self.windows(current):
                start = window.start
                if floor > start:
                    start += -(-(floor - start) // STEP_MINUTES) * STEP_MINUTES
                while start + need <= window.end:
                    if self.clash(current, start, start + need) is None:
                        return current, start
                    start += STEP_MINUTES
        return None

    def book(self, day: Day, booking: Booking) -> None:
        """Insert ``booking`` into ``day``'s list, kept sorted by start."""
        day_list = self.bookings.setdefault(day, [])
        index = sum(1 for b in day_list if b.start <= booking.start)
        day_list.insert(index, booking)

    def unbook(self, request: BookingRequest) -> None:
        """Free ``request``'s slot."""
        day_list = self.bookings.get(request.day, [])
        day_list[:] = [b for b in day_list if b.request_id != request.request_id]
        if not day_list:
            self.bookings.pop(request.day, None)


# -- inputs --------------------------------------------------------------------------------

Patient = Annotated[str, Field(min_length=1)]


class RequestSlot(BaseModel):
    """Book ``apt_type`` for ``patient`` on ``day`` at ``start_minute``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["request_slot"] = "request_slot"
    patient: Patient
    apt_type: AptType
    day: Day
    start_minute: Minute


class RequestAuto(BaseModel):
    """Book ``apt_type`` for ``patient`` at the first free start from ``earliest_*`` on."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["request_auto"] = "request_auto"
    patient: Patient
    apt_type: AptType
    earliest_day: Day = Day.MON
    earliest_minute: Minute = 0


class Cancel(BaseModel):
    """The patient cancels request ``request_id`` (pending or confirmed)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["cancel"] = "cancel"
    request_id: int


class ExpireHolds(BaseModel):
    """Free every hold whose payment has not cleared within ``hold_minutes`` (a timer sends it)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["expire_holds"] = "expire_holds"


BookingInput = Annotated[
    RequestSlot | RequestAuto | Cancel | ExpireHolds, Field(discriminator="kind")
]
"""What the front desk, the patient's app or a timer submits."""

# -- tracked results -----------------------------------------------------------------------


class Success(BaseModel):
    """``amount_cents`` is authorized (held for the clinic)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["success"] = "success"
    amount_cents: int


class Failed(BaseModel):
    """Nothing is authorized, because of ``reason``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["failed"] = "failed"
    reason: str


class Released(BaseModel):
    """The authorization was released: nothing is held any more."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["released"] = "released"


class Pending(BaseModel):
    """The service has not decided yet; ask again."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["pending"] = "pending"


PaymentResult = Annotated[Success | Failed | Released | Pending, Field(discriminator="kind")]
"""The payment service's answer to any call: how the authorization stands."""

# -- untracked notifications ---------------------------------------------------------------


class SlotHeld(BaseModel):
    """The slot is held for the patient while the payment clears."""

    kind: Literal["slot_held"] = "slot_held"
    request_id: int
    patient: str
    day: Day
    start: int
    end: int
    amount_cents: int


class BookingConfirmed(BaseModel):
    """The payment cleared: the appointment is booked."""

    kind: Literal["booking_confirmed"] = "booking_confirmed"
    request_id: int
    patient: str
    day: Day
    start: int
    end: int


class PaymentDeclined(BaseModel):
    """The payment did not clear: the slot was freed."""

    kind: Literal["payment_declined"] = "payment_declined"
    request_id: int
    patient: str
    reason: str


class BookingCancelled(BaseModel):
    """The booking was cancelled (``reason``: ``"patient"`` or ``"hold expired"``)."""

    kind: Literal["booking_cancelled"] = "booking_cancelled"
    request_id: int
    patient: str
    reason: str


class PaymentReleased(BaseModel):
    """Money held for a booking that no longer exists went back to the patient."""

    kind: Literal["payment_released"] = "payment_released"
    request_id: int
    patient: str
    amount_cents: int


Notification = Annotated[
    SlotHeld | BookingConfirmed | PaymentDeclined | BookingCancelled | PaymentReleased,
    Field(discriminator="kind"),
]
"""The untracked actions: messages to the patient and the front desk."""

# -- rejections ----------------------------------------------------------------------------


class BookingRejection(Rejection):
    """Base of this machine's rejections."""


class OutsideSchedule(BookingRejection):
    """The slot is not inside the clinic's opening hours (closed day, lunch gap, after hours)."""


class SlotTaken(BookingRejection):
    """The slot overlaps a booking (held or confirmed)."""


class NoSlotAvailable(BookingRejection):
    """RequestAuto found no free slot from the earliest time to the end of the week."""


class UnknownRequest(BookingRejection):
    """No request has this id."""


class NotCancellable(BookingRejection):
    """The request is already failed, cancelled or released."""


class PaymentNotOutstanding(BookingRejection):
    """A payment answer names an action id with no call in flight (a duplicate, late or unknown)."""


class PaymentBacklog(BookingRejection):
    """Too many payment calls are in flight; retry once the payment service has answered."""


class NoExpiredHolds(BookingRejection):
    """ExpireHolds found no hold older than ``hold_minutes``."""


# -- the machine ---------------------------------------------------------------------------

BookingActions = Actions[PaymentReq, Notification]


class DentistBooking(
    StateMachine[BookingState, BookingInput, PaymentReq, PaymentResult, Notification]
):
    """A clinic's week of appointments; see the module docstring for the rules.

    ``schedule``, ``hold_minutes`` and ``max_in_flight`` configure the
    initial state of every stream (``max_in_flight`` may not exceed the
    actions capacity, so that ``restore`` always fits).
    """

    actions_capacity = DEFAULT_MAX_IN_FLIGHT

    def __init__(
        self,
        schedule: Mapping[Day, Sequence[Window]] | None = None,
        *,
        hold_minutes: int = DEFAULT_HOLD_MINUTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if not 0 < max_in_flight <= self.actions_capacity:
            raise ValueError(
                f"max_in_flight must be between 1 and the actions capacity "
                f"{self.actions_capacity}, got {max_in_flight}"
            )
        self.schedule = (
            default_schedule()
            if schedule is None
            else {day: list(windows) for day, windows in schedule.items()}
        )
        self.hold_minutes = hold_minutes
        self.max_in_flight = max_in_flight
        self.initial_state()  # a bad schedule fails here, not at a stream's first input

    def initial_state(self) -> BookingState:
        """An empty week on the configured schedule."""
        return BookingState(
            schedule={day: list(windows) for day, windows in self.schedule.items()},
            hold_minutes=self.hold_minutes,
            max_in_flight=self.max_in_flight,
        )

    def stf(
        self,
        state: BookingState,
        input: Input[BookingInput, PaymentResult],
        actions: BookingActions,
    ) -> None:
        """Apply one input or payment answer; see the module docstring."""
        if isinstance(input, Completed):
            _answer(state, input.id, input.result, actions)
            return
        value = input.value
        at = input.meta.accepted_at
        if isinstance(value, RequestSlot):
            _request_slot(state, value, at, actions)
        elif isinstance(value, RequestAuto):
            _request_auto(state, value, at, actions)
        elif isinstance(value, Cancel):
            _cancel(state, value, actions)
        else:
            _expire_holds(state, at, actions)

    async def restore(self, state: BookingState, actions: BookingActions) -> None:
        """Re-issue each call in flight, by action id: ``CheckStatus``, never ``Preauth``."""
        for action_id in sorted(state.payments):
            call = state.payments[action_id]
            if isinstance(call.action, Release):
                actions.track(action_id, call.action)
            else:
                request = state.requests[call.request_id]
                actions.track(
                    action_id,
                    CheckStatus(request_id=request.request_id, preauth_id=request.preauth_id),
                )


# -- requests ------------------------------------------------------------------------------


def _request_slot(
    state: BookingState, value: RequestSlot, at: datetime, actions: BookingActions
) -> None:
    """Hold the asked-for slot if it is open and free."""
    day, start = value.day, value.start_minute
    end = start + value.apt_type.minutes
    windows = state.windows(day)
    if not windows:
        raise OutsideSchedule(f"the clinic is closed on {day}")
    if not any(w.holds(start, end) for w in windows):
        hours = ", ".join(str(w) for w in windows)
        raise OutsideSchedule(
            f"{day} {clock(start)}-{clock(end)} ({value.apt_type}, "
            f"{value.apt_type.minutes} min) is outside the opening hours {hours}"
        )
    clash = state.clash(day, start, end)
    if clash is not None:
        raise SlotTaken(
            f"{day} {clock(start)}-{clock(end)} overlaps request {clash.request_id}'s "
            f"booking {clock(clash.start)}-{clock(clash.end)}"
        )
    _hold(state, value.patient, value.apt_type, day, start, at, actions)


def _request_auto(
    state: BookingState, value: RequestAuto, at: datetime, actions: BookingActions
) -> None:
    """Hold the first free slot from the earliest time on."""
    found = state.find_slot(value.apt_type, value.earliest_day, value.earliest_minute)
    if found is None:
        raise NoSlotAvailable(
            f"no free {value.apt_type.minutes}-minute slot for {value.apt_type} from "
            f"{value.earliest_day} {clock(value.earliest_minute)} to the end of the week"
        )
    day, start = found
    _hold(state, value.patient, value.apt_type, day, start, at, actions)


def _check_backlog(state: BookingState) -> None:
    if len(state.payments) >= state.max_in_flight:
        raise PaymentBacklog(
            f"{len(state.payments)} payment calls are in flight (the limit is "
            f"{state.max_in_flight}): retry once the payment service has answered"
        )


def _hold(
    state: BookingState,
    patient: str,
    apt_type: AptType,
    day: Day,
    start: int,
    at: datetime,
    actions: BookingActions,
) -> None:
    """Hold a validated free slot and send its ``Preauth``."""
    _check_backlog(state)
    request_id, action_id = state.next_request_id, state.next_action_id
    end = start + apt_type.minutes
    amount = apt_type.price_cents
    preauth = Preauth(request_id=request_id, patient=patient, amount_cents=amount)
    actions.track(action_id, preauth)
    actions.emit(
        SlotHeld(
            request_id=request_id,
            patient=patient,
            day=day,
            start=start,
            end=end,
            amount_cents=amount,
        )
    )
    state.next_request_id += 1
    state.next_action_id += 1
    state.requests[request_id] = BookingRequest(
        request_id=request_id,
        patient=patient,
        apt_type=apt_type,
        day=day,
        start=start,
        end=end,
        amount_cents=amount,
        status=RequestStatus.PENDING_PAYMENT,
        held_at=at,
        preauth_id=action_id,
        awaiting=action_id,
    )
    state.payments[action_id] = PaymentCall(request_id=request_id, action=preauth)
    state.book(day, Booking(request_id=request_id, start=start, end=end))


def _cancel(state: BookingState, value: Cancel, actions: BookingActions) -> None:
    """Free a pending or confirmed request's slot; confirmed money goes back."""
    request = state.requests.get(value.request_id)
    if request is None:
        raise UnknownRequest(f"no request has id {value.request_id}")
    if request.status == RequestStatus.PENDING_PAYMENT:
        _stop_waiting(state, request, "patient", actions)
    elif request.status == RequestStatus.CONFIRMED:
        _check_backlog(state)
        cancelled = BookingCancelled(
            request_id=request.request_id, patient=request.patient, reason="patient"
        )
        actions.emit(cancelled)
        _send_release(state, request, request.authorized_cents, actions)
        state.unbook(request)
        request.reason = "patient"
    else:
        raise NotCancellable(f"request {request.request_id} is {request.status}: nothing to cancel")


def _expire_holds(state: BookingState, at: datetime, actions: BookingActions) -> None:
    """Free every hold older than ``hold_minutes`` at ``at``; their payment calls stay in flight."""
    limit = timedelta(minutes=state.hold_minutes)
    expired = [
        state.requests[rid]
        for rid in sorted(state.requests)
        if state.requests[rid].status == RequestStatus.PENDING_PAYMENT
        and at - state.requests[rid].held_at >= limit
    ]
    if not expired:
        raise NoExpiredHolds(f"no hold is older than {state.hold_minutes} minutes at {at}")
    # At most one notification per in-flight call, and in-flight calls never exceed the
    # capacity (max_in_flight), so these all fit before state changes.
    for request in expired:
        actions.emit(
            BookingCancelled(
                request_id=request.request_id, patient=request.patient, reason="hold expired"
            )
        )
    for request in expired:
        _mark_cancelling(state, request, "hold expired")


def _stop_waiting(
    state: BookingState, request: BookingRequest, reason: str, actions: BookingActions
) -> None:
    """Cancel a pending request: free its slot and wait for its payment's outcome."""
    actions.emit(
        BookingCancelled(request_id=request.request_id, patient=request.patient, reason=reason)
    )
    _mark_cancelling(state, request, reason)


def _mark_cancelling(state: BookingState, request: BookingRequest, reason: str) -> None:
    state.unbook(request)
    request.status = RequestStatus.CANCELLING
    request.reason = reason


# -- payment answers -----------------------------------------------------------------------


def _answer(
    state: BookingState,
    action_id: ActionId,
    result: Success | Failed | Released | Pending,
    actions: BookingActions,
) -> None:
    """Apply the payment service's answer to the call ``action_id``."""
    call = state.payments.get(action_id) if isinstance(action_id, int) else None
    if call is None:
        # The runtime lets only outstanding ids through; this guards direct callers,
        # so a duplicate answer can never act on a request twice.
        raise PaymentNotOutstanding(
            f"no payment call {action_id!r} is in flight: the answer is a duplicate, late, "
            "or for a call never sent"
        )
    request = state.requests[call.request_id]
    if isinstance(result, Pending):
        _ask_again(state, request, actions)
    elif request.status == RequestStatus.PENDING_PAYMENT:
        _answer_pending(state, request, result, actions)
    elif request.status == RequestStatus.CANCELLING:
        _answer_cancelling(state, request, result, actions)
    elif request.status == RequestStatus.RELEASING:
        _answer_releasing(state, request, result, actions)
    else:
        raise AssertionError(
            f"request {request.request_id} is {request.status} but call {action_id} is in flight"
        )


def _answer_pending(
    state: BookingState,
    request: BookingRequest,
    result: Success | Failed | Released,
    actions: BookingActions,
) -> None:
    """The hold's payment is decided: confirm, or free the slot."""
    patient, rid = request.patient, request.request_id
    if isinstance(result, Success) and result.amount_cents == request.amount_cents:
        actions.emit(
            BookingConfirmed(
                request_id=rid,
                patient=patient,
                day=request.day,
                start=request.start,
                end=request.end,
            )
        )
        _finish_call(state, request, RequestStatus.CONFIRMED)
        request.authorized_cents = result.amount_cents
    elif isinstance(result, Success):
        # The service authorized a different amount: do not book on it, give it back.
        reason = f"authorized {result.amount_cents} cents, the price is {request.amount_cents}"
        actions.emit(PaymentDeclined(request_id=rid, patient=patient, reason=reason))
        _send_release(state, request, result.amount_cents, actions)
        state.unbook(request)
        request.reason = reason
    else:
        reason = (
            result.reason
            if isinstance(result, Failed)
            else "the payment service released the authorization"
        )
        actions.emit(PaymentDeclined(request_id=rid, patient=patient, reason=reason))
        state.unbook(request)
        _finish_call(state, request, RequestStatus.PAYMENT_FAILED)
        request.reason = reason


def _answer_cancelling(
    state: BookingState,
    request: BookingRequest,
    result: Success | Failed | Released,
    actions: BookingActions,
) -> None:
    """A cancelled request's payment is decided: money taken goes back."""
    if isinstance(result, Success):
        _send_release(state, request, result.amount_cents, actions)
    else:
        _finish_call(state, request, RequestStatus.CANCELLED)


def _answer_releasing(
    state: BookingState,
    request: BookingRequest,
    result: Success | Failed | Released,
    actions: BookingActions,
) -> None:
    """A release is answered: done when nothing is held, else release again."""
    if isinstance(result, Success):
        # Still authorized (the release did not take): send a new release.
        _send_release(state, request, result.amount_cents, actions)
        return
    actions.emit(
        PaymentReleased(
            request_id=request.request_id,
            patient=request.patient,
            amount_cents=request.authorized_cents,
        )
    )
    _finish_call(state, request, RequestStatus.RELEASED)


def _ask_again(state: BookingState, request: BookingRequest, actions: BookingActions) -> None:
    """The service has not decided: ask for the status under a fresh id."""
    check = CheckStatus(request_id=request.request_id, preauth_id=request.preauth_id)
    _replace_call(state, request, check, actions)
    request.checks += 1


def _send_release(
    state: BookingState, request: BookingRequest, amount_cents: int, actions: BookingActions
) -> None:
    """Release ``amount_cents`` held for ``request``; it waits in ``Releasing``."""
    release = Release(
        request_id=request.request_id, preauth_id=request.preauth_id, amount_cents=amount_cents
    )
    _replace_call(state, request, release, actions)
    request.status = RequestStatus.RELEASING
    request.authorized_cents = amount_cents


def _replace_call(
    state: BookingState,
    request: BookingRequest,
    action: Preauth | CheckStatus | Release,
    actions: BookingActions,
) -> None:
    """Send ``action`` as the request's one call in flight, replacing any previous one."""
    action_id = state.next_action_id
    actions.track(action_id, action)
    state.next_action_id += 1
    if request.awaiting is not None:
        state.payments.pop(request.awaiting, None)
    state.payments[action_id] = PaymentCall(request_id=request.request_id, action=action)
    request.awaiting = action_id


def _finish_call(state: BookingState, request: BookingRequest, status: RequestStatus) -> None:
    """The request's call in flight is answered for good: it moves to ``status``."""
    if request.awaiting is not None:
        state.payments.pop(request.awaiting, None)
    request.awaiting = None
    request.status = status
