"""Rebuilds: fresh tables, swapped in only once caught up; readers never see a half-built view."""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from machines import Charge, ChargeCard, ChargeResult, Entry, Ledger, Payments, Receipt
from projection_defs import Fill, entries, make_ledger_view, totals
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    inspect,
    select,
)
from test_projection_runner import expected_entries, expected_totals, wait_until

from fasm_es import ManualClock, Streams, open_store
from projections import Context, Projection, ProjectionFailed, Runner
from projections.database import open_view

amounts = Table(
    "rebuilt_amounts",
    MetaData(),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("token", String(50), nullable=False),
    Column("amount", Integer, nullable=False, index=True),
    UniqueConstraint("token", name="uq_rebuilt_amounts_token"),
    Index("ix_rebuilt_amounts_token_amount", "token", "amount"),
)

Peek = Callable[[Context], None]


def amounts_view(scale: int, peek: Peek | None = None, fail_on: str | None = None) -> Projection:
    """One row per entry with ``amount * scale``; ``peek`` runs inside each handler call."""
    projection = Projection("amounts_view", Ledger(), [amounts])

    @projection.on_input(Entry)
    def entry(ctx: Context, value: Entry) -> None:
        if value.token == fail_on:
            raise RuntimeError(f"refusing {value.token}")
        if peek is not None:
            peek(ctx)
        ctx.insert(
            amounts,
            {"position": ctx.position, "token": value.token, "amount": value.amount * scale},
        )

    return projection


def reader(view_url: str) -> Engine:
    """A reader of the view with connections of its own, as an application would have."""
    if view_url.startswith("postgresql"):
        return open_view(view_url)
    return create_engine(view_url)


