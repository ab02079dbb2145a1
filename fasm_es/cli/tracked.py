"""Tracked actions: ``outstanding`` from the log; ``stuck`` and ``retry`` through the engines.

``stuck`` and ``retry`` work through the documents a running engine keeps in
the store (:mod:`fasm_es.stuck`): the stuck list it saves, and the retry
requests it reads every few seconds. The command line never dispatches an
action itself.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from fasm_es.outstanding import StoreCheckpoints
from fasm_es.stuck import (
    RetryRequest,
    StuckEntry,
    StuckList,
    read_retry_requests,
    read_stuck,
    request_retry,
)

from .output import CliError, Column, ExitCode, compact, plural, usage_error
from .session import DbOption, DebugOption, JsonOption, MachineOption, Session
from .views import type_name

StreamsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[STREAM]...",
        help="Only these streams (default: every stream).",
        show_default=False,
    ),
]

OUTSTANDING_COLUMNS = [
    Column("stream", "stream"),
    Column("id", "action id", "right"),
    Column("type", "type"),
    Column("action", "action", show=compact),
    Column("version", "stream version", "right"),
]


def outstanding(
    ctx: typer.Context,
    streams: StreamsArgument = None,
    db: DbOption = None,
    machine: MachineOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List the tracked actions the log shows as emitted and not yet completed, per stream.

    These are what restore re-issues by default after a crash. Each stream is
    folded with the machine (from its newest snapshot), one at a time.
    --json prints one JSON object per outstanding action per line.
    """
    with Session(ctx, db=db, machine=machine, json_=json_) as session:
        found, out = session.machine(), session.out
        chosen, total = session.chosen_streams(streams)
        if not found.types.declares_tracked:
            if not out.json:
                out.text(
                    f"machine {found.name} declares no tracked actions: none can be outstanding"
                )
            return
        folded = with_outstanding = 0
        with out.progress("folding streams", total) as meter:

            def rows() -> Iterator[dict[str, Any]]:
                nonlocal folded, with_outstanding
                for name in chosen:
                    meter.note(f"folding {name}")
                    current = session.load(name)
                    folded += 1
                    with_outstanding += bool(current.outstanding)
                    for action_id, action in current.outstanding.items():
                        yield {
                            "stream": name,
                            "id": action_id,
                            "type": type_name(action),
                            "action": action,
                            "version": current.version,
                        }
                    meter.advance()

            count = out.rows(rows(), OUTSTANDING_COLUMNS)
        if not out.json:
            out.text(
                f"{plural(count, 'outstanding tracked action')} in {with_outstanding} of "
                f"{plural(folded, 'stream')}"
            )


# -- stuck and retry -------------------------------------------------------------------

STUCK_COLUMNS = [
    Column("stream", "stream"),
    Column("id", "action id", "right"),
    Column("type", "type"),
    Column("action", "action", show=compact),
    Column("attempts", "attempts", "right"),
    Column("since", "stuck since", show=lambda iso: short_time(datetime.fromisoformat(iso))),
    Column("last_error", "last error"),
    Column("retry_requested", "retry", show=lambda n: "" if n is None else f"requested #{n}"),
]


def short_time(when: datetime) -> str:
    """A time for people: UTC, to the second (``2024-05-01T09:14:41Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def saved_stuck(session: Session) -> StuckList:
    """The stuck list the engines saved in the session's store (exit code 3 if unreadable)."""
    try:
        return read_stuck(StoreCheckpoints(session.store))
    except ValueError as exc:
        raise CliError(
            ExitCode.DATABASE,
            f"{exc} in {session.database.shown} (a running engine rewrites it when its stuck "
            "actions change, or at its next start)",
        ) from exc


def saved_requests(session: Session) -> list[RetryRequest]:
    """The retry requests kept in the store; an unreadable document counts as none."""
    try:
        return read_retry_requests(StoreCheckpoints(session.store))[1]
    except ValueError:
        return []


def pending_request(
    entry: StuckEntry, requests: Sequence[RetryRequest], saved: StuckList
) -> int | None:
    """The number of a retry request for ``entry`` that no engine has carried out yet, if any.

    Only requests made since the action got stuck count: an older one was
    answered by a dispatch (a retry or a restart) before it got stuck again.
    """
    done = {r.request for r in saved.retried if (r.stream, r.action_id) == entry.key}
    for request in reversed(requests):
        if (
            request.covers(entry.stream, entry.action_id)
            and request.number not in done
            and request.requested_at >= entry.since
        ):
            return request.number
    return None


