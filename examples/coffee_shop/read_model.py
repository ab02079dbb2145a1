"""Read model: loyalty points per user (one stream is one customer's account).

The till shows every balance change with the untracked action
:class:`ShowBalance`, so the projection simply keeps the latest one shown:
spendable ``points`` and ``held`` (by a redemption in flight). It also adds
up what each user ``earned`` (:class:`EarnPoints` inputs) and how many
``rewards`` were issued (:class:`ShowRedemptionSucceeded`). Run it with
:class:`~projections.Runner`::

    runner = Runner(points_per_user, store, "sqlite:///views.db")
    runner.catch_up()
    with runner.engine.connect() as connection:
        top = leaderboard(connection, limit=10)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from examples.coffee_shop.machine import (
    CoffeeShop,
    EarnPoints,
    ShowBalance,
    ShowRedemptionSucceeded,
)
from projections import Context, Projection, UTCDateTime


class Base(DeclarativeBase):
    """The read model's tables."""


class PointsRow(Base):
    """One user's points."""

    __tablename__ = "coffee_points"

    user: Mapped[str] = mapped_column(String(200), primary_key=True)
    points: Mapped[int] = mapped_column(default=0, server_default="0")
    held: Mapped[int] = mapped_column(default=0, server_default="0")
    earned: Mapped[int] = mapped_column(default=0, server_default="0")
    rewards: Mapped[int] = mapped_column(default=0, server_default="0")
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


points_per_user = Projection("coffee_points_per_user", CoffeeShop(), [PointsRow])
"""The projection: points per user."""


@points_per_user.on_action(ShowBalance)
def _balance(ctx: Context, shown: ShowBalance) -> None:
    ctx.upsert(
        PointsRow,
        {
            "user": ctx.stream,
            "points": shown.points,
            "held": shown.held,
            "updated_at": ctx.accepted_at,
        },
        key=["user"],
    )


@points_per_user.on_input(EarnPoints)
def _earned(ctx: Context, earned: EarnPoints) -> None:
    ctx.add(PointsRow, {"user": ctx.stream}, {"earned": earned.points})


@points_per_user.on_action(ShowRedemptionSucceeded)
def _reward(ctx: Context, _succeeded: ShowRedemptionSucceeded) -> None:
    ctx.add(PointsRow, {"user": ctx.stream}, {"rewards": 1})


@dataclass(frozen=True, slots=True)
class Points:
    """A user's points as the app shows them."""

    user: str
    points: int
    held: int
    earned: int
    rewards: int


def points_of(connection: Connection | Session, user: str) -> Points | None:
    """``user``'s points (None for a user with no account yet)."""
    table = PointsRow.__table__
    row = connection.execute(select(table).where(table.c.user == user)).first()
    return None if row is None else Points(row.user, row.points, row.held, row.earned, row.rewards)


def leaderboard(connection: Connection | Session, *, limit: int = 10) -> list[Points]:
    """The users with the most points earned, most first."""
    table = PointsRow.__table__
    rows = connection.execute(
        select(table).order_by(table.c.earned.desc(), table.c.user).limit(limit)
    )
    return [Points(r.user, r.points, r.held, r.earned, r.rewards) for r in rows]
