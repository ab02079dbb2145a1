"""A failing record stops its projection, named; it resumes after a fix or an audited skip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from machines import Entry, Increment, Ledger, Tally
from projection_defs import Fill, entries, make_ledger_view
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

from fasm_es import ManualClock, Streams, open_store
from projections import Context, Projection, ProjectionFailed, Runner, SkipRefused

broken_tokens: set[str] = set()
"""Tokens the fragile projection's handler fails on (emptied to "fix" it)."""

fragile_rows = Table(
    "fragile_rows",
    MetaData(),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("token", String(50), nullable=False),
)


def fragile_view() -> Projection:
    """One row per entry; raises on the tokens in :data:`broken_tokens`."""
    projection = Projection("fragile_view", Ledger(), [fragile_rows])

    @projection.on_input(Entry)
    def entry(ctx: Context, value: Entry) -> None:
        if value.token in broken_tokens:
            raise ValueError(f"cannot handle token {value.token}")
        ctx.insert(fragile_rows, {"position": ctx.position, "token": value.token})

    return projection


@pytest.fixture(autouse=True)
def _healthy() -> None:
    broken_tokens.clear()


@pytest.mark.backends("sqlite", "postgres")
def test_a_failing_handler_stops_at_the_named_record_and_resumes_after_a_fix(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    positions = fill(store, 25)
    broken_tokens.add("t13")  # the 14th record, in the middle of the third batch of 6
    runner = Runner(fragile_view(), store, view_url, batch_size=6)
    with pytest.raises(ProjectionFailed) as failed:
        runner.catch_up()
    error = failed.value
    assert (error.stream, error.version, error.position) == ("acct-1", 5, positions[13])
    assert error.projection == "fragile_view" and error.tag == "Entry"
    assert "input handler" in error.error and "cannot handle token t13" in error.error
    assert f"position {positions[13]}" in str(error) and "'acct-1' version 5" in str(error)
    # Everything before it is applied and committed; nothing after it.
    assert [r[1] for r in runner.rows(fragile_rows)] == [f"t{n}" for n in range(13)]
    status = runner.status()
    assert status.position == positions[12]
    assert status.failure is not None
    assert (status.failure.position, status.failure.stream, status.failure.version) == (
        positions[13],
        "acct-1",
        5,
    )
    # Running again without a fix stops at the same record, position kept.
    with pytest.raises(ProjectionFailed):
        Runner(fragile_view(), store, view_url, batch_size=6).catch_up()
    assert runner.status().position == positions[12]
    broken_tokens.clear()  # the fix
    assert runner.catch_up() == 12
    assert [r[1] for r in runner.rows(fragile_rows)] == [f"t{n}" for n in range(25)]
    assert runner.status().failure is None
    runner.close()
    store.close()


@pytest.mark.backends("sqlite", "postgres")
def test_an_operator_skips_the_failing_record_with_an_audit_line(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    positions = fill(store, 12)
    broken_tokens.add("t4")
    clock = ManualClock(datetime(2030, 5, 1, tzinfo=UTC))
    runner = Runner(fragile_view(), store, view_url, batch_size=5, clock=clock)
    with pytest.raises(ProjectionFailed):
        runner.catch_up()
    with pytest.raises(SkipRefused, match="only the next record"):
        runner.skip(positions[5], "not the one it stopped at")
    with pytest.raises(SkipRefused, match="needs a reason"):
        runner.skip(positions[4], "  ")
    skip = runner.skip(positions[4], "token t4 was entered by mistake", by="ops:kim")
    assert (skip.position, skip.stream, skip.version, skip.tag) == (
        positions[4],
        "acct-1",
        2,
        "Entry",
    )
    assert runner.status().position == positions[4]
    assert runner.status().failure is None and runner.status().skipped == 1
    assert runner.catch_up() == 7
    tokens = [r[1] for r in runner.rows(fragile_rows)]
    assert tokens == [f"t{n}" for n in range(12) if n != 4]
    assert runner.skips() == [skip]
    assert skip.skipped_by == "ops:kim" and skip.skipped_at == clock.now()
    # The skip is part of the view's history: a rebuild passes over it too, even fixed.
    broken_tokens.clear()
    runner.rebuild()
    assert [r[1] for r in runner.rows(fragile_rows)] == tokens
    runner.close()
    store.close()


def test_nothing_is_skipped_without_an_operator(fill: Fill) -> None:
    store = open_store("memory://")
    fill(store, 6)
    broken_tokens.add("t2")
    runner = Runner(fragile_view(), store, "sqlite://", batch_size=100)
    for _ in range(3):
        with pytest.raises(ProjectionFailed):
            runner.catch_up()
    assert [r[1] for r in runner.rows(fragile_rows)] == ["t0", "t1"]
    assert runner.skips() == []
    with pytest.raises(SkipRefused, match="next: 3"):
        runner.skip(6, "the log's last record is not next")


duplicates = Table(
    "duplicate_rows",
    MetaData(),
    Column("key", Integer, primary_key=True, autoincrement=False),
)


def test_a_failure_found_only_when_buffered_rows_are_written_names_its_record(
    fill: Fill,
) -> None:
    """Rows are written many at a time; a constraint violation is still pinned on its record."""
    projection = Projection("dupes", Ledger(), [duplicates])

    @projection.on_input(Entry)
    def entry(ctx: Context, value: Entry) -> None:
        # Records 0..4 insert keys 0..4; record 5 inserts key 2 again.
        ctx.insert(duplicates, {"key": 2 if ctx.position == 6 else ctx.position - 1})

    store = open_store("memory://")
    fill(store, 8)
    runner = Runner(projection, store, "sqlite://", batch_size=100)
    with pytest.raises(ProjectionFailed) as failed:
        runner.catch_up()
    assert failed.value.position == 6
    assert "IntegrityError" in failed.value.error
    assert [r[0] for r in runner.rows(duplicates)] == [0, 1, 2, 3, 4]
    assert runner.status().position == 5


@pytest.mark.backends("sqlite", "postgres")
def test_a_record_of_another_machine_stops_the_projection_unless_told_to_pass_over(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    fill(store, 3)
    tally = Streams(Tally(), store, clock=ManualClock())
    foreign = tally.submit("tally-1", Increment(by=1)).position
    fill(store, 2, start=3)
    with pytest.raises(ProjectionFailed) as failed:
        Runner(make_ledger_view(), store, view_url).catch_up()
    assert failed.value.position == foreign
    assert failed.value.stream == "tally-1" and failed.value.tag == "Increment"
    assert "cannot be decoded" in failed.value.error
    assert "not declared by machine Ledger" in failed.value.error

    lenient = make_ledger_view()
    lenient.ignore_unknown_types = True
    with Runner(lenient, store, view_url) as runner:
        assert runner.catch_up() == 3  # the two after the foreign one, and the foreign one read
        rows = runner.rows(entries)
        assert len(rows) == 5
        assert expected_entries_except(store_url, foreign) == rows
    store.close()


def expected_entries_except(store_url: str, position: int) -> list[tuple[object, ...]]:
    """The ledger rows of every record but the foreign one."""
    with open_store(store_url) as store:
        ledger = Streams(Ledger(), store)
        rows = []
        for raw in store.read_log():
            if raw.position == position:
                continue
            value = ledger.codec.decode(raw).input.value  # type: ignore[union-attr]
            rows.append((raw.position, raw.stream, raw.version, value.token, value.amount))
        return rows


def test_a_rebuild_stopped_at_a_record_can_skip_it_too(fill: Fill) -> None:
    store = open_store("memory://")
    positions = fill(store, 9)
    runner = Runner(fragile_view(), store, "sqlite://", batch_size=4)
    runner.catch_up()  # the live view has every record
    broken_tokens.add("t6")  # a changed handler now fails on one of them
    with pytest.raises(ProjectionFailed) as failed:
        runner.rebuild()
    assert failed.value.position == positions[6]
    assert len(runner.rows(fragile_rows)) == 9  # live view untouched
    runner.skip(positions[6], "t6 cannot be projected any more", by="ops")
    with pytest.raises(SkipRefused, match="already skipped"):
        runner.skip(positions[6], "twice")
    result = runner.rebuild()
    assert result.resumed
    assert [r[1] for r in runner.rows(fragile_rows)] == [f"t{n}" for n in range(9) if n != 6]
