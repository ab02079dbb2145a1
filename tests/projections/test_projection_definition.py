"""Declaring projections: names, tables, and which handlers a record reaches, in what order."""

from __future__ import annotations

from typing import Any

import pytest
from machines import (
    Cancel,
    Charge,
    ChargeCard,
    ChargeResult,
    Entry,
    Ledger,
    Payments,
    Receipt,
)
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fasm_es import ManualClock, Record, Streams, Tracked, open_store
from projections import Context, Projection, ProjectionDefinitionError, Runner


class Base(DeclarativeBase):
    pass


class Model(Base):
    __tablename__ = "model_rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


@pytest.mark.parametrize(
    "name",
    ["Upper", "has-dash", "1starts_with_digit", "x" * 49, "drop table;", "", "naïve"],
)
def test_projection_and_table_names_must_be_plain_identifiers(name: str) -> None:
    with pytest.raises(ProjectionDefinitionError, match="is not allowed"):
        Projection(name, Ledger())
    with pytest.raises(ProjectionDefinitionError, match="is not allowed"):
        Projection(
            "ok", Ledger(), [Table(name, MetaData(), Column("id", Integer, primary_key=True))]
        )


def test_tables_are_declared_once_without_schema_or_foreign_keys() -> None:
    metadata = MetaData()
    parent = Table("parent_rows", metadata, Column("id", Integer, primary_key=True))
    child = Table(
        "child_rows",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("parent", ForeignKey("parent_rows.id")),
    )
    elsewhere = Table("other_rows", MetaData(), Column("id", Integer, primary_key=True), schema="x")
    with pytest.raises(ProjectionDefinitionError, match="foreign keys"):
        Projection("p", Ledger(), [parent, child])
    with pytest.raises(ProjectionDefinitionError, match="schema 'x'"):
        Projection("p", Ledger(), [elsewhere])
    with pytest.raises(ProjectionDefinitionError, match="declared twice"):
        Projection("p", Ledger(), [parent, parent])
    with pytest.raises(ProjectionDefinitionError, match="neither a SQLAlchemy Table"):
        Projection("p", Ledger(), [object])  # type: ignore[list-item]


def test_tables_are_found_by_table_model_class_or_name() -> None:
    projection = Projection("p", Ledger(), [Model])
    table = Model.__table__
    assert projection.table(Model) is projection.table("model_rows") is projection.table(table)
    with pytest.raises(ProjectionDefinitionError, match="declares no table 'nope'"):
        projection.table("nope")


def test_handlers_are_chosen_by_class_not_by_union() -> None:
    projection = Projection("p", Payments())
    with pytest.raises(ProjectionDefinitionError, match="chosen by class"):
        projection.on_input(Charge | Cancel)  # type: ignore[arg-type]


def test_a_record_reaches_input_then_action_then_record_handlers_in_declared_order() -> None:
    store = open_store("memory://")
    payments = Streams(Payments(), store, clock=ManualClock())
    charged = payments.submit("card", Charge(amount=5), actor="ann")
    tracked = charged.actions[0]
    assert isinstance(tracked, Tracked)
    payments.complete("card", tracked.id, ChargeResult(ok=True), actor="bank")

    calls: list[tuple[Any, ...]] = []
    projection = Projection("ordered", Payments())

    @projection.on_input(Charge)
    def first(ctx: Context, value: Charge) -> None:
        calls.append(("input", ctx.position, ctx.version, ctx.actor, value.amount))

    @projection.on_input(object)
    def any_input(ctx: Context, value: object) -> None:
        calls.append(("any input", ctx.position, type(value).__name__))

    @projection.on_action(ChargeCard)
    def charge(ctx: Context, action: ChargeCard) -> None:
        calls.append(("action", ctx.position, ctx.action_id, action.amount))

    @projection.on_action(Receipt)
    def receipt(ctx: Context, action: Receipt) -> None:
        calls.append(("action", ctx.position, ctx.action_id, action.ok))

    @projection.on_result(ChargeResult)
    def result(ctx: Context, value: ChargeResult) -> None:
        assert ctx.meta.actor == "bank" and ctx.tag == "Completed"
        calls.append(("result", ctx.position, value.ok, ctx.record.input.id))  # type: ignore[union-attr]

    @projection.on_record
    def every(ctx: Context, record: Record[Any, Any, Any, Any]) -> None:
        calls.append(("record", record.position, ctx.stream, ctx.accepted_at is not None))

    with Runner(projection, store, "sqlite://") as runner:
        runner.catch_up()
    assert calls == [
        ("input", 1, 1, "ann", 5),
        ("any input", 1, "Charge"),
        ("action", 1, tracked.id, 5),
        ("record", 1, "card", True),
        ("result", 2, True, tracked.id),
        ("action", 2, None, True),
        ("record", 2, "card", True),
    ]


def test_records_no_handler_wants_are_passed_over_without_decoding() -> None:
    projection = Projection("only_entries", Ledger(), stream_prefix="shop-")
    seen: list[str] = []

    @projection.on_input(Entry)
    def entry(ctx: Context, value: Entry) -> None:
        seen.append(value.token)

    assert projection.wants("shop-1", "Entry")
    assert not projection.wants("bank-1", "Entry")  # outside the prefix
    assert not projection.wants("shop-1", "Completed")  # no result handlers
    assert projection.wants("shop-1", "Unknown")  # decoding must report it
    store = open_store("memory://")
    ledger = Streams(Ledger(), store, clock=ManualClock())
    for n, stream in enumerate(["shop-1", "bank-1", "shop-2", "bank-1"]):
        ledger.submit(stream, Entry(token=f"t{n}", amount=1))
    with Runner(projection, store, "sqlite://") as runner:
        assert runner.catch_up() == 4
        assert runner.status().position == 4
    assert seen == ["t0", "t2"]


def test_buffered_writes_merge_upserts_and_sum_additions_within_a_batch() -> None:
    counts = Table(
        "entry_counts",
        MetaData(),
        Column("stream", String(20), primary_key=True),
        Column("last_token", String(20)),
        Column("records", Integer, nullable=False, server_default="0"),
        Column("total", Integer, nullable=False, server_default="0"),
    )
    projection = Projection("counted", Ledger(), [counts])

    @projection.on_input(Entry)
    def entry(ctx: Context, value: Entry) -> None:
        ctx.upsert(counts, {"stream": ctx.stream, "last_token": value.token}, key=["stream"])
        ctx.add(counts, {"stream": ctx.stream}, {"records": 1, "total": value.amount})

    store = open_store("memory://")
    ledger = Streams(Ledger(), store, clock=ManualClock())
    for n in range(11):
        ledger.submit(f"s{n % 2}", Entry(token=f"t{n}", amount=n))
    for batch_size in (1, 3, 100):  # one row per batch, several, or all merged in one
        with Runner(projection, store, "sqlite://", batch_size=batch_size) as runner:
            runner.catch_up()
            assert runner.rows(counts) == [("s0", "t10", 6, 30), ("s1", "t9", 5, 25)]
