"""Submit: durable submits/s through the engine, beside eventsourcing saving one event per call.

- **ours**: one :class:`~fasm_es.Engine` for the counter machine on a fresh
  SQLite file; ``concurrency`` coroutines submit ``Increment(by=1)`` over
  ``streams`` streams (round robin) until ``records`` inputs are committed.
  Every submit returns only once its record is durable (group commit shares
  one transaction among the submits queued together). Latency is measured
  per submit, from the call to the committed record.
- **eventsourcing**: the ``eventsourcing`` library's ``Application`` with its
  SQLite persistence module on a fresh file of the same kind (same durability
  settings), saving one aggregate event per call over the same number of
  aggregates (the first call of each creates it). That library has no
  asyncio and one writer per file, so it is driven by one caller: more
  threads would only queue on the same lock.

Both stores are SQLite in WAL mode with ``synchronous=FULL``: a save returns
after its transaction is on disk. Repetitions alternate (ours, eventsourcing,
ours, ...) so a noisy neighbour slows both alike; each rate is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from rich.console import Console

from benchmarks.report import Figure, Goal, render
from examples.counter import Counter, Increment
from fasm_es import Engine

DEFAULT_RECORDS = 50_000
DEFAULT_STREAMS = 10_000
DEFAULT_CONCURRENCY = 256
DEFAULT_BASELINE_CALLS = 2_000
DEFAULT_REPEAT = 3
QUICK = {"records": 5_000, "streams": 1_000, "baseline_calls": 300, "repeat": 1}

THROUGHPUT_GOAL = Goal(at_least=10.0)

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run: how many calls, how long in all, and each call's latency."""

    calls: int
    seconds: float
    latencies: tuple[float, ...]

    @property
    def rate(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds


def _fresh(path: Path) -> Path:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    return path


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]


# -- ours -----------------------------------------------------------------------------


async def _submit_all(path: Path, records: int, streams: int, concurrency: int) -> Run:
    latencies: list[float] = []
    next_index = iter(range(records))
    async with Engine(Counter(), f"sqlite:///{path}") as engine:

        async def submitter() -> None:
            for i in next_index:
                began = time.perf_counter()
                await engine.submit(f"counter-{i % streams}", Increment(by=1))
                latencies.append(time.perf_counter() - began)

        started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        committed = engine.stats().commits.committed
    if committed != records:
        raise RuntimeError(f"the engine committed {committed:,} inputs, expected {records:,}")
    return Run(records, seconds, tuple(latencies))


def submit_ours(path: Path, records: int, streams: int, concurrency: int) -> Run:
    """Submit ``records`` inputs over ``streams`` streams from ``concurrency`` coroutines."""
    return asyncio.run(_submit_all(_fresh(path), records, streams, concurrency))


# -- eventsourcing ----------------------------------------------------------------------


class Tally(Aggregate):
    """The counter as an ``eventsourcing`` aggregate."""

    def __init__(self) -> None:
        self.value = 1

    @event("Incremented")
    def increment(self, by: int) -> None:
        """Add ``by``; recorded as an ``Incremented`` event."""
        self.value += by


def save_eventsourcing(path: Path, calls: int, aggregates: int) -> Run:
    """``calls`` saves of one event each, over ``aggregates`` aggregates, on a fresh file."""
    app: Application[Any] = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(_fresh(path)),
            "IS_SNAPSHOTTING_ENABLED": "n",
        }
    )
    tallies: dict[int, Tally] = {}
    latencies: list[float] = []
    try:
        started = time.perf_counter()
        for i in range(calls):
            began = time.perf_counter()
            tally = tallies.get(i % aggregates)
            if tally is None:
                tally = tallies[i % aggregates] = Tally()
            else:
                tally.increment(by=1)
            app.save(tally)
            latencies.append(time.perf_counter() - began)
        seconds = time.perf_counter() - started
    finally:
        app.close()
    return Run(calls, seconds, tuple(latencies))


