"""Read model: account balances, and the charges still pending.

Built from what the log records, with no state folding:

- :class:`Deposit` adds to an account's ``balance``;
- a :class:`Charge` the machine emits reserves its amount (``reserved``)
  and opens a pending charge (keyed by account and payment number);
- the :class:`Notification` of a payment's outcome settles it: *confirmed*
  takes the amount off the balance and the reservation, *failed* and
  *cancelled* release the reservation, and those three close the pending
  charge; *timed out* keeps the reservation (the cancel is on its way) and
  marks the charge ``timed_out``.

``available`` is ``balance - reserved``, what a new payment may use. Run it
with :class:`~projections.Runner`::

    runner = Runner(balances, store, "sqlite:///views.db")
    runner.catch_up()
    with runner.engine.connect() as connection:
        print(balance_of(connection, "acct-1"), pending_charges(connection))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, String, delete, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from examples.payments.machine import Charge, Deposit, Notification, Payments
from projections import Context, Projection, UTCDateTime


class Base(DeclarativeBase):
    """The read model's tables."""


class BalanceRow(Base):
    """One account's money, in cents."""

    __tablename__ = "payments_balances"

    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    balance: Mapped[int] = mapped_column(server_default="0")
    reserved: Mapped[int] = mapped_column(server_default="0")


class PendingChargeRow(Base):
    """A charge not settled yet (``pending``, or ``timed_out`` while its cancel runs)."""

    __tablename__ = "payments_pending_charges"

    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    payment: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    user: Mapped[str] = mapped_column(String(200))
    amount: Mapped[int]
    status: Mapped[str] = mapped_column(String(20))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)


balances = Projection("payments_balances", Payments(), [BalanceRow, PendingChargeRow])
"""The projection: balances and pending charges of every account."""


@balances.on_input(Deposit)
def _deposit(ctx: Context, deposit: Deposit) -> None:
    ctx.add(BalanceRow, {"account": ctx.stream}, {"balance": deposit.amount})


@balances.on_action(Charge)
def _charge(ctx: Context, charge: Charge) -> None:
    ctx.add(BalanceRow, {"account": ctx.stream}, {"reserved": charge.amount})
    ctx.insert(
        PendingChargeRow,
        {
            "account": ctx.stream,
            "payment": charge.payment,
            "user": charge.user,
            "amount": charge.amount,
            "status": "pending",
            "requested_at": ctx.accepted_at,
        },
    )


@balances.on_action(Notification)
def _settled(ctx: Context, note: Notification) -> None:
    pending = ctx.table(PendingChargeRow)
    this_charge = (pending.c.account == ctx.stream, pending.c.payment == note.payment)
    if note.outcome == "timed_out":
        ctx.session.execute(update(pending).where(*this_charge).values(status="timed_out"))
        return
    taken = note.amount if note.outcome == "confirmed" else 0
    ctx.add(BalanceRow, {"account": ctx.stream}, {"balance": -taken, "reserved": -note.amount})
    ctx.session.execute(delete(pending).where(*this_charge))


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's money, in cents."""

    account: str
    balance: int
    reserved: int

    @property
    def available(self) -> int:
        """What a new payment may use."""
        return self.balance - self.reserved


@dataclass(frozen=True, slots=True)
class PendingCharge:
    """A charge the gateway has not settled."""

    account: str
    payment: int
    user: str
    amount: int
    status: str
    requested_at: datetime


def balance_of(connection: Connection | Session, account: str) -> Balance | None:
    """``account``'s balance (None for an account with no record yet)."""
    table = BalanceRow.__table__
    row = connection.execute(select(table).where(table.c.account == account)).first()
    return None if row is None else Balance(row.account, row.balance, row.reserved)


def pending_charges(
    connection: Connection | Session, account: str | None = None
) -> list[PendingCharge]:
    """Charges not settled yet (of one account, or all), oldest first."""
    table = PendingChargeRow.__table__
    stmt = select(table).order_by(table.c.requested_at, table.c.account, table.c.payment)
    if account is not None:
        stmt = stmt.where(table.c.account == account)
    return [
        PendingCharge(r.account, r.payment, r.user, r.amount, r.status, r.requested_at)
        for r in connection.execute(stmt)
    ]
