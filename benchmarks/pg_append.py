"""PostgreSQL append: records per second through ``EventStore.append``, beside raw psycopg.

The same rows (the replay benchmark's counter records: one stream, versions
1..N, each body and hash chain from the real codec) are written in batches,
one transaction per batch, two ways:

- **ours**: ``open_store("postgresql://...?schema=...")`` and one
  ``EventStore.append(batch)`` call per batch: the ``eventsourcing`` recorder
  locks the table, notifies listeners, inserts the rows from one array
  parameter and returns their global positions.
- **raw**: psycopg ``executemany`` of the same rows into an equivalent table
  (text stream id, bigint version, text topic, bytea body, bigserial position;
  primary key on stream and version, unique index on position), inside
  ``BEGIN ... COMMIT`` per batch.

Each side runs in a fresh process on a freshly created, empty schema. The
records are encoded and the connections opened before the clock starts; the
clock runs from the first batch to the last commit. Repetitions alternate
(ours, raw, ours, ...) and each figure is the median. Both tables must end
holding the same rows, else the run fails.

The server comes from :mod:`benchmarks.postgres` (a URL, or a throwaway
cluster); without one the figure is skipped and the reason printed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console

from benchmarks.measure import Run, Runs, run_isolated
from benchmarks.postgres import POSTGRES_URL_ENV, postgres_server
from benchmarks.projections import _conninfo, _execute, _with_schema, fresh_schema
from benchmarks.replay import counter_records
from benchmarks.report import Figure, Goal, render
from fasm_es import open_store

DEFAULT_RECORDS = 100_000
DEFAULT_BATCH = 100
DEFAULT_REPEAT = 3
QUICK_RECORDS = 5_000
QUICK_REPEAT = 1

RAW_GOAL = Goal(at_least=0.5)
OURS_SCHEMA = "fasm_bench_append_ours"
RAW_SCHEMA = "fasm_bench_append_raw"
RAW_TABLE = "raw_records"
OURS_TABLE = "fasm_records"

Progress = Callable[[str], None]
Digest = tuple[int, int, int]
"""Row count, the sum of versions and the sum of body lengths: equal tables agree."""

_CREATE_RAW = (
    f"CREATE TABLE {RAW_TABLE} (stream text NOT NULL, version bigint NOT NULL, topic text, "
    "body bytea, position bigserial, PRIMARY KEY (stream, version))",
    f"CREATE UNIQUE INDEX {RAW_TABLE}_position_idx ON {RAW_TABLE} (position)",
)
_INSERT_RAW = f"INSERT INTO {RAW_TABLE} (stream, version, topic, body) VALUES (%s, %s, %s, %s)"


def _timed(started: float, cpu_started: float, appended: int) -> dict[str, Any]:
    return {
        "appended": appended,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
    }


# -- the two sides (each run in a fresh process) -----------------------------------------


def append_ours(url: str, records: str, batch: str) -> dict[str, Any]:
    """``EventStore.append`` of ``records`` counter records, ``batch`` per call; timings."""
    encoded = list(counter_records(int(records)))
    size = int(batch)
    with open_store(_with_schema(url, OURS_SCHEMA)) as store:
        positions = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(encoded), size):
            positions += len(store.append(encoded[start : start + size]))
        return _timed(started, cpu_started, positions)


def append_raw(url: str, records: str, batch: str) -> dict[str, Any]:
    """psycopg ``executemany`` of the same rows, one transaction per ``batch``; timings."""
    import psycopg

    rows = [(e.stream, e.version, e.tag, e.body) for e in counter_records(int(records))]
    size = int(batch)
    with psycopg.connect(
        **_conninfo(url), autocommit=True, options=f"-c search_path={RAW_SCHEMA}"
    ) as connection:
        for statement in _CREATE_RAW:
            connection.execute(statement.encode())
        insert = _INSERT_RAW.encode()
        with connection.cursor() as cursor:
            started, cpu_started = time.perf_counter(), time.process_time()
            for start in range(0, len(rows), size):
                with connection.transaction():
                    cursor.executemany(insert, rows[start : start + size])
            return _timed(started, cpu_started, len(rows))


def table_digest(url: str, schema: str, table: str, version: str, body: str) -> Digest:
    """Row count, sum of ``version`` and of the lengths of ``body`` in ``schema.table``."""
    import psycopg

    query = f"SELECT COUNT(*), SUM({version}), SUM(LENGTH({body})) FROM {schema}.{table}"
    with psycopg.connect(**_conninfo(url)) as connection:
        row = connection.execute(query.encode()).fetchone()
    assert row is not None
    return (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def server_version(url: str) -> str:
    """The server's version string, for the notes."""
    import psycopg

    with psycopg.connect(**_conninfo(url)) as connection:
        row = connection.execute(b"SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


# -- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one run of the append benchmark measured (``ours``/``raw`` None when skipped)."""

    records: int
    batch: int
    ours: Runs | None
    raw: Runs | None
    server: str
    skipped: str | None

    def figures(self) -> list[Figure]:
        """Ours beside raw, held to the goal; none when skipped."""
        if self.ours is None or self.raw is None:
            return []
        n = self.records
        return [
            Figure(
                "append_postgres",
                f"append {n:,} records, {self.batch} per call, PostgreSQL",
                "records/s",
                self.ours.rate(n),
                "psycopg executemany, same rows",
                self.raw.rate(n),
                RAW_GOAL,
            )
        ]

    def as_json(self) -> dict[str, Any]:
        """Rates, per-repetition seconds and the figure as plain JSON values."""
        payload: dict[str, Any] = {
            "records": self.records,
            "batch": self.batch,
            "server": self.server,
            "skipped": self.skipped,
        }
        if self.ours is not None and self.raw is not None:
            n = self.records
            named = {"ours": self.ours, "raw": self.raw}
            payload |= {
                "repeat": len(self.ours.runs),
                "records_per_s": {name: round(runs.rate(n)) for name, runs in named.items()},
                "cpu_records_per_s": {
                    name: round(runs.cpu_rate(n)) for name, runs in named.items()
                },
                "seconds": {name: runs.seconds for name, runs in named.items()},
                "figures": {f.key: f.as_json() for f in self.figures()},
            }
        return payload


def _inner(run: Run, records: int, name: str) -> Run:
    """The run with the child's own timing of the appends (setup excluded)."""
    result = run.result
    if not isinstance(result, dict) or result.get("appended") != records:
        raise RuntimeError(f"{name}: appended {result!r}, expected {records:,} records")
    return replace(run, seconds=result["seconds"], cpu_seconds=result["cpu_seconds"])


def run(
    records: int = DEFAULT_RECORDS,
    batch: int = DEFAULT_BATCH,
    repeat: int = DEFAULT_REPEAT,
    *,
    postgres_url: str | None = None,
    progress: Progress = lambda _: None,
) -> AppendResult:
    """Time ours and raw appends ``repeat`` times each, alternating, on a PostgreSQL server.

    The server is ``postgres_url``, else a throwaway cluster, else the figure
    is skipped (the result says why). Raises ``RuntimeError`` if a side
    appends another number of records or the two tables differ.
    """
    if min(records, batch, repeat) < 1:
        raise ValueError(f"records, batch and repeat must be >= 1: {records}, {batch}, {repeat}")
    with postgres_server(postgres_url, progress) as server:
        if server.url is None:
            return AppendResult(records, batch, None, None, "none", server.skipped)
        url = server.url
        sides = {
            "ours": ("benchmarks.pg_append:append_ours", OURS_SCHEMA, OURS_TABLE),
            "raw": ("benchmarks.pg_append:append_raw", RAW_SCHEMA, RAW_TABLE),
        }
        columns = {"ours": ("originator_version", "state"), "raw": ("version", "body")}
        runs: dict[str, list[Run]] = {name: [] for name in sides}
        try:
            for round_ in range(1, repeat + 1):
                progress(
                    f"PostgreSQL: appending {records:,} records, {batch} per call, "
                    f"repetition {round_} of {repeat}"
                )
                digests: dict[str, Digest] = {}
                for name, (target, schema, table) in sides.items():
                    fresh_schema(url, schema)
                    done = run_isolated(target, url, str(records), str(batch))
                    runs[name].append(_inner(done, records, name))
                    digests[name] = table_digest(url, schema, table, *columns[name])
                if digests["ours"] != digests["raw"] or digests["ours"][0] != records:
                    raise RuntimeError(
                        f"the two tables differ: ours {digests['ours']}, raw {digests['raw']}"
                    )
            version = server_version(url)
        finally:
            for _, schema, _ in sides.values():
                _execute(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        where = f"PostgreSQL {version}, {server.origin}"
        return AppendResult(
            records, batch, Runs(tuple(runs["ours"])), Runs(tuple(runs["raw"])), where, None
        )


# -- command line -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The append benchmark's options."""
    parser.add_argument(
        "--records", type=int, default=None, help=f"records appended (default {DEFAULT_RECORDS:,})"
    )
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="records per append call / transaction"
    )
    parser.add_argument("--repeat", type=int, default=None, help="alternating repetitions")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_URL_ENV),
        help=f"a PostgreSQL database to use (default ${POSTGRES_URL_ENV}; none: a throwaway "
        "cluster if the server binaries are installed)",
    )


def main(args: argparse.Namespace, console: Console, progress: Progress) -> dict[str, Any]:
    """Run the append benchmark from parsed options, print its table, return its JSON."""
    records = args.records or (QUICK_RECORDS if args.quick else DEFAULT_RECORDS)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    result = run(records, args.batch, repeat, postgres_url=args.postgres_url, progress=progress)
    title = f"PostgreSQL append: {records:,} records in batches of {args.batch}"
    if result.skipped is not None:
        console.print(f"{title}: skipped, {result.skipped}", highlight=False)
        return result.as_json()
    assert result.ours is not None and result.raw is not None
    notes = [
        f"records/s: median of {repeat} alternating repetitions, each in a fresh process on an "
        "empty schema, from the first batch to the last commit (records encoded and "
        "connections opened beforehand); one transaction per batch on both sides; "
        f"server: {result.server}.",
        f"on CPU time of the client process: ours "
        f"{result.ours.cpu_rate(records):,.0f}, raw {result.raw.cpu_rate(records):,.0f} "
        "records/s.",
    ]
    render(console, title, result.figures(), notes)
    return result.as_json()
