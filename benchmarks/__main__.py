"""Command line: ``python -m benchmarks [--quick] [--cache-dir DIR] [NAME [options]]``.

With no NAME every benchmark runs with its defaults. Tables go to standard
output, progress to standard error, and the last line of standard output is
one JSON object with every result.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import (
    multiprocess,
    pg_append,
    projections,
    replay,
    simulation,
    snapshots,
    submit,
)
from benchmarks.report import json_line

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / ".bench"


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A benchmark the command line can run: its options and its entry point."""

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace, Console, Callable[[str], None]], dict[str, Any]]


BENCHMARKS = (
    Benchmark(
        "replay",
        "fold a long counter stream from SQLite vs a raw pipeline and eventsourcing",
        replay.add_arguments,
        replay.main,
    ),
    Benchmark(
        "submit",
        "durable submits/s through the engine (group commit) vs eventsourcing, one event per save",
        submit.add_arguments,
        submit.main,
    ),
    Benchmark(
        "projections",
        "projection catch-up into a SQLAlchemy table vs raw driver + executemany",
        projections.add_arguments,
        projections.main,
    ),
    Benchmark(
        "snapshots",
        "load a long counter stream from a snapshot near its end vs folding it from record 1",
        snapshots.add_arguments,
        snapshots.main,
    ),
    Benchmark(
        "pg-append",
        "PostgreSQL appends in batches through EventStore.append vs psycopg executemany",
        pg_append.add_arguments,
        pg_append.main,
    ),
    Benchmark(
        "simulate",
        "simulation steps/s with every fault and check on vs a bare loop calling the STF",
        simulation.add_arguments,
        simulation.main,
    ),
    Benchmark(
        "multiprocess",
        "durable submits/s on PostgreSQL from 3 partitioned engine processes vs 1",
        multiprocess.add_arguments,
        multiprocess.main,
    ),
)


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # In a subcommand the defaults are suppressed so that they do not overwrite
    # the same options given before the subcommand's name.
    parser.add_argument(
        "--quick",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="a small, fast smoke run",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=argparse.SUPPRESS if suppress else DEFAULT_CACHE_DIR,
        help="where generated data files are kept (default: .bench/ in the repository)",
    )


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each benchmark's subcommand parser."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="fasm-es benchmarks: each figure beside a baseline measured in the same run",
    )
    _add_common(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="NAME")
    subparsers = {}
    for bench in BENCHMARKS:
        sub = commands.add_parser(bench.name, help=bench.summary, description=bench.summary)
        bench.add_arguments(sub)
        _add_common(sub, suppress=True)
        subparsers[bench.name] = sub
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks (all of them by default); 0 when they ran."""
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    chosen = [b for b in BENCHMARKS if args.command in (None, b.name)]
    out = Console(width=None if sys.stdout.isatty() else 140)
    err = Console(stderr=True)

    def progress(message: str) -> None:
        err.print(f"[dim]... {message}[/]", highlight=False)

    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for bench in chosen:
        options = args
        if args.command is None:
            options = subparsers[bench.name].parse_args([])
            options.quick, options.cache_dir = args.quick, args.cache_dir
        results[bench.name] = bench.main(options, out, progress)
    elapsed = time.perf_counter() - started
    out.print(f"whole run: {elapsed:.0f} s", highlight=False)
    print(json_line(results, elapsed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
