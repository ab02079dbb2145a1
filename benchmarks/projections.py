"""Projection catch-up: a million records into a SQLAlchemy table, beside a raw pipeline.

The log is the replay benchmark's counter stream (one ``Increment`` per
record, each emitting an ``Incremented`` action). The view has one row per
record: position, stream, version, the increment and the running total
(both read from the emitted action). Two ways of building it, each timed
from opening the databases to the last commit:

- **ours**: a :class:`~projections.Projection` with one action handler that
  calls ``ctx.insert``, run by :class:`~projections.Runner.catch_up` from
  position 0: records read through the event store, decoded through the
  machine's declared types, rows written in batches that commit with the
  projection's position.
- **raw**: the same records selected with the database driver (stdlib
  ``sqlite3``, or psycopg), each body parsed with ``json.loads``, the same
  rows inserted with ``executemany`` and a position row updated, committed
  per batch of the same size, on a database with the same settings.

Both views must end equal (row count and column sums), else the run fails.
Repetitions are interleaved (ours, raw, ours, ...) and each figure is the
median. On PostgreSQL (``--postgres-url`` or ``$FASM_ES_BENCH_POSTGRES_URL``,
a database the benchmark may create schemas in) the store is kept in a schema
of its own, built once per size; without a URL that half is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

from benchmarks.measure import Run, Runs, run_isolated
from benchmarks.replay import STREAM, counter_file, counter_records
from benchmarks.report import Figure, Goal, render
from examples.counter import Counter
from examples.counter.machine import Incremented
from fasm_es import open_store
from fasm_es.backends.sqlite import TABLE
from projections import Context, Projection, Runner

DEFAULT_RECORDS = 1_000_000
QUICK_RECORDS = 50_000
DEFAULT_REPEAT = 3
DEFAULT_BATCH = 5_000
POSTGRES_URL_ENV = "FASM_ES_BENCH_POSTGRES_URL"
RAW_GOAL = Goal(at_least=0.4)
VIEW_TABLE = "increments"
POSITION_TABLE = "raw_positions"

Progress = Callable[[str], None]
Digest = tuple[int, int, int, int, int]
"""Row count and the sums of position, version, increment and total: equal views agree."""

increments = Table(
    VIEW_TABLE,
    MetaData(),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("stream", String(200), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("by", Integer, nullable=False),
    Column("total", BigInteger, nullable=False),
)


def bench_projection() -> Projection:
    """One row per counter record, from the ``Incremented`` action it emitted."""
    projection = Projection("bench_increments", Counter(), [increments])

    @projection.on_action(Incremented)
    def row(ctx: Context, action: Incremented) -> None:
        ctx.insert(
            increments,
            {
                "position": ctx.position,
                "stream": ctx.stream,
                "version": ctx.version,
                "by": action.current - action.previous,
                "total": action.current,
            },
        )

    return projection


def _raw_row(position: int, stream: str, version: int, body: bytes) -> tuple[Any, ...]:
    action = json.loads(body)["actions"][0]["action"]
    return (position, stream, version, action["current"] - action["previous"], action["current"])


_CREATE_RAW = (
    f"CREATE TABLE {VIEW_TABLE} (position BIGINT PRIMARY KEY, stream VARCHAR(200) NOT NULL, "
    "version BIGINT NOT NULL, by INTEGER NOT NULL, total BIGINT NOT NULL)",
    f"CREATE TABLE {POSITION_TABLE} (projection VARCHAR(64) PRIMARY KEY, position BIGINT NOT NULL)",
    f"INSERT INTO {POSITION_TABLE} VALUES ('bench_increments', 0)",
)
_DIGEST = f"SELECT COUNT(*), SUM(position), SUM(version), SUM(by), SUM(total) FROM {VIEW_TABLE}"


def _digest(row: Any) -> Digest:
    return tuple(int(v or 0) for v in row)  # type: ignore[return-value]


# -- SQLite ----------------------------------------------------------------------------


def _discard(path: Path) -> None:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)


def ours_sqlite(store_path: str, view_path: str, batch: str) -> int:
    """Catch the projection up from the store file into a fresh view file; records applied."""
    with (
        open_store(f"sqlite:///{store_path}") as store,
        Runner(
            bench_projection(), store, f"sqlite:///{view_path}", batch_size=int(batch)
        ) as runner,
    ):
        return runner.catch_up()


def raw_sqlite(store_path: str, view_path: str, batch: str) -> int:
    """sqlite3 select + json.loads + executemany into a fresh view file, per batch; records."""
    size = int(batch)
    applied = 0
    source = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    view = sqlite3.connect(view_path)
    try:
        # The settings the projection's own view database uses.
        view.execute("PRAGMA journal_mode=WAL")
        view.execute("PRAGMA synchronous=NORMAL")
        for statement in _CREATE_RAW:
            view.execute(statement)
        view.commit()
        select = (
            f"SELECT rowid, originator_id, originator_version, state FROM {TABLE} "
            "WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )
        insert = f"INSERT INTO {VIEW_TABLE} VALUES (?, ?, ?, ?, ?)"
        advance = f"UPDATE {POSITION_TABLE} SET position = ? WHERE projection = 'bench_increments'"
        position = 0
        while True:
            rows = source.execute(select, (position, size)).fetchall()
            if not rows:
                break
            view.executemany(insert, [_raw_row(*r) for r in rows])
            position = rows[-1][0]
            view.execute(advance, (position,))
            view.commit()
            applied += len(rows)
    finally:
        source.close()
        view.close()
    return applied


def sqlite_digest(view_path: str) -> Digest:
    """The digest of the view in the file at ``view_path``."""
    connection = sqlite3.connect(view_path)
    try:
        return _digest(connection.execute(_DIGEST).fetchone())
    finally:
        connection.close()


# -- PostgreSQL ------------------------------------------------------------------------


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def _conninfo(url: str) -> dict[str, Any]:
    from fasm_es.backends.postgres import postgres_params

    p = postgres_params(url)
    info = {"dbname": p.dbname, "host": p.host, "port": p.port, "user": p.user}
    if p.password:
        info["password"] = p.password
    return {k: v for k, v in info.items() if v not in ("", None)}


def _execute(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(**_conninfo(url), autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement.encode())


def postgres_store(url: str, records: int, progress: Progress) -> str:
    """A store of ``records`` counter records in its own schema of ``url``, built once."""
    schema = f"fasm_bench_counter_{records}"
    store_url = _with_schema(url, schema)
    with open_store(store_url) as store:
        if store.last_version(STREAM) == records:
            return store_url
        if store.last_position():
            progress(f"schema {schema} holds another log: dropping it")
    _execute(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    progress(f"building schema {schema}: {records:,} records")
    with open_store(store_url) as store:
        batch = []
        for encoded in counter_records(records):
            batch.append(encoded)
            if len(batch) == 10_000:
                store.append(batch)
                batch = []
        store.append(batch)
    return store_url


OURS_SCHEMA = "fasm_bench_view_ours"
RAW_SCHEMA = "fasm_bench_view_raw"


def fresh_schema(url: str, schema: str) -> None:
    """Drop ``schema`` with everything in it, and create it empty."""
    _execute(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE", f"CREATE SCHEMA {schema}")


def ours_postgres(store_url: str, url: str, batch: str) -> int:
    """Catch the projection up into the (empty) ours schema on PostgreSQL; records applied."""
    view_url = _with_schema(url, OURS_SCHEMA)
    with (
        open_store(store_url) as store,
        Runner(bench_projection(), store, view_url, batch_size=int(batch)) as runner,
    ):
        return runner.catch_up()


def raw_postgres(store_url: str, url: str, batch: str) -> int:
    """psycopg select + json.loads + executemany into the (empty) raw schema, per batch."""
    import psycopg

    schema, size, applied = RAW_SCHEMA, int(batch), 0
    store_schema = store_url.rsplit("schema=", 1)[1]
    with (
        psycopg.connect(**_conninfo(url), autocommit=True) as source,
        psycopg.connect(**_conninfo(url), options=f"-c search_path={schema}") as view,
    ):
        with view.cursor() as cursor:
            for statement in _CREATE_RAW:
                cursor.execute(statement.encode())
        view.commit()
        select = (
            f"SELECT notification_id, originator_id, originator_version, state "
            f"FROM {store_schema}.fasm_records WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s"
        )
        insert = f"INSERT INTO {VIEW_TABLE} VALUES (%s, %s, %s, %s, %s)"
        advance = f"UPDATE {POSITION_TABLE} SET position = %s WHERE projection = 'bench_increments'"
        position = 0
        while True:
            rows = source.execute(select.encode(), (position, size)).fetchall()
            if not rows:
                break
            with view.cursor() as cursor:
                cursor.executemany(insert.encode(), [_raw_row(*r) for r in rows])
                position = rows[-1][0]
                cursor.execute(advance.encode(), (position,))
            view.commit()
            applied += len(rows)
    return applied


def postgres_digest(url: str, schema: str) -> Digest:
    """The digest of the view in ``schema``."""
    import psycopg

    with psycopg.connect(**_conninfo(url), options=f"-c search_path={schema}") as connection:
        return _digest(connection.execute(_DIGEST.encode()).fetchone())


# -- the benchmark ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """Ours and raw on one database: the runs (each in a fresh process) and the views' digest."""

    database: str
    ours: Runs
    raw: Runs
    digest: Digest


