"""The runner: catch up exactly once, resume from the stored position, follow, status, reset."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from machines import Entry, Ledger
from projection_defs import Fill, entries, make_ledger_view, totals

from fasm_es import DatabaseURLError, ManualClock, Streams, open_store
from projections import Runner


def expected_entries(store_url: str) -> list[tuple[object, ...]]:
    """The rows ``ledger_entries`` must hold: one per record, built straight from the log."""
    with open_store(store_url) as store:
        ledger = Streams(Ledger(), store)
        rows = []
        for raw in store.read_log():
            record = ledger.codec.decode(raw)
            assert not isinstance(record.input.value, int)
            value = record.input.value
            assert isinstance(value, Entry)
            rows.append((raw.position, raw.stream, raw.version, value.token, value.amount))
        return rows


def expected_totals(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Per-stream record count and sum of amounts."""
    by_stream: dict[str, list[int]] = {}
    for _, stream, _, _, amount in rows:
        assert isinstance(stream, str) and isinstance(amount, int)
        by_stream.setdefault(stream, []).append(amount)
    return [(s, len(a), sum(a)) for s, a in sorted(by_stream.items())]


def wait_until(condition: object, timeout: float = 30.0) -> None:
    """Wait for ``condition()`` to hold (a deadline, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.02)


@pytest.mark.backends("memory", "sqlite", "postgres")
def test_catch_up_applies_every_record_once(store_url: str, view_url: str, fill: Fill) -> None:
    store = open_store(store_url)
    fill(store, 47)
    with Runner(make_ledger_view(), store, view_url, batch_size=10) as runner:
        assert runner.catch_up() == 47
        assert runner.catch_up() == 0  # nothing new: nothing applied again
        rows = runner.rows(entries)
        if store_url.startswith("memory"):
            assert len(rows) == 47
        else:
            assert rows == expected_entries(store_url)
        assert runner.rows(totals) == expected_totals(rows)
        assert runner.status().position == store.last_position()
    store.close()


@pytest.mark.backends("sqlite", "postgres")
def test_a_new_runner_resumes_from_the_stored_position(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    positions = fill(store, 30)
    with Runner(make_ledger_view(), store, view_url, batch_size=7) as first:
        assert first.catch_up(upto=positions[11]) == 12
        assert first.status().position == positions[11]
        assert len(first.rows(entries)) == 12
    fill(store, 5, start=30)
    with Runner(make_ledger_view(), store, view_url, batch_size=7) as second:
        assert second.catch_up() == 23
        rows = second.rows(entries)
        assert rows == expected_entries(store_url)
        assert second.rows(totals) == expected_totals(rows)
    store.close()


def test_the_view_may_live_in_the_stores_sqlite_file(tmp_path: Path, fill: Fill) -> None:
    url = f"sqlite:///{tmp_path / 'both.db'}"
    store = open_store(url)
    fill(store, 12)
    with Runner(make_ledger_view(), store, batch_size=5) as runner:  # view defaults to the store
        assert runner.catch_up() == 12
        fill(store, 3, start=12)  # appends still work beside the view's tables
        assert runner.catch_up() == 3
        assert runner.rows(entries) == expected_entries(url)
    store.close()


@pytest.mark.backends("sqlite", "postgres")
def test_two_runners_of_one_projection_never_apply_a_record_twice(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    fill(store, 120, streams=2)
    runners = [Runner(make_ledger_view(), store, view_url, batch_size=4) for _ in range(2)]
    for runner in runners:
        runner.setup()
    errors: list[BaseException] = []

    def run(runner: Runner) -> None:
        try:
            runner.catch_up()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = runners[0].rows(entries)
    assert rows == expected_entries(store_url)
    assert runners[0].rows(totals) == expected_totals(rows)
    for runner in runners:
        runner.close()
    store.close()


@pytest.mark.backends("memory", "sqlite", "postgres")
def test_follow_applies_records_appended_while_it_runs(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    fill(store, 5)
    runner = Runner(make_ledger_view(), store, view_url, batch_size=3, poll_interval=0.05)
    stop = threading.Event()
    follower = threading.Thread(target=runner.follow, args=(stop,))
    follower.start()
    try:
        wait_until(lambda: runner.status().position == store.last_position())
        fill(store, 9, start=5)
        wait_until(lambda: runner.status().position == store.last_position())
    finally:
        stop.set()
        follower.join(timeout=30)
    assert not follower.is_alive()
    assert len(runner.rows(entries)) == 14
    runner.close()
    store.close()


@pytest.mark.backends("postgres")
def test_follow_on_postgres_wakes_on_notify_not_on_the_poll_interval(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    # A poll interval far longer than the wait below: only NOTIFY can wake the follower.
    runner = Runner(make_ledger_view(), store, view_url, poll_interval=3600)
    runner.setup()
    stop = threading.Event()
    follower = threading.Thread(target=runner.follow, args=(stop,))
    follower.start()
    try:
        time.sleep(0.5)  # let it catch up (nothing to do) and start waiting
        fill(store, 4)
        wait_until(lambda: len(runner.rows(entries)) == 4, timeout=20)
    finally:
        stop.set()
        follower.join(timeout=30)
    assert not follower.is_alive()
    runner.close()
    store.close()


@pytest.mark.backends("sqlite", "postgres")
def test_status_reports_position_head_and_lag(store_url: str, view_url: str, fill: Fill) -> None:
    store = open_store(store_url)
    positions = fill(store, 10)
    clock = ManualClock()  # fill's records were accepted from this clock's epoch on
    clock.advance(timedelta(seconds=90))
    with Runner(make_ledger_view(), store, view_url, batch_size=4, clock=clock) as runner:
        before = runner.status()
        assert (before.position, before.head, before.lag_records) == (0, positions[-1], 10)
        assert before.lag_seconds == pytest.approx(90, abs=1)
        assert not before.caught_up
        runner.catch_up(upto=positions[3])
        middle = runner.status()
        assert middle.position == positions[3]
        assert middle.lag_records == positions[-1] - positions[3]
        runner.catch_up()
        after = runner.status()
        assert after.caught_up
        assert (after.lag_records, after.lag_seconds) == (0, 0.0)
        assert after.failure is None and after.rebuilding is None and after.skipped == 0
        assert after.as_json()["position"] == positions[-1]
    store.close()


@pytest.mark.backends("sqlite", "postgres")
def test_reset_empties_the_view_and_starts_again_from_zero(
    store_url: str, view_url: str, fill: Fill
) -> None:
    store = open_store(store_url)
    fill(store, 20)
    with Runner(make_ledger_view(), store, view_url, batch_size=6) as runner:
        runner.catch_up()
        full = runner.rows(entries)
        runner.reset()
        assert runner.rows(entries) == [] and runner.rows(totals) == []
        assert runner.status().position == 0
        assert runner.catch_up() == 20
        assert runner.rows(entries) == full
        assert runner.rows(totals) == expected_totals(full)
    store.close()


def test_a_memory_store_needs_a_view_database() -> None:
    with pytest.raises(DatabaseURLError, match="in-memory event store has no database"):
        Runner(make_ledger_view(), open_store("memory://"))


@pytest.mark.parametrize(
    "url", ["mysql://u:p@h/db", "not a url at all", "oracle://x/y"], ids=["mysql", "junk", "oracle"]
)
def test_a_view_database_other_than_sqlite_or_postgres_is_refused(url: str) -> None:
    with pytest.raises(DatabaseURLError, match="view database"):
        Runner(make_ledger_view(), open_store("memory://"), url)


def test_a_view_in_sqlite_memory_works_for_scripts() -> None:
    store = open_store("memory://")
    Streams(Ledger(), store).submit("a", Entry(token="x", amount=3))
    with Runner(make_ledger_view(), store, "sqlite://") as runner:
        assert runner.catch_up() == 1
        assert runner.rows(totals) == [("a", 1, 3)]
