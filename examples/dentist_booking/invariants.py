"""Invariants of a dentist-booking state, checked after every step of a test or simulation.

:func:`check_invariants` returns one message per violation (an empty list
means every invariant holds). Each message starts with the invariant's name:

1. ``no-overlap``: no two bookings on one day overlap (fasm's invariant 1);
2. ``within-schedule``: every booking lies inside one opening window of its
   day (fasm's invariant 2);
3. ``confirmed-booked``: every confirmed request has its booking (fasm's
   invariant 3);
4. ``bookings-held``: every booking belongs to a request that holds it
   (pending payment or confirmed, same day and times), every pending request
   has its booking, and a confirmed request's payment is authorized for its
   price. This is the one fasm lacks: its duplicate ``Success`` bug leaves a
   booking whose request is releasing its money, which invariants 1-3 accept;
5. ``payments-in-flight``: each payment call in flight belongs to a request
   waiting for exactly that call, each request in an in-flight status waits
   for one, the others for none; ids come from the counters; no more calls
   are in flight than ``max_in_flight``.

The checks are written independently of the machine's own helpers, so a bug
in those cannot hide itself here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from examples.dentist_booking.machine import (
    HOLDS_SLOT,
    IN_FLIGHT,
    WEEK,
    BookingState,
    RequestStatus,
    clock,
)


def check_invariants(state: BookingState) -> list[str]:
    """Every violated invariant of ``state``, one message each; empty when all hold."""
    problems: list[str] = []
    for name, check in INVARIANTS:
        problems.extend(f"{name}: {message}" for message in check(state))
    return problems


def no_overlap(state: BookingState) -> list[str]:
    """No two bookings on one day overlap."""
    problems = []
    for day in sorted(state.bookings, key=WEEK.index):
        ordered = sorted(state.bookings[day], key=lambda b: (b.start, b.end, b.request_id))
        for before, after in itertools.pairwise(ordered):
            if after.start < before.end:
                problems.append(
                    f"{day}: request {before.request_id} ({clock(before.start)}-"
                    f"{clock(before.end)}) overlaps request {after.request_id} "
                    f"({clock(after.start)}-{clock(after.end)})"
                )
    return problems


def within_schedule(state: BookingState) -> list[str]:
    """Every booking lies inside one opening window of its day."""
    problems = []
    for day in sorted(state.bookings, key=WEEK.index):
        windows = state.schedule.get(day, [])
        for b in state.bookings[day]:
            inside = any(w.start <= b.start and b.end <= w.end for w in windows)
            if b.start >= b.end or not inside:
                problems.append(
                    f"{day}: request {b.request_id}'s booking {clock(b.start)}-{clock(b.end)} "
                    "is outside the opening hours"
                )
    return problems


def confirmed_booked(state: BookingState) -> list[str]:
    """Every confirmed request has its booking."""
    problems = []
    for rid in sorted(state.requests):
        request = state.requests[rid]
        if request.status != RequestStatus.CONFIRMED:
            continue
        booked = any(
            b.request_id == rid and b.start == request.start and b.end == request.end
            for b in state.bookings.get(request.day, [])
        )
        if not booked:
            problems.append(f"request {rid} is confirmed but has no booking")
    return problems


def bookings_held(state: BookingState) -> list[str]:
    """Bookings and the requests holding them agree, and confirmed money is authorized."""
    problems = []
    seen: dict[int, int] = {}
    for day in sorted(state.bookings, key=WEEK.index):
        for b in state.bookings[day]:
            seen[b.request_id] = seen.get(b.request_id, 0) + 1
            request = state.requests.get(b.request_id)
            where = f"{day} {clock(b.start)}-{clock(b.end)}"
            if request is None:
                problems.append(f"booking {where} names request {b.request_id}, which is unknown")
            elif request.status not in HOLDS_SLOT:
                problems.append(
                    f"booking {where} stays while request {b.request_id} is {request.status}"
                )
            elif (request.day, request.start, request.end) != (day, b.start, b.end):
                problems.append(
                    f"booking {where} does not match request {b.request_id}'s "
                    f"{request.day} {clock(request.start)}-{clock(request.end)}"
                )
            elif request.end - request.start != request.apt_type.minutes:
                problems.append(
                    f"request {b.request_id} lasts {request.end - request.start} min, "
                    f"a {request.apt_type} takes {request.apt_type.minutes}"
                )
    for rid in sorted(state.requests):
        request = state.requests[rid]
        count = seen.get(rid, 0)
        if count > 1:
            problems.append(f"request {rid} holds {count} bookings")
        if request.status == RequestStatus.PENDING_PAYMENT and count == 0:
            problems.append(f"request {rid} is pending payment but holds no slot")
        if request.status == RequestStatus.CONFIRMED and (
            request.authorized_cents != request.amount_cents
            or request.amount_cents != request.apt_type.price_cents
        ):
            problems.append(
                f"request {rid} is confirmed with {request.authorized_cents} cents authorized "
                f"for a {request.apt_type} priced {request.apt_type.price_cents}"
            )
    return problems


def payments_in_flight(state: BookingState) -> list[str]:
    """Payment calls in flight and the requests waiting for them agree."""
    problems = []
    for action_id in sorted(state.payments):
        call = state.payments[action_id]
        request = state.requests.get(call.request_id)
        if request is None:
            problems.append(f"call {action_id} is for request {call.request_id}, which is unknown")
        elif request.awaiting != action_id:
            problems.append(
                f"call {action_id} is in flight but request {call.request_id} "
                f"waits for {request.awaiting}"
            )
        if action_id >= state.next_action_id:
            problems.append(f"call {action_id} is not below next_action_id {state.next_action_id}")
    for rid in sorted(state.requests):
        request = state.requests[rid]
        if rid != request.request_id or rid >= state.next_request_id:
            problems.append(f"request key {rid} does not match its id {request.request_id}")
        waits = request.awaiting is not None
        if request.status in IN_FLIGHT and (not waits or request.awaiting not in state.payments):
            problems.append(f"request {rid} is {request.status} but no call of its is in flight")
        if request.status not in IN_FLIGHT and waits:
            problems.append(
                f"request {rid} is {request.status} yet waits for call {request.awaiting}"
            )
    if len(state.payments) > state.max_in_flight:
        problems.append(
            f"{len(state.payments)} calls are in flight, more than max_in_flight "
            f"{state.max_in_flight}"
        )
    return problems


INVARIANTS: tuple[tuple[str, Callable[[BookingState], list[str]]], ...] = (
    ("no-overlap", no_overlap),
    ("within-schedule", within_schedule),
    ("confirmed-booked", confirmed_booked),
    ("bookings-held", bookings_held),
    ("payments-in-flight", payments_in_flight),
)
"""Each invariant's name and check, in the order :func:`check_invariants` runs them."""