def stuck(
    ctx: typer.Context,
    streams: StreamsArgument = None,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List tracked actions whose handler kept failing, as the running engines saved them.

    An engine saves its stuck actions in the store when they change (every
    few seconds at most), so this works from any machine that reaches the
    database. Each stays outstanding in the log until retried (fasm-es
    retry) or completed. --json prints one JSON object per stuck action per line.
    """
    with Session(ctx, db=db, json_=json_) as session:
        out = session.out
        for name in streams or ():
            session.require_stream(name)
        saved = saved_stuck(session)
        requests = saved_requests(session)
        rows = [
            {**entry.as_json(), "retry_requested": pending_request(entry, requests, saved)}
            for entry in saved.entries
            if not streams or entry.stream in streams
        ]
        count = out.rows(rows, STUCK_COLUMNS)
        if out.json:
            return
        if saved.revision == 0:
            out.text(
                f"no stuck tracked actions: no engine has saved a stuck list in "
                f"{session.database.shown} (a running engine saves one when an action gets stuck)"
            )
            return
        when = short_time(saved.saved_at) if saved.saved_at else "an unknown time"
        out.text(
            f"{plural(count, 'stuck tracked action')} (list saved at {when} by {saved.saved_by})"
        )
        waiting = sum(row["retry_requested"] is not None for row in rows)
        if waiting:
            out.text(f"{waiting} with a retry requested that no running engine has picked up yet")


ActionIdArgument = Annotated[
    str | None,
    typer.Argument(metavar="ID", help="The tracked action's id.", show_default=False),
]


def retry(
    ctx: typer.Context,
    stream: Annotated[
        str | None,
        typer.Argument(metavar="STREAM", help="The action's stream.", show_default=False),
    ] = None,
    action_id: ActionIdArgument = None,
    every: Annotated[
        bool, typer.Option("--all", help="Retry every action the stuck list holds.")
    ] = False,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Ask the running engines to dispatch a stuck tracked action again (or every one, --all).

    The request is saved in the store; within a few seconds the engine that
    holds the action as stuck dispatches it again, with the same idempotency
    key and a fresh count of attempts. Only actions in the stuck list (fasm-es
    stuck) can be named. --json prints the request as one JSON document.
    """
    if every and (stream is not None or action_id is not None):
        raise usage_error("give either STREAM ID or --all, not both")
    if not every and (stream is None or action_id is None):
        raise usage_error(
            "name the stuck action: fasm-es retry STREAM ID (or --all for every one; "
            "fasm-es stuck lists them)"
        )
    with Session(ctx, db=db, json_=json_) as session:
        out = session.out
        if stream is not None:
            session.require_stream(stream)
        saved = saved_stuck(session)
        if every:
            targets = list(saved.entries)
        else:
            targets = [
                e for e in saved.entries if e.stream == stream and str(e.action_id) == action_id
            ]
            if not targets:
                raise usage_error(
                    f"tracked action {stream}/{action_id} is not in the stuck list saved in "
                    f"{session.database.shown} (fasm-es stuck lists the stuck actions; one "
                    "still being retried by its engine is not stuck yet)"
                )
        if not targets:
            if out.json:
                out.document({"request": None, "all": True, "targets": []})
            else:
                out.text(f"no stuck tracked actions in {session.database.shown}: nothing to retry")
            return
        request = request_retry(
            StoreCheckpoints(session.store),
            None if every else stream,
            None if every else targets[0].action_id,
            at=datetime.now(UTC),
            by=operator_name(),
        )
        if out.json:
            out.document(
                {
                    "request": request.number,
                    "all": request.every,
                    "requested_at": request.requested_at,
                    "requested_by": request.requested_by,
                    "targets": [entry.as_json() for entry in targets],
                }
            )
            return
        what = "every stuck tracked action" if every else "a stuck tracked action"
        out.text(f"retry of {what} requested (request #{request.number}):")
        for entry in targets:
            out.text(
                f"  {entry.stream}/{entry.action_id} {entry.type}, stuck after "
                f"{plural(entry.attempts, 'attempt')}: {entry.last_error}"
            )
        them = "it" if len(targets) == 1 else "them"
        out.text(
            f"a running engine dispatches {them} again within a few seconds; "
            f"fasm-es stuck shows whether {them} got stuck again"
        )


def operator_name() -> str | None:
    """``user@host`` of whoever runs the command, for audit lines (None if unknown)."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (OSError, KeyError):
        return None
