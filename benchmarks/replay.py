"""Replay: fold one long counter stream from a SQLite file, beside two baselines.

Three ways of reading the same history, each timed from opening the file to
holding the final count:

- **ours**: ``Streams(Counter(), open_store("sqlite:///...")).load(stream)``, the
  path a user takes: paged reads, every body decoded through the machine's
  declared types, the STF run on every record.
- **raw pipeline**: the floor for any Python event store that validates what it
  reads: stdlib ``sqlite3`` selecting the same rows, pydantic
  ``model_validate_json`` of each body with a model of the same shape, and a
  plain loop adding up the increments.
- **eventsourcing**: the ``eventsourcing`` library's ``Application.repository.get``
  replaying an equivalent aggregate (one event per increment) that its own
  SQLite persistence module stored in its own file.

Every replay runs in a fresh process, timed and with its peak memory noted.
The repetitions are interleaved (ours, raw, eventsourcing, ours, ...) so a noisy
neighbour slows all three alike, and each figure is the median. Our replay also
runs once at a tenth of the size: reads go a page at a time, so its peak memory
should not change.

The data files are built once per size and kept in a cache directory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel
from rich.console import Console

from benchmarks.measure import Run, Runs, run_isolated
from benchmarks.report import Figure, Goal, render
from examples.counter import Counter, Increment
from fasm_es import (
    Codec,
    EncodedRecord,
    FasmError,
    ManualClock,
    Metadata,
    Normal,
    Streams,
    open_store,
)
from fasm_es.backends.sqlite import TABLE
from fasm_es.record import GENESIS

STREAM = "counter-1"
"""The one stream every record belongs to."""

BATCH = 10_000
"""Records (or events) written per transaction when building a data file."""

DEFAULT_RECORDS = 1_000_000
DEFAULT_REPEAT = 3
QUICK_RECORDS = 50_000

RAW_GOAL = Goal(at_least=0.6)
EVENTSOURCING_GOAL = Goal(at_least=4.0)
FLAT_GOAL = Goal(at_most=1.5)
SMALL_RECORDS_MIN = 10_000
"""The smaller size of the peak-RSS comparison is never below this (five pages)."""
RSS_FLOOR_MB = 2.0
"""Peak growths below this are treated as equal: allocator noise, not a trend."""

TALLY_ID = uuid5(UUID(int=0), "fasm-es benchmark tally")
"""The eventsourcing aggregate's id, fixed so a cached file can be found again."""

Progress = Callable[[str], None]


# -- the data files ---------------------------------------------------------------


def counter_records(count: int) -> Iterator[EncodedRecord]:
    """The first ``count`` records of a counter stream fed ``Increment(by=1)``.

    Each is what ``Streams.submit`` would have appended: the STF is run, its
    actions recorded, and the body and hash chain come from the real codec.
    Accepted-at times start at the manual clock's epoch and step 1 ms.
    """
    machine = Counter()
    codec: Codec[Increment, Any, Any, Any] = Codec(machine.types)
    clock = ManualClock()
    state = machine.initial_state()
    value = Increment(by=1)
    last_hash = GENESIS
    for version in range(1, count + 1):
        input_ = Normal(value, Metadata(accepted_at=clock.advance(0.001)))
        actions = machine.new_actions()
        machine.stf(state, input_, actions)
        encoded = codec.encode(STREAM, version, last_hash, input_, actions.to_tuple())
        last_hash = encoded.hash
        yield encoded


def _encoding_fingerprint() -> str:
    # A change to the stored encoding gives a new cache file instead of a stale one.
    first = next(counter_records(1))
    return hashlib.sha256(first.tag.encode() + first.body).hexdigest()[:10]


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _discard(path: Path) -> None:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)


def _counter_file_complete(path: Path, records: int) -> bool:
    try:
        with open_store(_sqlite_url(path)) as store:
            return store.last_version(STREAM) == records
    except FasmError:
        return False


def counter_file(records: int, cache_dir: Path, progress: Progress) -> Path:
    """A SQLite event store holding ``records`` counter records, built once and cached."""
    path = cache_dir / f"counter-{records}-{_encoding_fingerprint()}.db"
    if path.exists() and _counter_file_complete(path, records):
        return path
    progress(f"building {path.name}: {records:,} records in batches of {BATCH:,}")
    building = path.with_name(path.name + ".building")
    _discard(building)
    with open_store(_sqlite_url(building)) as store:
        batch: list[EncodedRecord] = []
        for encoded in counter_records(records):
            batch.append(encoded)
            if len(batch) == BATCH:
                store.append(batch)
                batch = []
        store.append(batch)
    _discard(path)
    os.replace(building, path)
    return path


