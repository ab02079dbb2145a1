"""The dentist-booking machine under deterministic simulation: ``SIMULATION`` is the spec.

Run it with ``python -m fasm_es.testing examples.dentist_booking.simulation:SIMULATION``
or from a test with :func:`fasm_es.testing.simulate`.

The outside world is :class:`~examples.dentist_booking.fake_payments.FakePayments`:
it declines some preauthorizations (always those of :data:`DECLINED_PATIENT`),
leaves some pending so the machine asks again, and applies each money-changing
call at most once per idempotency key. The invariants are the example's own
:func:`~examples.dentist_booking.invariants.check_invariants`.
"""

from __future__ import annotations

import random
from typing import Any

from examples.dentist_booking.fake_payments import FakePayments
from examples.dentist_booking.invariants import check_invariants
from examples.dentist_booking.machine import (
    HOLDS_SLOT,
    WEEK,
    AptType,
    BookingState,
    Cancel,
    CheckStatus,
    DentistBooking,
    ExpireHolds,
    Preauth,
    Release,
    RequestAuto,
    RequestSlot,
)
from fasm_es import ActionId
from fasm_es.testing import Simulation

DECLINED_PATIENT = "dora"
"""A patient whose card the payment service always declines."""

PATIENTS = ("ann", "bob", "cy", DECLINED_PATIENT, "eve")

MALFORMED: tuple[dict[str, Any], ...] = (
    {
        "kind": "request_slot",
        "patient": "",
        "apt_type": "Checkup",
        "day": "Mon",
        "start_minute": 600,
    },
    {
        "kind": "request_slot",
        "patient": "ann",
        "apt_type": "Cleaning",
        "day": "Mon",
        "start_minute": 2000,
    },
    {"kind": "request_auto", "patient": "bob", "apt_type": "Whitening"},
    {"kind": "cancel"},
    {"kind": "reschedule", "request_id": 1},
)


def inputs(rng: random.Random, stream: str, state: BookingState) -> Any:
    """Slot and first-free requests, cancellations, expiry sweeps, and a little junk.

    Most slot requests ask for a weekday at a quarter hour of the opening
    day; some ask for a weekend or an early or late hour (the clinic is
    closed then) and some land on a taken slot. Cancellations mostly name a
    request that can be cancelled, sometimes one that cannot or does not
    exist; an expiry sweep finds nothing to expire unless time has passed.
    """
    roll = rng.random()
    patient = rng.choice(PATIENTS)
    apt_type = rng.choice(tuple(AptType))
    if roll < 0.5:
        usual = rng.random() < 0.85
        return RequestSlot(
            patient=patient,
            apt_type=apt_type,
            day=rng.choice(WEEK[:5] if usual else WEEK),
            start_minute=rng.randrange(9 * 60, 17 * 60, 15)
            if usual
            else rng.randrange(7 * 60, 20 * 60, 15),
        )
    if roll < 0.75:
        return RequestAuto(
            patient=patient,
            apt_type=apt_type,
            earliest_day=rng.choice(WEEK[:5]),
            earliest_minute=rng.randrange(0, 17 * 60, 15),
        )
    if roll < 0.88:
        holding = [
            rid for rid in sorted(state.requests) if state.requests[rid].status in HOLDS_SLOT
        ]
        if holding and rng.random() < 0.8:
            return Cancel(request_id=rng.choice(holding))
        return Cancel(request_id=rng.randint(1, state.next_request_id + 2))
    if roll < 0.96:
        return ExpireHolds()
    return rng.choice(MALFORMED)


class PaymentsWorld:
    """The fake payment service as the simulated outside world."""

    def __init__(self) -> None:
        self.service = FakePayments(
            seed=0,
            decline_rate=0.1,
            pending_rate=0.25,
            pending_checks=1,
            declined_patients=(DECLINED_PATIENT,),
        )

    def answer(
        self,
        stream: str,
        action_id: ActionId,
        action: Preauth | CheckStatus | Release,
        rng: random.Random,
    ) -> Any:
        """What the service answers for this call (its decisions come from its own seed)."""
        return self.service.handle(stream, action_id, action)


SIMULATION = Simulation(
    machine=DentistBooking,
    inputs=inputs,
    world=PaymentsWorld,
    invariants=[check_invariants],
    streams=("clinic-north", "clinic-south", "clinic-east"),
)
