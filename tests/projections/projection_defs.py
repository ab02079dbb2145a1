"""Projections the projection tests run, importable by a child process too.

:data:`ledger_view` keeps one row per record (a skipped record shows as a
missing row) and a per-stream count and sum updated by read-modify-write
through the session (a record applied twice shows as a count too high).

Environment variables slow it down and trace it, for the crash tests:

- ``PROJECTION_TEST_SLOW``: seconds to sleep in each record's handler;
- ``PROJECTION_TEST_TRACE``: a file to which each handled position is
  appended (before its batch commits), so a test can tell a kill landed
  mid-batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from machines import Entry, Ledger
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, insert, update

from fasm_es import EventStore, ManualClock, Streams
from projections import Context, Projection

Fill = Callable[..., list[int]]

metadata = MetaData()

entries = Table(
    "ledger_entries",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("stream", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("token", String(100), nullable=False),
    Column("amount", Integer, nullable=False),
)

totals = Table(
    "ledger_totals",
    metadata,
    Column("stream", String(100), primary_key=True),
    Column("records", Integer, nullable=False),
    Column("total", Integer, nullable=False),
)


def make_ledger_view() -> Projection:
    """A fresh ledger projection (handlers read the environment when they run)."""
    projection = Projection("ledger_view", Ledger(), [entries, totals])

    @projection.on_input(Entry)
    def entry(ctx: Context, value: Entry) -> None:
        slow = float(os.environ.get("PROJECTION_TEST_SLOW", "0") or 0)
        if slow:
            time.sleep(slow)
        ctx.insert(
            entries,
            {
                "position": ctx.position,
                "stream": ctx.stream,
                "version": ctx.version,
                "token": value.token,
                "amount": value.amount,
            },
        )
        session = ctx.session
        table = ctx.table(totals)
        changed = session.execute(
            update(table)
            .where(table.c.stream == ctx.stream)
            .values(records=table.c.records + 1, total=table.c.total + value.amount)
        )
        if changed.rowcount == 0:  # type: ignore[attr-defined]
            session.execute(insert(table).values(stream=ctx.stream, records=1, total=value.amount))
        trace = os.environ.get("PROJECTION_TEST_TRACE")
        if trace:
            with open(trace, "a") as out:
                out.write(f"{ctx.position}\n")

    return projection


ledger_view = make_ledger_view()


def fill_ledger(
    store: EventStore, count: int, *, streams: int = 3, start: int = 0, actor: str = "ann"
) -> list[int]:
    """Append ``count`` ledger entries round-robin over ``streams`` streams; their positions."""
    ledger = Streams(Ledger(), store, clock=ManualClock())
    positions = []
    for n in range(start, start + count):
        record = ledger.submit(
            f"acct-{n % streams}", Entry(token=f"t{n}", amount=n % 7 + 1), actor=actor
        )
        positions.append(record.position)
    return positions
