"""Guarantee 9, tamper evidence: rows edited, deleted, inserted or reordered directly
in SQLite and PostgreSQL are found, and the first broken place is named."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from examples.counter import Counter, Increment
from fasm_es import Head, Streams, open_store, verify
from fasm_es.audit import ChainBreak

Tamper = Callable[[str, tuple[Any, ...]], None]


def sql_runner(url: str) -> Tamper:
    """Run one statement directly against the store's database, bypassing fasm-es."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]

        def run_sqlite(statement: str, params: tuple[Any, ...]) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(statement.replace("%s", "?"), params)

        return run_sqlite

    import psycopg

    def run_postgres(statement: str, params: tuple[Any, ...]) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement.encode(), params)

    return run_postgres


@pytest.fixture
def filled(store_url: str) -> Iterator[tuple[str, Tamper]]:
    """Three streams of five records each, and a way to run SQL on them."""
    with open_store(store_url) as store:
        counters = Streams(Counter(), store)
        for stream in ("a", "b", "c"):
            for _ in range(5):
                counters.submit(stream, Increment(by=1), actor="auditor")
    yield store_url, sql_runner(store_url)


def only_break(url: str, **kwargs: Any) -> ChainBreak:
    with open_store(url) as store:
        report = verify(store, **kwargs)
    assert len(report.breaks) == 1, report.breaks
    return report.breaks[0]


@pytest.mark.backends("sqlite", "postgres")
def test_untouched_log_verifies(filled: tuple[str, Tamper]) -> None:
    url, _ = filled
    with open_store(url) as store:
        report = verify(store)
    assert report.ok
    assert (report.streams, report.records) == (3, 15)
    assert {s: h.version for s, h in report.heads.items()} == {"a": 5, "b": 5, "c": 5}


@pytest.mark.backends("sqlite", "postgres")
def test_edited_record_is_named(filled: tuple[str, Tamper]) -> None:
    url, run = filled
    with open_store(url) as store:
        body = next(store.read_stream("b", after=2, upto=3)).body
    run(
        "UPDATE fasm_records SET state=%s WHERE originator_id=%s AND originator_version=%s",
        (body.replace(b'"by":1', b'"by":7'), "b", 3),
    )
    broken = only_break(url)
    assert (broken.stream, broken.version, broken.kind) == ("b", 3, "edited")


@pytest.mark.backends("sqlite", "postgres")
def test_edited_metadata_is_named(filled: tuple[str, Tamper]) -> None:
    url, run = filled
    with open_store(url) as store:
        body = next(store.read_stream("c", after=0, upto=1)).body
    run(
        "UPDATE fasm_records SET state=%s WHERE originator_id=%s AND originator_version=%s",
        (body.replace(b'"actor":"auditor"', b'"actor":"mallory"'), "c", 1),
    )
    broken = only_break(url)
    assert (broken.stream, broken.version, broken.kind) == ("c", 1, "edited")


@pytest.mark.backends("sqlite", "postgres")
def test_deleted_record_is_named(filled: tuple[str, Tamper]) -> None:
    url, run = filled
    run("DELETE FROM fasm_records WHERE originator_id=%s AND originator_version=%s", ("a", 2))
    broken = only_break(url)
    assert (broken.stream, broken.version, broken.kind) == ("a", 2, "missing")


@pytest.mark.backends("sqlite", "postgres")
def test_inserted_record_is_named(filled: tuple[str, Tamper]) -> None:
    """A record slipped in at version 3, the later ones renumbered to make room."""
    url, run = filled
    with open_store(url) as store:
        foreign = next(store.read_stream("c", after=2, upto=3))
    for version in (5, 4, 3):
        run(
            "UPDATE fasm_records SET originator_version=%s "
            "WHERE originator_id=%s AND originator_version=%s",
            (version + 1, "b", version),
        )
    run(
        "INSERT INTO fasm_records (originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, %s, %s)",
        ("b", 3, foreign.tag, foreign.body),
    )
    broken = only_break(url)
    assert (broken.stream, broken.version, broken.kind) == ("b", 3, "edited")


@pytest.mark.backends("sqlite", "postgres")
def test_reordered_records_are_named(filled: tuple[str, Tamper]) -> None:
    url, run = filled
    swap = (
        "UPDATE fasm_records SET originator_version=%s "
        "WHERE originator_id=%s AND originator_version=%s"
    )
    run(swap, (-1, "a", 4))
    run(swap, (4, "a", 3))
    run(swap, (3, "a", -1))
    broken = only_break(url)
    assert (broken.stream, broken.version) == ("a", 3)
    assert broken.kind in ("edited", "reordered")


@pytest.mark.backends("sqlite", "postgres")
def test_truncation_needs_and_is_caught_by_expected_heads(filled: tuple[str, Tamper]) -> None:
    url, run = filled
    with open_store(url) as store:
        heads = verify(store).heads
    run("DELETE FROM fasm_records WHERE originator_id=%s AND originator_version=%s", ("c", 5))
    with open_store(url) as store:
        assert verify(store).ok  # the chain alone cannot see a removed tail
    broken = only_break(url, expected_heads=heads)
    assert (broken.stream, broken.version, broken.kind) == ("c", 5, "truncated")


@pytest.mark.backends("sqlite", "postgres")
def test_rewritten_stream_is_caught_by_expected_heads(filled: tuple[str, Tamper]) -> None:
    """A writer who recomputes every hash passes the chain check, not the heads check."""
    url, run = filled
    with open_store(url) as store:
        heads = verify(store).heads
    run("DELETE FROM fasm_records WHERE originator_id=%s", ("a",))
    with open_store(url) as store:
        forged = Streams(Counter(), store)
        for _ in range(5):
            forged.submit("a", Increment(by=2))
        assert verify(store).ok
    broken = only_break(url, expected_heads=heads)
    assert (broken.stream, broken.version, broken.kind) == ("a", 5, "edited")


def test_missing_stream_is_truncated() -> None:
    with open_store("memory://") as store:
        report = verify(store, expected_heads={"gone": Head(3, "0" * 64)})
    assert [(b.stream, b.kind) for b in report.breaks] == [("gone", "truncated")]


def test_malformed_body_is_named(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    with open_store(url) as store:
        Streams(Counter(), store).submit("x", Increment())
    sql_runner(url)("UPDATE fasm_records SET state=%s", (b'{"input":{"by":1}}',))
    broken = only_break(url)
    assert (broken.stream, broken.version, broken.kind) == ("x", 1, "malformed")
