"""Read model: each clinic's confirmed bookings, by day.

A booking is confirmed when the machine emits :class:`BookingConfirmed` (the
payment cleared) and leaves when it emits :class:`BookingCancelled` for the
same request (the patient cancelled a confirmed booking). Holds waiting for
payment are not bookings yet, so they are not shown. Run it with
:class:`~projections.Runner`::

    runner = Runner(confirmed_bookings, store, "sqlite:///views.db")
    runner.catch_up()
    with runner.engine.connect() as connection:
        week = bookings_by_day(connection, "clinic-1")
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Index, String, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from examples.dentist_booking.machine import (
    WEEK,
    BookingCancelled,
    BookingConfirmed,
    Day,
    DentistBooking,
    clock,
)
from projections import Context, Projection, UTCDateTime


class Base(DeclarativeBase):
    """The read model's tables."""


class ConfirmedBookingRow(Base):
    """One confirmed booking: a clinic's week (the stream), a request, a slot."""

    __tablename__ = "dentist_confirmed_bookings"
    __table_args__ = (Index("ix_dentist_confirmed_bookings_day", "clinic", "day", "start"),)

    clinic: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    patient: Mapped[str] = mapped_column(String(200))
    day: Mapped[str] = mapped_column(String(3))
    start: Mapped[int]
    end: Mapped[int]
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime)


confirmed_bookings = Projection(
    "dentist_confirmed_bookings", DentistBooking(), [ConfirmedBookingRow]
)
"""The projection: confirmed bookings of every clinic."""


@confirmed_bookings.on_action(BookingConfirmed)
def _confirmed(ctx: Context, booking: BookingConfirmed) -> None:
    ctx.insert(
        ConfirmedBookingRow,
        {
            "clinic": ctx.stream,
            "request_id": booking.request_id,
            "patient": booking.patient,
            "day": booking.day.value,
            "start": booking.start,
            "end": booking.end,
            "confirmed_at": ctx.accepted_at,
        },
    )


@confirmed_bookings.on_action(BookingCancelled)
def _cancelled(ctx: Context, cancelled: BookingCancelled) -> None:
    # A cancelled hold was never confirmed: then there is simply no row to delete.
    table = ctx.table(ConfirmedBookingRow)
    ctx.session.execute(
        delete(table).where(
            table.c.clinic == ctx.stream, table.c.request_id == cancelled.request_id
        )
    )


@dataclass(frozen=True, slots=True)
class ConfirmedBooking:
    """A confirmed booking as the front desk sees it."""

    request_id: int
    patient: str
    start: int
    end: int
    confirmed_at: datetime

    def __str__(self) -> str:
        return f"{clock(self.start)}-{clock(self.end)} {self.patient} (request {self.request_id})"


def bookings_by_day(
    connection: Connection | Session, clinic: str
) -> dict[Day, list[ConfirmedBooking]]:
    """``clinic``'s confirmed bookings, by day of the week (days without any left out)."""
    rows = connection.execute(
        select(ConfirmedBookingRow.__table__)
        .where(ConfirmedBookingRow.__table__.c.clinic == clinic)
        .order_by("day", "start")
    )
    by_day: dict[Day, list[ConfirmedBooking]] = {}
    for r in rows:
        by_day.setdefault(Day(r.day), []).append(
            ConfirmedBooking(r.request_id, r.patient, r.start, r.end, r.confirmed_at)
        )
    return {day: sorted(by_day[day], key=lambda b: b.start) for day in WEEK if day in by_day}
