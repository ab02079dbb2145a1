"""Snapshots: load a long counter stream with a snapshot near its end, and without one.

Both loads are ``Streams(Counter(), open_store("sqlite:///...")).load(stream)``,
the path a user takes, timed from opening the file to holding the final state:

- **without** (the baseline): the replay benchmark's cached file, which holds
  no snapshot, so the whole stream is folded from its first record;
- **with**: a copy of that file holding one snapshot, taken ``tail`` records
  before the end (by default at 999,000 of 1,000,000) with
  ``SnapshotCodec.for_machine(machine).encode(state)`` and
  ``EventStore.save_snapshot``, so the load reads the snapshot and folds only
  the tail.

The copy is made once per size with SQLite's backup API (the original stays
snapshot-free for the other benchmarks) and cached beside it. Every load runs
in a fresh process; the repetitions alternate (without, with, without, ...)
and each time is the median. Each load must end at the same count, and the
one with the snapshot must have started from it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.measure import Run, Runs, run_isolated
from benchmarks.replay import QUICK_RECORDS, STREAM, counter_file
from benchmarks.report import Figure, render
from examples.counter import Counter
from fasm_es import FasmError, Streams, open_store
from fasm_es.snapshot import SnapshotCodec

DEFAULT_RECORDS = 1_000_000
DEFAULT_TAIL = 1_000
DEFAULT_REPEAT = 3

Progress = Callable[[str], None]


# -- the data file ------------------------------------------------------------------------


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _discard(path: Path) -> None:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)


def _snapshot_file_complete(path: Path, records: int, at: int) -> bool:
    try:
        with open_store(_sqlite_url(path)) as store:
            snapshot = store.load_snapshot(STREAM)
            return store.last_version(STREAM) == records and (
                snapshot is not None and snapshot.version == at
            )
    except FasmError:
        return False


def snapshot_file(records: int, tail: int, cache_dir: Path, progress: Progress) -> Path:
    """A copy of the cached ``records``-record counter file with one snapshot at ``records - tail``.

    Built once and cached; the original file is left without snapshots.
    """
    if not 0 <= tail < records:
        raise ValueError(f"tail must be >= 0 and below records ({records:,}), got {tail:,}")
    source = counter_file(records, cache_dir, progress)
    at = records - tail
    path = source.with_name(f"{source.stem}-snapshot-{at}.db")
    if path.exists() and _snapshot_file_complete(path, records, at):
        return path
    progress(f"building {path.name}: a copy of {source.name} with a snapshot at {at:,}")
    building = path.with_name(path.name + ".building")
    _discard(building)
    # The backup API copies a consistent image even while another process reads the source.
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as original,
        closing(sqlite3.connect(building)) as copy,
    ):
        original.backup(copy)
    machine = Counter()
    with open_store(_sqlite_url(building)) as store:
        state = Streams(machine, store).load(STREAM, at=at)
        store.save_snapshot(SnapshotCodec.for_machine(machine).encode(state))
    _discard(path)
    os.replace(building, path)
    return path


# -- the load (run in a fresh process) ---------------------------------------------------


def load_counter(path: str) -> list[int]:
    """Load the counter stream in the file at ``path``: [final count, snapshot version used]."""
    with open_store(_sqlite_url(Path(path))) as store:
        loaded = Streams(Counter(), store).load(STREAM)
    return [loaded.state.value, loaded.snapshot_version]


# -- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotsResult:
    """What one run of the snapshots benchmark measured."""

    records: int
    snapshot_at: int
    without: Runs
    with_snapshot: Runs

    @property
    def speedup(self) -> float:
        """How many times faster the load with the snapshot is (median wall-clock times)."""
        return self.without.median_seconds / self.with_snapshot.median_seconds

    def figures(self) -> list[Figure]:
        """The load with the snapshot beside the full fold, as stream records per second.

        Both rates divide the same stream length by the load's time, so their
        ratio is the speed-up.
        """
        n = self.records
        return [
            Figure(
                "load_with_snapshot",
                f"load {n:,} records, snapshot at {self.snapshot_at:,}",
                "records/s",
                self.with_snapshot.rate(n),
                "fold from record 1",
                self.without.rate(n),
            )
        ]

    def as_json(self) -> dict[str, Any]:
        """Times, the speed-up and per-repetition seconds as plain JSON values."""
        named = {"with_snapshot": self.with_snapshot, "without": self.without}
        return {
            "records": self.records,
            "snapshot_at": self.snapshot_at,
            "repeat": len(self.without.runs),
            "median_ms": {name: round(r.median_seconds * 1e3, 2) for name, r in named.items()},
            "speedup": round(self.speedup, 1),
            "seconds": {name: r.seconds for name, r in named.items()},
            "peak_rss_growth_mb": {name: round(r.growth_mb, 2) for name, r in named.items()},
            "figures": {f.key: f.as_json() for f in self.figures()},
        }


def _checked(name: str, run: Run, records: int, snapshot_version: int) -> Run:
    if run.result != [records, snapshot_version]:
        raise RuntimeError(
            f"load {name} ended at [count, snapshot version] {run.result!r}, "
            f"expected {[records, snapshot_version]!r}"
        )
    return run


def run(
    records: int = DEFAULT_RECORDS,
    tail: int = DEFAULT_TAIL,
    repeat: int = DEFAULT_REPEAT,
    *,
    cache_dir: Path,
    progress: Progress = lambda _: None,
) -> SnapshotsResult:
    """Build (or reuse) both files, then time the two loads ``repeat`` times, alternating.

    Raises ``RuntimeError`` if a load ends at another count, or the load
    with the snapshot did not start from it (or the other did).
    """
    if records < 1 or repeat < 1:
        raise ValueError(f"records and repeat must be >= 1, got {records} and {repeat}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    plain = counter_file(records, cache_dir, progress)
    snapshotted = snapshot_file(records, tail, cache_dir, progress)
    at = records - tail
    target = "benchmarks.snapshots:load_counter"
    without: list[Run] = []
    with_snapshot: list[Run] = []
    for round_ in range(1, repeat + 1):
        progress(f"loading {records:,} records with and without a snapshot, {round_} of {repeat}")
        without.append(_checked("without", run_isolated(target, str(plain)), records, 0))
        with_snapshot.append(
            _checked("with the snapshot", run_isolated(target, str(snapshotted)), records, at)
        )
    return SnapshotsResult(records, at, Runs(tuple(without)), Runs(tuple(with_snapshot)))


# -- command line -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The snapshots benchmark's options."""
    parser.add_argument(
        "--records", type=int, default=None, help=f"stream length (default {DEFAULT_RECORDS:,})"
    )
    parser.add_argument(
        "--tail",
        type=int,
        default=DEFAULT_TAIL,
        help=f"records after the snapshot (default {DEFAULT_TAIL:,})",
    )
    parser.add_argument(
        "--repeat", type=int, default=DEFAULT_REPEAT, help="timed repetitions (median reported)"
    )


def main(args: argparse.Namespace, console: Console, progress: Progress) -> dict[str, Any]:
    """Run the snapshots benchmark from parsed options, print its table, return its JSON."""
    records = args.records or (QUICK_RECORDS if args.quick else DEFAULT_RECORDS)
    tail = min(args.tail, records - 1)
    result = run(records, tail, args.repeat, cache_dir=args.cache_dir, progress=progress)
    notes = [
        f"load times (median of {args.repeat} alternating repetitions, each in a fresh process, "
        "from opening the file to holding the final state): with the snapshot "
        f"{result.with_snapshot.median_seconds * 1e3:,.1f} ms, folding from record 1 "
        f"{result.without.median_seconds * 1e3:,.1f} ms: {result.speedup:,.1f}x faster. "
        "records/s = stream length / load time, so the ratio is the speed-up.",
        f"the snapshot holds the state, version, last chain hash and tracked ids; "
        f"the load reads it and folds the last {records - result.snapshot_at:,} records.",
    ]
    render(console, f"snapshots: counter stream of {records:,} records", result.figures(), notes)
    return result.as_json()