@dataclass(frozen=True, slots=True)
class ProjectionsResult:
    """What one run of the projections benchmark measured."""

    records: int
    batch: int
    pairs: tuple[Pair, ...]
    skipped: tuple[str, ...]

    def figures(self) -> list[Figure]:
        """Ours beside raw, per database, held to the goal."""
        n = self.records
        return [
            Figure(
                f"catch_up_{p.database.lower()}",
                f"catch-up {n:,} records, {p.database}",
                "records/s",
                p.ours.rate(n),
                f"raw {'sqlite3' if p.database == 'SQLite' else 'psycopg'} + executemany",
                p.raw.rate(n),
                RAW_GOAL,
            )
            for p in self.pairs
        ]

    def as_json(self) -> dict[str, Any]:
        """Figures and per-repetition seconds as plain JSON values."""
        n = self.records
        return {
            "records": n,
            "batch": self.batch,
            "repeat": len(self.pairs[0].ours.runs) if self.pairs else 0,
            "records_per_s": {
                p.database.lower(): {"ours": round(p.ours.rate(n)), "raw": round(p.raw.rate(n))}
                for p in self.pairs
            },
            "cpu_records_per_s": {
                p.database.lower(): {
                    "ours": round(p.ours.cpu_rate(n)),
                    "raw": round(p.raw.cpu_rate(n)),
                }
                for p in self.pairs
            },
            "seconds": {
                p.database.lower(): {"ours": p.ours.seconds, "raw": p.raw.seconds}
                for p in self.pairs
            },
            "figures": {f.key: f.as_json() for f in self.figures()},
            "skipped": list(self.skipped),
        }