class Tally(Aggregate):
    """The counter as an ``eventsourcing`` aggregate: created with one increment, then more."""

    @staticmethod
    def create_id(*_: Any, **__: Any) -> UUID:
        """Every tally has the same id, so a cached file is found again."""
        return TALLY_ID

    def __init__(self, by: int) -> None:
        self.value = by

    @event("Incremented")
    def increment(self, by: int) -> None:
        """Add ``by``; recorded as an ``Incremented`` event."""
        self.value += by


def _eventsourcing_app(path: Path) -> Application[UUID]:
    return Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path),
            "IS_SNAPSHOTTING_ENABLED": "n",
        }
    )


def _eventsourcing_file_complete(path: Path, records: int) -> bool:
    app = _eventsourcing_app(path)
    try:
        last = list(app.events.get(TALLY_ID, desc=True, limit=1))
        return len(last) == 1 and last[0].originator_version == records
    except Exception:  # an unreadable cache file is simply rebuilt
        return False
    finally:
        app.close()


def eventsourcing_file(records: int, cache_dir: Path, progress: Progress) -> Path:
    """A SQLite file of ``eventsourcing`` holding one tally with ``records`` events, cached."""
    path = cache_dir / f"eventsourcing-{package_version('eventsourcing')}-{records}.db"
    if path.exists() and _eventsourcing_file_complete(path, records):
        return path
    progress(f"building {path.name}: {records:,} events, saved every {BATCH:,}")
    building = path.with_name(path.name + ".building")
    _discard(building)
    app = _eventsourcing_app(building)
    try:
        tally = Tally(by=1)
        for _ in range(records - 1):
            tally.increment(by=1)
            # One save per batch: saving 1M pending events at once would hold them all.
            if len(tally.pending_events) >= BATCH:
                app.save(tally)
        app.save(tally)
    finally:
        app.close()
    _discard(path)
    os.replace(building, path)
    return path


# -- the three replays ------------------------------------------------------------


def replay_ours(path: str) -> int:
    """Fold the counter stream in the file at ``path`` the way a user would; the count."""
    with open_store(_sqlite_url(Path(path))) as store:
        folded = Streams(Counter(), store).load(STREAM)
    return folded.state.value


class RawIncrement(BaseModel):
    """The stored input's shape."""

    by: int


class RawIncremented(BaseModel):
    """The stored notification's shape."""

    previous: int
    current: int


class RawAction(BaseModel):
    """The stored (untracked) action entry's shape."""

    action: RawIncremented


class RawMeta(BaseModel):
    """The stored metadata's shape."""

    accepted_at: datetime


class RawBody(BaseModel):
    """The whole stored body's shape, for the raw pipeline's validation."""

    input: RawIncrement
    actions: list[RawAction]
    meta: RawMeta
    hash: str


def replay_raw(path: str) -> int:
    """Select the same rows with sqlite3, validate each body with pydantic, add up; the count."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        validate = RawBody.model_validate_json
        total = 0
        rows = connection.execute(
            f"SELECT state FROM {TABLE} WHERE originator_id=? ORDER BY originator_version",
            (STREAM,),
        )
        for (body,) in rows:
            total += validate(body).input.by
        return total
    finally:
        connection.close()


def replay_eventsourcing(path: str) -> int:
    """Replay the tally with ``Application.repository.get``; the count."""
    app = _eventsourcing_app(Path(path))
    try:
        tally: Tally = app.repository.get(TALLY_ID)
        return tally.value
    finally:
        app.close()


# -- the benchmark ----------------------------------------------------------------

TARGETS = {
    "ours": "benchmarks.replay:replay_ours",
    "raw": "benchmarks.replay:replay_raw",
    "eventsourcing": "benchmarks.replay:replay_eventsourcing",
}


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What one run of the replay benchmark measured; every run reached the expected count."""

    records: int
    ours: Runs
    raw: Runs
    eventsourcing: Runs
    small_records: int
    ours_small: Run

    def figures(self) -> list[Figure]:
        """The figures beside their baselines, with the goals they are held to."""
        n = self.records
        size = f"replay {n:,} records"
        peak = f"peak RSS, ours, {n:,} records"
        return [
            Figure("ours_vs_raw", size, "events/s", self.ours.rate(n),
                   "raw pipeline", self.raw.rate(n), RAW_GOAL),
            Figure("ours_vs_eventsourcing", size, "events/s", self.ours.rate(n),
                   "eventsourcing get", self.eventsourcing.rate(n), EVENTSOURCING_GOAL),
            Figure("peak_rss_flat", peak, "MB", self.ours.growth_mb,
                   f"ours, {self.small_records:,} records", self.ours_small.growth_mb,
                   FLAT_GOAL, RSS_FLOOR_MB),
            Figure("peak_rss_vs_eventsourcing", peak, "MB", self.ours.growth_mb,
                   "eventsourcing get", self.eventsourcing.growth_mb, None, RSS_FLOOR_MB),
        ]  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        """Figures, per-repetition seconds and peak-RSS growths, as plain JSON values."""
        n = self.records
        named = {"ours": self.ours, "raw": self.raw, "eventsourcing": self.eventsourcing}
        return {
            "records": n,
            "repeat": len(self.ours.runs),
            "events_per_s": {name: round(runs.rate(n)) for name, runs in named.items()},
            "cpu_events_per_s": {name: round(runs.cpu_rate(n)) for name, runs in named.items()},
            "seconds": {name: runs.seconds for name, runs in named.items()},
            "peak_rss_growth_mb": {
                **{name: round(runs.growth_mb, 2) for name, runs in named.items()},
                f"ours_{self.small_records}": round(self.ours_small.growth_mb, 2),
            },
            "interpreter_and_imports_mb": round(self.ours.runs[0].start_mb, 2),
            "figures": {f.key: f.as_json() for f in self.figures()},
        }