# -- the benchmark ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What one run of the submit benchmark measured."""

    records: int
    streams: int
    concurrency: int
    ours: tuple[Run, ...]
    eventsourcing: tuple[Run, ...]

    @property
    def ours_rate(self) -> float:
        """Our median submits per second."""
        return statistics.median(r.rate for r in self.ours)

    @property
    def eventsourcing_rate(self) -> float:
        """eventsourcing's median saves per second."""
        return statistics.median(r.rate for r in self.eventsourcing)

    def latency_us(self, which: str, fraction: float) -> float:
        """A latency percentile over every call of every repetition, in microseconds."""
        runs = self.ours if which == "ours" else self.eventsourcing
        return percentile([x for r in runs for x in r.latencies], fraction) * 1e6

    def figures(self) -> list[Figure]:
        """The figures beside their baselines, with the goal they are held to."""
        label = f"durable submits, {self.concurrency} callers, {self.streams:,} streams"
        es = "eventsourcing save, 1 event/call"
        return [
            Figure("submit_throughput", label, "submits/s", self.ours_rate,
                   es, self.eventsourcing_rate, THROUGHPUT_GOAL),
            Figure("submit_latency_p50", "submit latency p50", "µs",
                   self.latency_us("ours", 0.5), es + " p50",
                   self.latency_us("eventsourcing", 0.5)),
            Figure("submit_latency_p99", "submit latency p99", "µs",
                   self.latency_us("ours", 0.99), es + " p99",
                   self.latency_us("eventsourcing", 0.99)),
        ]  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        """Rates, latencies and per-repetition seconds as plain JSON values."""
        return {
            "records": self.records,
            "streams": self.streams,
            "concurrency": self.concurrency,
            "baseline_calls": self.eventsourcing[0].calls,
            "repeat": len(self.ours),
            "per_s": {
                "ours": round(self.ours_rate),
                "eventsourcing": round(self.eventsourcing_rate),
            },
            "latency_us": {
                name: {
                    "p50": round(self.latency_us(name, 0.5)),
                    "p99": round(self.latency_us(name, 0.99)),
                }
                for name in ("ours", "eventsourcing")
            },
            "seconds": {
                "ours": [round(r.seconds, 3) for r in self.ours],
                "eventsourcing": [round(r.seconds, 3) for r in self.eventsourcing],
            },
            "figures": {f.key: f.as_json() for f in self.figures()},
        }


def run(
    records: int = DEFAULT_RECORDS,
    streams: int = DEFAULT_STREAMS,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    baseline_calls: int = DEFAULT_BASELINE_CALLS,
    repeat: int = DEFAULT_REPEAT,
    cache_dir: Path,
    progress: Progress = lambda _: None,
) -> SubmitResult:
    """Time our submits and eventsourcing's saves ``repeat`` times each, alternating."""
    if min(records, streams, concurrency, baseline_calls, repeat) < 1:
        raise ValueError("records, streams, concurrency, baseline_calls and repeat must be >= 1")
    cache_dir.mkdir(parents=True, exist_ok=True)
    ours: list[Run] = []
    theirs: list[Run] = []
    for round_ in range(1, repeat + 1):
        progress(
            f"submit {records:,} inputs over {streams:,} streams from {concurrency} "
            f"callers, repetition {round_} of {repeat}"
        )
        ours.append(submit_ours(cache_dir / "submit-ours.db", records, streams, concurrency))
        progress(f"eventsourcing: {baseline_calls:,} saves of one event, repetition {round_}")
        theirs.append(
            save_eventsourcing(cache_dir / "submit-eventsourcing.db", baseline_calls, streams)
        )
    for name in ("submit-ours.db", "submit-eventsourcing.db"):
        _fresh(cache_dir / name)
    return SubmitResult(records, streams, concurrency, tuple(ours), tuple(theirs))


# -- command line -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The submit benchmark's options."""
    parser.add_argument("--records", type=int, default=None, help="inputs submitted per run")
    parser.add_argument("--streams", type=int, default=None, help="streams they spread over")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="concurrent submitters"
    )
    parser.add_argument(
        "--baseline-calls", type=int, default=None, help="eventsourcing saves timed per run"
    )
    parser.add_argument("--repeat", type=int, default=None, help="alternating repetitions")


def main(args: argparse.Namespace, console: Console, progress: Progress) -> dict[str, Any]:
    """Run the submit benchmark from parsed options, print its table, return its JSON."""
    defaults: dict[str, int] = (
        QUICK
        if args.quick
        else {
            "records": DEFAULT_RECORDS,
            "streams": DEFAULT_STREAMS,
            "baseline_calls": DEFAULT_BASELINE_CALLS,
            "repeat": DEFAULT_REPEAT,
        }
    )
    result = run(
        args.records or defaults["records"],
        args.streams or defaults["streams"],
        args.concurrency,
        baseline_calls=args.baseline_calls or defaults["baseline_calls"],
        repeat=args.repeat or defaults["repeat"],
        cache_dir=args.cache_dir,
        progress=progress,
    )
    render(
        console,
        "Submit: durable inputs per second on a SQLite file",
        result.figures(),
        [
            f"ours: {result.records:,} submits through one Engine (group commit), each "
            "returning once its record is on disk; the first submit to each stream loads it. "
            f"eventsourcing: {result.eventsourcing[0].calls:,} Application.save calls of one "
            "event each, one caller. Rates are medians of alternating repetitions; latency "
            "percentiles pool every call.",
        ],
    )
    return result.as_json()
