"""Looking at a log: ``streams``, ``log STREAM`` and ``state STREAM [--at VERSION]``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.json import JSON

from fasm_es.errors import RecordDecodeError
from fasm_es.record import Codec, RawRecord
from fasm_es.store import EventStore

from .output import Column, compact, plural, usage_error
from .session import DbOption, DebugOption, JsonOption, MachineOption, Session
from .views import raw_view, record_block, record_view, type_name

StreamArgument = Annotated[
    str, typer.Argument(metavar="STREAM", help="The stream id.", show_default=False)
]

STREAM_COLUMNS = [
    Column("stream", "stream"),
    Column("version", "version", "right"),
    Column("position", "last position", "right"),
    Column("accepted_at", "last accepted at"),
    Column("actor", "last actor"),
]


def record_at(store: EventStore, stream: str, version: int) -> RawRecord:
    """The stored record ``version`` of ``stream`` (which must exist)."""
    return next(iter(store.read_stream(stream, after=version - 1, upto=version)))


def stream_summary(store: EventStore, stream: str) -> dict[str, Any]:
    """A stream's version, and the position, time and actor of its newest record."""
    version = store.last_version(stream)
    view: dict[str, Any] = {}
    if version:
        newest = record_at(store, stream, version)
        try:
            view = raw_view(newest)
        except RecordDecodeError:
            # An encrypted body read without its key: the listing still stands.
            view = {"position": newest.position}
    return {
        "stream": stream,
        "version": version,
        "position": view.get("position"),
        "accepted_at": view.get("accepted_at"),
        "actor": view.get("actor"),
    }


def streams(
    ctx: typer.Context,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List every stream with its version and its newest record's position, time and actor.

    --json prints one JSON object per stream per line.
    """
    with Session(ctx, db=db, json_=json_) as session:
        store, out = session.store, session.out
        total = sum(1 for _ in store.streams()) if out.shows_progress else None
        with out.progress("reading streams", total) as meter:

            def summaries() -> Iterator[dict[str, Any]]:
                for name in store.streams():
                    yield stream_summary(store, name)
                    meter.advance()

            count = out.rows(summaries(), STREAM_COLUMNS)
        if not out.json:
            records = store.last_position()
            out.text(
                f"{plural(count, 'stream')} in {session.database.shown}"
                if count
                else f"no streams in {session.database.shown}: the store is empty"
            )
            if count:
                out.text(f"newest global position {records}")


def log(
    ctx: typer.Context,
    stream: StreamArgument,
    after: Annotated[
        int, typer.Option(min=0, metavar="VERSION", help="Show records after this version.")
    ] = 0,
    upto: Annotated[
        int | None,
        typer.Option(min=1, metavar="VERSION", help="Show records up to this version."),
    ] = None,
    db: DbOption = None,
    machine: MachineOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show a stream's records: version, position, metadata, input and the actions it emitted.

    Without --machine the stored JSON is shown as it is; with --machine each
    record is decoded through the machine's types (old records upcast, models
    named). --json prints one JSON object per record per line.
    """
    with Session(ctx, db=db, machine=machine, json_=json_) as session:
        version = session.require_stream(stream)
        found = session.optional_machine()
        codec: Codec[Any, Any, Any, Any] | None = (
            Codec(found.types, found.schema) if found is not None else None
        )
        raws = session.store.read_stream(stream, after=after, upto=upto)
        out = session.out
        width = out.console.width
        count = out.blocks(
            (record_view(raw, codec) for raw in raws), lambda view: record_block(view, width)
        )
        if not session.out.json:
            shown = (
                f"{count} of {plural(version, 'record')}"
                if count != version
                else plural(count, "record")
            )
            how = f"decoded by {found.name}" if found is not None else "as stored"
            session.out.text(f"stream {stream!r}: {shown}, {how}")


def state(
    ctx: typer.Context,
    stream: StreamArgument,
    at: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="VERSION",
            help="Show the state after this version (time travel); default the newest.",
        ),
    ] = None,
    db: DbOption = None,
    machine: MachineOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show a stream's state, now or after any earlier version, and its outstanding actions.

    The state is folded with the current code from the newest snapshot at or
    before that version. --json prints one JSON document.
    """
    with Session(ctx, db=db, machine=machine, json_=json_) as session:
        last = session.require_stream(stream)
        if at is not None and at > last:
            raise usage_error(
                f"stream {stream!r} has {last} records: --at must be from 0 to {last}"
            )
        current = session.load(stream, at=at)
        newest = (
            raw_view(record_at(session.store, stream, current.version)) if current.version else {}
        )
        outstanding = [
            {"id": action_id, "type": type_name(action), "action": action}
            for action_id, action in current.outstanding.items()
        ]
        report = {
            "stream": stream,
            "version": current.version,
            "last_version": last,
            "accepted_at": newest.get("accepted_at"),
            "actor": newest.get("actor"),
            "state": current.state,
            "outstanding": outstanding,
        }
        out = session.out
        if out.json:
            out.document(report)
            return
        when = (
            f", accepted {newest['accepted_at']}"
            + (f" from {newest['actor']}" if newest.get("actor") else "")
            if newest
            else " (the initial state)"
        )
        out.text(f"stream {stream!r} at version {current.version} of {last}{when}")
        out.print(JSON(compact(current.state)))
        if outstanding:
            out.text(f"{plural(len(outstanding), 'outstanding tracked action')}:")
            for item in outstanding:
                shown = f"{item['type']} " if item["type"] else ""
                out.text(f"  #{item['id']} {shown}{compact(item['action'])}")