def _checked(name: str, run: Run, expected: int) -> Run:
    if run.result != expected:
        raise RuntimeError(f"{name} replay ended at count {run.result!r}, expected {expected:,}")
    return run


def run(
    records: int = DEFAULT_RECORDS,
    repeat: int = DEFAULT_REPEAT,
    *,
    cache_dir: Path,
    progress: Progress = lambda _: None,
) -> ReplayResult:
    """Build (or reuse) the data files, then time the three replays ``repeat`` times.

    Every replay runs in a fresh process (see :mod:`benchmarks.measure`), the
    three interleaved. Raises ``RuntimeError`` if any ends at a count other
    than ``records``.
    """
    if records < 1 or repeat < 1:
        raise ValueError(f"records and repeat must be >= 1, got {records} and {repeat}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    ours_path = counter_file(records, cache_dir, progress)
    paths = {
        "ours": ours_path,
        "raw": ours_path,
        "eventsourcing": eventsourcing_file(records, cache_dir, progress),
    }
    # Ten times fewer records, but still many pages: what stays flat is the page-at-a-time read.
    small = min(records, max(records // 10, SMALL_RECORDS_MIN))
    small_path = counter_file(small, cache_dir, progress)
    runs: dict[str, list[Run]] = {name: [] for name in TARGETS}
    for round_ in range(1, repeat + 1):
        progress(f"replaying {records:,} records, repetition {round_} of {repeat}")
        for name, target in TARGETS.items():
            runs[name].append(_checked(name, run_isolated(target, str(paths[name])), records))
    progress(f"replaying {small:,} records (ours, for peak RSS)")
    ours_small = _checked("ours", run_isolated(TARGETS["ours"], str(small_path)), small)
    return ReplayResult(
        records,
        Runs(tuple(runs["ours"])),
        Runs(tuple(runs["raw"])),
        Runs(tuple(runs["eventsourcing"])),
        small,
        ours_small,
    )


# -- command line -----------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The replay benchmark's options."""
    parser.add_argument(
        "--records", type=int, default=None, help=f"stream length (default {DEFAULT_RECORDS:,})"
    )
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="timed repetitions (median reported)"
    )


def main(args: argparse.Namespace, console: Console, progress: Progress) -> dict[str, Any]:
    """Run the replay benchmark from parsed options, print its table, return its JSON."""
    records = args.records or (QUICK_RECORDS if args.quick else DEFAULT_RECORDS)
    result = run(records, args.repeat, cache_dir=args.cache_dir, progress=progress)
    notes = [
        f"events/s: median of {args.repeat} interleaved repetitions, each in a fresh process, "
        "timed from opening the file to holding the final count; raw pipeline = sqlite3 "
        "select + pydantic model_validate_json + plain sum; eventsourcing = "
        "Application.repository.get on its SQLite module.",
        f"on CPU time (less disturbed by other work): ours/raw "
        f"{result.ours.cpu_rate(records) / result.raw.cpu_rate(records):.2f}x, "
        f"ours/eventsourcing "
        f"{result.ours.cpu_rate(records) / result.eventsourcing.cpu_rate(records):.2f}x.",
        "peak RSS: the most any repetition raised its process's peak RSS above the "
        f"interpreter and imports ({result.ours.runs[0].start_mb:.0f} MB); growths under "
        f"{RSS_FLOOR_MB:g} MB count as {RSS_FLOOR_MB:g} MB in ratios.",
    ]
    render(console, f"replay: counter stream of {records:,} records", result.figures(), notes)
    return result.as_json()