def read_amounts(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as connection:
        rows = connection.execute(select(amounts.c.token, amounts.c.amount).order_by("position"))
        return [(r.token, r.amount) for r in rows]


@pytest.mark.backends("sqlite", "postgres")
def test_a_reader_during_a_rebuild_sees_the_old_complete_view_until_the_swap(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    fill(store, 40)
    with Runner(amounts_view(scale=1), store, view_url, batch_size=7) as first:
        first.catch_up()
    old = [(f"t{n}", n % 7 + 1) for n in range(40)]
    app = reader(view_url)
    assert read_amounts(app) == old

    seen: list[list[tuple[str, int]]] = []
    writing: list[str] = []

    def peek(ctx: Context) -> None:
        # Runs mid-batch of the rebuild, with its transaction open: what does a reader see?
        writing.append(ctx.table(amounts).name)
        seen.append(read_amounts(app))

    with Runner(amounts_view(scale=10, peek=peek), store, view_url, batch_size=7) as second:
        result = second.rebuild()
        assert (result.records, result.position) == (40, store.last_position())
        assert not result.resumed
        assert set(writing) == {"rebuilt_amounts__rebuild"}
        assert len(seen) == 40
        assert all(view == old for view in seen)  # never partial, never the new one
        new = [(token, amount * 10) for token, amount in old]
        assert read_amounts(app) == new  # swapped in at once, complete
        status = second.status()
        assert status.position == store.last_position() and status.rebuilding is None
        # The fresh table is gone under its temporary name and the live one is whole.
        names = inspect(app).get_table_names()
        assert "rebuilt_amounts" in names and "rebuilt_amounts__rebuild" not in names
    app.dispose()
    store.close()


@pytest.mark.backends("sqlite", "postgres")
def test_records_appended_during_a_rebuild_are_in_the_swapped_view(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    fill(store, 10)
    appended: list[int] = []
    fired: set[int] = set()

    def peek(ctx: Context) -> None:
        # Writers keep appending while the rebuild runs, once early and once near the end.
        if ctx.position in (5, 12) and ctx.position not in fired:
            fired.add(ctx.position)
            appended.extend(fill(store, 3, start=10 + len(appended)))

    with Runner(amounts_view(scale=1, peek=peek), store, view_url, batch_size=4) as runner:
        runner.rebuild()
        assert fired == {5, 12}
        assert [r[1] for r in runner.rows(amounts)] == [f"t{n}" for n in range(16)]
        assert runner.status().position == store.last_position() == appended[-1]
    store.close()


@pytest.mark.backends("sqlite", "postgres")
def test_an_interrupted_rebuild_leaves_the_live_view_and_resumes(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    positions = fill(store, 30)
    with Runner(amounts_view(scale=1), store, view_url, batch_size=4) as live:
        live.catch_up()
        before = live.rows(amounts)
    with Runner(amounts_view(scale=3, fail_on="t21"), store, view_url, batch_size=4) as broken:
        with pytest.raises(ProjectionFailed) as failed:
            broken.rebuild()
        assert failed.value.position == positions[21]
        assert broken.rows(amounts) == before  # the live view is untouched
        status = broken.status()
        assert status.rebuilding == positions[20]
        assert status.failure is None  # the live projection did not fail
    with Runner(amounts_view(scale=3), store, view_url, batch_size=4) as fixed:
        result = fixed.rebuild()
        assert result.resumed and result.records == 9
        assert fixed.rows(amounts) == [(p, t, a * 3) for p, t, a in before]
        assert fixed.status().rebuilding is None
        again = fixed.rebuild(restart=True)
        assert not again.resumed and again.records == 30
    store.close()


@pytest.mark.backends("sqlite", "postgres")
def test_a_rebuild_keeps_the_declared_index_and_constraint_names(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    fill(store, 5)
    with Runner(amounts_view(scale=1), store, view_url) as runner:
        runner.catch_up()
        engine = reader(view_url)

        def names() -> tuple[set[str], set[str], str | None]:
            found = inspect(engine)
            indexes = {str(i["name"]) for i in found.get_indexes("rebuilt_amounts")}
            uniques = {str(u["name"]) for u in found.get_unique_constraints("rebuilt_amounts")}
            return indexes, uniques, found.get_pk_constraint("rebuilt_amounts")["name"]

        declared = names()
        assert "ix_rebuilt_amounts_token_amount" in declared[0]
        assert "uq_rebuilt_amounts_token" in declared[1]
        for _ in range(2):  # a second rebuild must not collide with names left by the first
            runner.rebuild()
            assert names() == declared
        assert len(runner.rows(amounts)) == 5
        engine.dispose()
    store.close()


def test_rebuilding_fires_no_side_effects(tmp_path: Path) -> None:
    """The log is the same after a rebuild, and tracked actions reach handlers only as data."""
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    payments = Streams(Payments(), store, clock=ManualClock())
    for n in range(1, 6):
        record = payments.submit(f"card-{n % 2}", Charge(amount=n * 100))
        action = record.actions[0]
        payments.complete(f"card-{n % 2}", action.id, ChargeResult(ok=n != 3))  # type: ignore[union-attr]
    log_before = list(store.read_log())
    seen: list[object] = []
    projection = Projection("payments_seen", Payments(), [])

    @projection.on_action(ChargeCard)
    def charge(ctx: Context, action: ChargeCard) -> None:
        seen.append(("charge", ctx.stream, ctx.action_id, action.amount))

    @projection.on_action(Receipt)
    def receipt(ctx: Context, action: Receipt) -> None:
        seen.append(("receipt", ctx.stream, ctx.action_id, action.amount))

    with Runner(projection, store, f"sqlite:///{tmp_path / 'views.db'}") as runner:
        runner.catch_up()
        live_seen = list(seen)
        seen.clear()
        runner.rebuild()
    assert seen == live_seen
    assert ("charge", "card-1", 1, 100) in seen and ("receipt", "card-1", None, 100) in seen
    assert list(store.read_log()) == log_before  # nothing appended, nothing changed
    store.close()


def test_the_projections_package_cannot_reach_anything_that_dispatches() -> None:
    """No module of the package imports the submit or dispatch paths (or any other writer)."""
    package = Path(__file__).resolve().parents[2] / "projections"
    forbidden = {"fasm_es.streams", "fasm_es.engine", "fasm_es.runtime", "fasm_es.timers"}
    imported: set[str] = set()
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert imported & forbidden == set()
    assert "fasm_es.store" in imported  # the check does see the package's imports


def test_a_rebuild_can_show_its_progress(fill: Fill, capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store("memory://")
    fill(store, 12)
    with Runner(amounts_view(scale=1), store, "sqlite://", batch_size=5) as runner:
        runner.rebuild(progress=True)
    shown = capsys.readouterr().out
    assert "rebuilding amounts_view" in shown and "12/12" in shown


@pytest.mark.backends("sqlite", "postgres")
def test_a_live_follower_and_a_rebuild_together_keep_the_view_exact(
    store_url: str, view_url: str, fill: Fill
) -> None:
    """A follower keeps applying records while a rebuild runs and swaps under it."""
    store = open_store(store_url)
    fill(store, 30)
    follower = Runner(make_ledger_view(), store, view_url, batch_size=3, poll_interval=0.02)
    follower.catch_up()
    stop = threading.Event()
    thread = threading.Thread(target=follower.follow, args=(stop,))
    thread.start()
    appended = [30]

    def keep_appending(ctx: Context, value: Entry) -> None:
        if ctx.table(entries).name.endswith("__rebuild") and ctx.position % 7 == 0:
            fill(store, 2, start=appended[0])
            appended[0] += 2

    rebuilding = make_ledger_view()
    rebuilding.on_input(Entry)(keep_appending)
    try:
        with Runner(rebuilding, store, view_url, batch_size=4) as runner:
            runner.rebuild()
        wait_until(lambda: follower.status().position == store.last_position())
    finally:
        stop.set()
        thread.join(timeout=30)
    rows = follower.rows(entries)
    assert rows == expected_entries(store_url)
    assert follower.rows(totals) == expected_totals(rows)
    follower.close()
    store.close()
