"""The dentist-booking example (fasm's ``dentist_booking``), made durable.

A clinic's week: patients ask for a slot or the first free one, a slot is
held while a payment preauthorization clears, and money for a booking that
no longer exists goes back. See :mod:`examples.dentist_booking.machine` for
the rules, :mod:`~examples.dentist_booking.invariants` for what must always
hold, and :mod:`~examples.dentist_booking.fake_payments` for a deterministic
payment service to run it against.
"""

from examples.dentist_booking.fake_payments import FakePayments
from examples.dentist_booking.invariants import check_invariants
from examples.dentist_booking.machine import (
    AptType,
    BookingInput,
    BookingState,
    Cancel,
    CheckStatus,
    Day,
    DentistBooking,
    ExpireHolds,
    Failed,
    Notification,
    PaymentReq,
    PaymentResult,
    Pending,
    Preauth,
    Release,
    Released,
    RequestAuto,
    RequestSlot,
    RequestStatus,
    Success,
    Window,
)

__all__ = [
    "AptType",
    "BookingInput",
    "BookingState",
    "Cancel",
    "CheckStatus",
    "Day",
    "DentistBooking",
    "ExpireHolds",
    "Failed",
    "FakePayments",
    "Notification",
    "PaymentReq",
    "PaymentResult",
    "Pending",
    "Preauth",
    "Release",
    "Released",
    "RequestAuto",
    "RequestSlot",
    "RequestStatus",
    "Success",
    "Window",
    "check_invariants",
]
