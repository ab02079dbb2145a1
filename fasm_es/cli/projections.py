"""``projections status|run|reset|rebuild|skip``: operate a projection (a read model) on the log.

The projection is named like the machine, ``--projection module:attribute``
(or ``$FASM_ES_PROJECTION``): a :class:`~projections.Projection`, or a
function of no arguments returning one. The event store is ``--db``; the
read model's database is ``--view URL`` (SQLite or PostgreSQL), by default
the event store's own database. The work is done by :class:`projections.Runner`.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from fasm_es.store import redact
from projections import Projection, Runner, SkipRefused, Status
from projections.runner import DEFAULT_BATCH_SIZE, DEFAULT_POLL_INTERVAL

from .loading import import_attribute
from .output import CliError, ExitCode, Output, one_line, usage_error
from .session import DbOption, DebugOption, JsonOption, Session
from .tracked import operator_name

PROJECTION_ENV = "FASM_ES_PROJECTION"
EXAMPLE = "examples.coffee_shop.read_model:points_per_user"

ProjectionOption = Annotated[
    str | None,
    typer.Option(
        "--projection",
        "-p",
        metavar="MODULE:ATTR",
        help=f"A Projection, or a function returning one; default ${PROJECTION_ENV}.",
        show_default=False,
    ),
]
ViewOption = Annotated[
    str | None,
    typer.Option(
        "--view",
        metavar="URL",
        help="The read model's database (sqlite:///views.db, postgresql://...); "
        "default: the event store's database.",
        show_default=False,
    ),
]
BatchOption = Annotated[
    int,
    typer.Option("--batch-size", min=1, metavar="N", help="Records committed per transaction."),
]


def load_projection(spec: str | None) -> Projection:
    """The projection named by ``spec`` or ``$FASM_ES_PROJECTION``.

    Raises :class:`CliError`: exit code 2 when none is named or the spec is
    malformed, 4 when it cannot be imported or is not a projection.
    """
    spec = spec or os.environ.get(PROJECTION_ENV)
    if not spec:
        raise usage_error(
            f"name the projection: pass --projection module:attribute (for example {EXAMPLE}) "
            f"or set {PROJECTION_ENV}"
        )
    found = import_attribute(spec, "--projection", EXAMPLE)
    if not isinstance(found, Projection) and callable(found):
        try:
            found = found()
        except Exception as exc:
            raise CliError(
                ExitCode.MACHINE,
                f"--projection {spec!r}: calling it raised {type(exc).__name__}: {exc}",
            ) from exc
    if not isinstance(found, Projection):
        raise CliError(
            ExitCode.MACHINE,
            f"--projection {spec!r} names a value of type {type(found).__name__}, not a "
            "Projection (or a function returning one)",
        )
    return found


@contextmanager
def running(
    ctx: typer.Context,
    *,
    db: str | None,
    json_: bool,
    projection: str | None,
    view: str | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
) -> Iterator[tuple[Output, Runner]]:
    """A runner for the projection on the session's store and the view database.

    A failure of the view database is a database error (exit code 3) naming
    it; a refused skip is a usage error (exit code 2).
    """
    with Session(ctx, db=db, json_=json_) as session:
        found = load_projection(projection)
        shown = redact(view) if view else session.database.shown
        try:
            with Runner(
                found,
                session.store,
                view or session.database.url,
                batch_size=batch_size,
                poll_interval=poll_interval,
            ) as runner:
                yield session.out, runner
        except SkipRefused as exc:
            raise usage_error(str(exc)) from exc
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            raise CliError(
                ExitCode.DATABASE,
                f"view database {shown}: {type(cause).__name__}: {one_line(str(cause))}",
            ) from exc


def shows_bar(out: Output) -> bool:
    """Whether to draw the runner's progress bar: it goes to stdout, so both must be terminals."""
    return out.shows_progress and out.console.is_terminal


STATUS_LABELS = {
    "projection": "projection",
    "position": "position",
    "head": "head of the log",
    "lag_records": "behind by",
    "lag_seconds": "oldest unapplied",
    "updated_at": "updated at",
    "rebuilding": "rebuilding",
    "skipped": "skipped records",
    "failure": "stopped at",
}


def status_table(found: Status) -> Table:
    """The status for people: one ``label  value`` line per fact that is known."""
    values: dict[str, str | None] = {
        "projection": found.projection,
        "position": f"{found.position:,}",
        "head": f"{found.head:,}",
        "lag_records": f"{found.lag_records:,} records",
        "lag_seconds": (f"accepted {found.lag_seconds:,.1f} s ago" if found.lag_records else None),
        "updated_at": found.updated_at.isoformat() if found.updated_at else None,
        "rebuilding": None if found.rebuilding is None else f"at position {found.rebuilding:,}",
        "skipped": f"{found.skipped:,}" if found.skipped else None,
        "failure": None,
    }
    if found.failure is not None:
        f = found.failure
        values["failure"] = (
            f"position {f.position} (stream {f.stream!r} version {f.version}, "
            f"record type {f.tag}): {f.error}"
        )
    shown = Table(box=None, show_header=False, pad_edge=False)
    shown.add_column(style="dim")
    shown.add_column(overflow="fold")
    for key, label in STATUS_LABELS.items():
        value = values[key]
        if value is not None:
            shown.add_row(label, Text(value))
    return shown


