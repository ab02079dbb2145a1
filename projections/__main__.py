"""Command line: run and operate one projection in its own process.

::

    python -m projections run     package.module:projection [--follow]
    python -m projections status  package.module:projection [--json]
    python -m projections reset   package.module:projection
    python -m projections rebuild package.module:projection [--restart] [--no-progress]
    python -m projections skip    package.module:projection POSITION --reason TEXT [--by WHO]

``package.module:projection`` names a :class:`~projections.Projection` (or a
function of no arguments returning one). ``--store`` is the event store's URL
(default: ``$FASM_ES_DATABASE_URL``), ``--view`` the read-model database's
(default: the store's). ``run --follow`` stops cleanly on SIGINT or SIGTERM
after the batch in progress. Exit status: 0 done, 1 a record failed (the
message names it), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from fasm_es.errors import FasmError
from fasm_es.store import open_store
from projections.definition import Projection
from projections.errors import ProjectionFailed
from projections.runner import DEFAULT_BATCH_SIZE, DEFAULT_POLL_INTERVAL, Runner


def load(target: str) -> Projection:
    """The projection named ``module:attribute`` (called first if it is a function)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"error: {target!r} is not module:attribute (e.g. shop.views:points)")
    found: Any = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(found, Projection) and callable(found):
        found = found()
    if not isinstance(found, Projection):
        raise SystemExit(f"error: {target!r} is {type(found).__name__}, not a Projection")
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m projections", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument("projection", help="module:attribute naming the projection")
        sub.add_argument("--store", default=None, help="event store URL")
        sub.add_argument("--view", default=None, help="view database URL (default: the store's)")
        sub.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
        return sub

    run = command("run", "catch up (and with --follow, keep following the log)")
    run.add_argument("--follow", action="store_true", help="keep applying new records")
    run.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL)
    status = command("status", "position, head of the log, lag, failure")
    status.add_argument("--json", action="store_true", help="one JSON object")
    command("reset", "empty the view and set its position to 0")
    rebuild = command("rebuild", "rebuild into fresh tables, swapped in once caught up")
    rebuild.add_argument("--restart", action="store_true", help="discard an interrupted rebuild")
    rebuild.add_argument("--no-progress", action="store_true", help="no progress bar")
    skip = command("skip", "skip the record the projection stopped at, with an audit line")
    skip.add_argument("position", type=int)
    skip.add_argument("--reason", required=True)
    skip.add_argument("--by", default=None, help="who skips it (for the audit)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; see the module docstring."""
    args = _parser().parse_args(argv)
    projection = load(args.projection)
    try:
        store = open_store(args.store)
        runner = Runner(
            projection,
            store,
            args.view,
            batch_size=args.batch_size,
            poll_interval=getattr(args, "poll_interval", DEFAULT_POLL_INTERVAL),
        )
    except FasmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(args, runner)
    except ProjectionFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        runner.close()
        store.close()


def _run(args: argparse.Namespace, runner: Runner) -> int:
    if args.command == "run":
        if not args.follow:
            print(f"applied {runner.catch_up():,} records")
            return 0
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        runner.follow(stop)
        return 0
    if args.command == "status":
        found = runner.status()
        if args.json:
            print(json.dumps(found.as_json()))
        else:
            for key, value in found.as_json().items():
                print(f"{key:>12}: {value}")
        return 0
    if args.command == "reset":
        runner.reset()
        print(f"{runner.projection.name}: emptied, position 0")
        return 0
    if args.command == "rebuild":
        result = runner.rebuild(restart=args.restart, progress=not args.no_progress)
        print(f"{runner.projection.name}: rebuilt up to position {result.position:,}")
        return 0
    skipped = runner.skip(args.position, args.reason, by=args.by)
    print(
        f"{runner.projection.name}: skipped position {skipped.position} "
        f"(stream {skipped.stream!r} version {skipped.version}): {skipped.reason}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