@dataclass(frozen=True, slots=True)
class _Side:
    """One side of a pair: what to run in a fresh process, and how to prepare and check it."""

    target: str
    args: tuple[str, ...]
    prepare: Callable[[], None]
    digest: Callable[[], Digest]


def _pair(
    database: str, records: int, repeat: int, sides: dict[str, _Side], progress: Progress
) -> Pair:
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    digests: dict[str, Digest] = {}
    for round_ in range(1, repeat + 1):
        progress(f"{database}: catching up {records:,} records, repetition {round_} of {repeat}")
        for name, side in sides.items():
            side.prepare()
            done = run_isolated(side.target, *side.args)
            if done.result != records:
                raise RuntimeError(f"{database} {name}: applied {done.result!r} of {records:,}")
            runs[name].append(done)
            digests[name] = side.digest()
        if digests["ours"] != digests["raw"] or digests["ours"][0] != records:
            raise RuntimeError(
                f"{database}: the two views differ (ours {digests['ours']}, raw {digests['raw']})"
            )
    return Pair(database, Runs(tuple(runs["ours"])), Runs(tuple(runs["raw"])), digests["ours"])


def run(
    records: int = DEFAULT_RECORDS,
    repeat: int = DEFAULT_REPEAT,
    *,
    cache_dir: Path,
    batch: int = DEFAULT_BATCH,
    postgres_url: str | None = None,
    sqlite: bool = True,
    progress: Progress = lambda _: None,
) -> ProjectionsResult:
    """Time ours and raw catch-ups on SQLite (and PostgreSQL given a URL), ``repeat`` times.

    Each catch-up runs in a fresh process (see :mod:`benchmarks.measure`), the
    two sides interleaved. Raises ``RuntimeError`` if a side applies another
    number of records or the two views differ.
    """
    if records < 1 or repeat < 1 or batch < 1:
        raise ValueError(f"records, repeat and batch must be >= 1: {records}, {repeat}, {batch}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    pairs: list[Pair] = []
    skipped: list[str] = []
    if sqlite:
        store = str(counter_file(records, cache_dir, progress))
        views = {name: cache_dir / f"projection-{name}.db" for name in ("ours", "raw")}
        sides = {
            name: _Side(
                f"benchmarks.projections:{name}_sqlite",
                (store, str(view), str(batch)),
                partial(_discard, view),
                partial(sqlite_digest, str(view)),
            )
            for name, view in views.items()
        }
        pairs.append(_pair("SQLite", records, repeat, sides, progress))
        for view in views.values():
            _discard(view)
    if postgres_url:
        store_url = postgres_store(postgres_url, records, progress)
        schemas = {"ours": OURS_SCHEMA, "raw": RAW_SCHEMA}
        sides = {
            name: _Side(
                f"benchmarks.projections:{name}_postgres",
                (store_url, postgres_url, str(batch)),
                partial(fresh_schema, postgres_url, schema),
                partial(postgres_digest, postgres_url, schema),
            )
            for name, schema in schemas.items()
        }
        pairs.append(_pair("PostgreSQL", records, repeat, sides, progress))
        for schema in schemas.values():
            _execute(postgres_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    else:
        skipped.append(f"PostgreSQL: no URL (pass --postgres-url or set {POSTGRES_URL_ENV})")
    return ProjectionsResult(records, batch, tuple(pairs), tuple(skipped))


# -- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The projections benchmark's options."""
    parser.add_argument(
        "--records", type=int, default=None, help=f"log length (default {DEFAULT_RECORDS:,})"
    )
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="timed repetitions (median reported)"
    )
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="records per transaction, both sides"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV),
        help=f"a PostgreSQL database to use (default ${POSTGRES_URL_ENV}; none: SQLite only)",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")


def main(args: argparse.Namespace, console: Console, progress: Progress) -> dict[str, Any]:
    """Run the projections benchmark from parsed options, print its table, return its JSON."""
    records = args.records or (QUICK_RECORDS if args.quick else DEFAULT_RECORDS)
    result = run(
        records,
        args.repeat,
        cache_dir=args.cache_dir,
        batch=args.batch,
        postgres_url=args.postgres_url,
        sqlite=not args.no_sqlite,
        progress=progress,
    )
    notes = [
        f"records/s: median of {args.repeat} interleaved repetitions, each in a fresh process, "
        "from opening the databases to the last commit, "
        f"{result.batch:,} records per transaction on both sides; raw = driver select + "
        "json.loads + executemany + a position row update, per batch.",
        *(
            f"{p.database} on CPU time (less disturbed by other work): ours/raw "
            f"{p.ours.cpu_rate(records) / p.raw.cpu_rate(records):.2f}x."
            for p in result.pairs
        ),
        *result.skipped,
    ]
    render(console, f"projection catch-up: {records:,} records", result.figures(), notes)
    return result.as_json()