def status(
    ctx: typer.Context,
    projection: ProjectionOption = None,
    view: ViewOption = None,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show a projection's position, the head of the log, its lag, and any failure.

    Exits 1 when the projection is stopped at a record its handler failed on
    (fix the handler and run it again, or skip the record). --json prints one
    JSON document.
    """
    with running(ctx, db=db, json_=json_, projection=projection, view=view) as (out, runner):
        found = runner.status()
    if out.json:
        out.document(found.as_json())
    else:
        out.print(status_table(found))
    if found.failure is not None:
        raise typer.Exit(ExitCode.CHECK_FAILED)


def run(
    ctx: typer.Context,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Keep applying new records until Ctrl-C or SIGTERM."),
    ] = False,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            min=0.01,
            metavar="SECONDS",
            help="With --follow: how often to look for new records when nothing wakes it.",
        ),
    ] = DEFAULT_POLL_INTERVAL,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    projection: ProjectionOption = None,
    view: ViewOption = None,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Apply the records after the projection's position, up to the head of the log.

    Batches commit view rows and position together, so an interrupted run
    loses nothing and applies nothing twice. With --follow it then keeps
    applying new records (woken by PostgreSQL's NOTIFY, else polling) and
    stops cleanly, after the batch in progress, on Ctrl-C or SIGTERM. A
    record whose handler fails stops it there (exit 4), naming the record.
    """
    with running(
        ctx,
        db=db,
        json_=json_,
        projection=projection,
        view=view,
        batch_size=batch_size,
        poll_interval=poll_interval,
    ) as (out, runner):
        if follow:
            with stop_on_signals() as stop:
                if not out.json:
                    out.note(f"following {runner.projection.name}; Ctrl-C stops")
                runner.follow(stop)
            applied = None
        else:
            applied = runner.catch_up(progress=shows_bar(out))
        found = runner.status()
    if out.json:
        out.document({**found.as_json(), "applied": applied})
        return
    done = "stopped following" if applied is None else f"applied {applied:,} records"
    out.text(f"{found.projection}: {done}; position {found.position:,} of {found.head:,}")


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while inside (the previous handlers come back after)."""
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        # Signals reach only the main thread; elsewhere the caller sets the event.
        yield stop
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def reset(
    ctx: typer.Context,
    projection: ProjectionOption = None,
    view: ViewOption = None,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Empty the projection's tables and set its position to 0, in one transaction.

    Readers see an empty view until it is run again; rebuild keeps the old
    view visible meanwhile. --json prints one JSON document.
    """
    with running(ctx, db=db, json_=json_, projection=projection, view=view) as (out, runner):
        runner.reset()
        found = runner.status()
    if out.json:
        out.document(found.as_json())
        return
    out.text(
        f"{found.projection}: emptied, position 0 of {found.head:,} "
        "(fasm-es projections run catches it up again)"
    )


def rebuild(
    ctx: typer.Context,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Discard an interrupted rebuild instead of resuming it."),
    ] = False,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    projection: ProjectionOption = None,
    view: ViewOption = None,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Rebuild the view from the first record into fresh tables, swapped in once caught up.

    Readers keep the old, complete view until the swap, which is one
    transaction. An interrupted rebuild resumes where it stopped unless
    --restart. A record whose handler fails stops it (exit 4) and leaves the
    live view as it was. --json prints one JSON document.
    """
    with running(
        ctx, db=db, json_=json_, projection=projection, view=view, batch_size=batch_size
    ) as (out, runner):
        result = runner.rebuild(restart=restart, progress=shows_bar(out))
        name = runner.projection.name
    if out.json:
        out.document(
            {
                "projection": name,
                "records": result.records,
                "position": result.position,
                "resumed": result.resumed,
            }
        )
        return
    resumed = " (resumed an interrupted rebuild)" if result.resumed else ""
    out.text(
        f"{name}: rebuilt from {result.records:,} records into fresh tables, swapped in at "
        f"position {result.position:,}{resumed}"
    )


def skip(
    ctx: typer.Context,
    position: Annotated[
        int,
        typer.Argument(
            metavar="POSITION", min=1, help="The log position of the record to pass over."
        ),
    ],
    reason: Annotated[
        str,
        typer.Option("--reason", metavar="TEXT", help="Why (written to the skip audit)."),
    ],
    by: Annotated[
        str | None,
        typer.Option("--by", metavar="WHO", help="Who skips it (default: user@host)."),
    ] = None,
    projection: ProjectionOption = None,
    view: ViewOption = None,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Pass over the record the projection stopped at, deliberately, with an audit line.

    Only the next record to apply may be skipped (the one status shows it
    stopped at). The skip is written to fasm_projection_skips, and rebuilds
    pass over it too. --json prints one JSON document.
    """
    with running(ctx, db=db, json_=json_, projection=projection, view=view) as (out, runner):
        done = runner.skip(position, reason, by=by or operator_name())
    if out.json:
        out.document(
            {
                "projection": done.projection,
                "position": done.position,
                "stream": done.stream,
                "version": done.version,
                "tag": done.tag,
                "reason": done.reason,
                "skipped_by": done.skipped_by,
                "skipped_at": done.skipped_at,
            }
        )
        return
    out.text(
        f"{done.projection}: skipped position {done.position} (stream {done.stream!r} "
        f"version {done.version}, record type {done.tag}): {done.reason}"
    )
