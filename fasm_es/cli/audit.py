"""``audit verify`` (the hash chains) and ``audit export`` (records as JSON lines or CSV)."""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from pydantic import BaseModel, Field, ValidationError

from fasm_es.audit import Head, VerifyReport
from fasm_es.audit import verify as verify_chains
from fasm_es.record import Codec, RawRecord

from .output import CliError, Column, ExitCode, Meter, compact, plural, usage_error
from .session import DbOption, DebugOption, JsonOption, MachineOption, Session
from .views import RECORD_KEYS, record_view

StreamsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[STREAM]...",
        help="Only these streams (default: every stream).",
        show_default=False,
    ),
]

HEADS_FORMAT = "fasm-es heads"


class HeadEntry(BaseModel):
    """One stream's head as saved in a heads file."""

    version: int = Field(ge=0)
    hash: str


class HeadsFile(BaseModel):
    """The JSON file ``audit verify --heads FILE`` compares with and saves."""

    format: str = HEADS_FORMAT
    saved_at: datetime | None = None
    database: str | None = None
    heads: dict[str, HeadEntry]


def load_heads(path: Path) -> dict[str, Head]:
    """The heads saved in ``path``; a usage error naming the file if it is not a heads file."""
    try:
        parsed = HeadsFile.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise usage_error(f"cannot read heads file {str(path)!r}: {exc.strerror}") from exc
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in problem["loc"]) or "the file"
        raise usage_error(
            f"{str(path)!r} is not a fasm-es heads file ({where}: {problem['msg']})"
        ) from exc
    if parsed.format != HEADS_FORMAT:
        raise usage_error(f"{str(path)!r} is not a fasm-es heads file (format {parsed.format!r})")
    return {stream: Head(entry.version, entry.hash) for stream, entry in parsed.heads.items()}


def save_heads(path: Path, heads: dict[str, Head], database: str) -> None:
    """Write ``heads`` to ``path`` atomically (a crash leaves the old file or the new one)."""
    document = HeadsFile(
        saved_at=datetime.now(UTC),
        database=database,
        heads={s: HeadEntry(version=h.version, hash=h.hash) for s, h in sorted(heads.items())},
    )
    directory = path.resolve().parent
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=directory, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            handle.write(document.model_dump_json(indent=2) + "\n")
        os.replace(handle.name, path)
    except OSError as exc:
        raise usage_error(f"cannot write heads file {str(path)!r}: {exc.strerror}") from exc


BREAK_COLUMNS = [
    Column("stream", "stream"),
    Column("version", "version", "right"),
    Column("kind", "kind"),
    Column("detail", "detail"),
]


def verify(
    ctx: typer.Context,
    streams: StreamsArgument = None,
    heads: Annotated[
        Path | None,
        typer.Option(
            "--heads",
            metavar="FILE",
            help="Compare each stream's head with FILE (if it exists), then save the new heads "
            "there when every chain holds.",
            show_default=False,
        ),
    ] = None,
    no_save: Annotated[
        bool, typer.Option("--no-save", help="With --heads: compare only, never write FILE.")
    ] = False,
    db: DbOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Verify each stream's hash chain: find edited, deleted, inserted or reordered records.

    A chain alone cannot show that a stream's newest records were removed, or
    that a whole stream was rewritten; keep the heads (--heads FILE) where the
    database's writers cannot change them to catch that too. Exits 1 if any
    chain is broken or a head does not match. --json prints one JSON document.
    """
    with Session(ctx, db=db, json_=json_) as session:
        store, out = session.store, session.out
        names = list(streams) if streams else None
        for name in names or ():
            session.require_stream(name)
        known = heads is not None and heads.exists()
        if heads is not None and not known and no_save:
            raise usage_error(
                f"heads file {str(heads)!r} does not exist, and --no-save forbids creating it"
            )
        expected = load_heads(heads) if heads is not None and known else None
        total = len(names) if names is not None else None
        if total is None and out.shows_progress:
            total = sum(1 for _ in store.streams())
        with out.progress("verifying chains", total) as meter:
            report = verify_chains(
                store, names, expected_heads=expected, progress=lambda _: meter.advance()
            )
        saved = False
        if heads is not None and report.ok and not no_save:
            merged = {**(expected or {}), **report.heads}
            save_heads(heads, merged, session.database.shown)
            saved = True
        show_verify(session, report, heads, compared=expected is not None, saved=saved)
        if not report.ok:
            raise typer.Exit(ExitCode.CHECK_FAILED)


def show_verify(
    session: Session, report: VerifyReport, heads: Path | None, *, compared: bool, saved: bool
) -> None:
    """Print a verify report: one JSON document, or a summary and a table of breaks."""
    out = session.out
    breaks = [asdict(b) for b in report.breaks]
    if out.json:
        out.document(
            {
                "ok": report.ok,
                "streams": report.streams,
                "records": report.records,
                "breaks": breaks,
                "heads_file": str(heads) if heads is not None else None,
                "heads_compared": compared,
                "heads_saved": saved,
            }
        )
        return
    out.text(
        f"checked {plural(report.streams, 'stream')} ({plural(report.records, 'record')}) in "
        f"{session.database.shown}"
    )
    if heads is not None:
        out.text(
            f"compared with the heads in {heads}"
            if compared
            else f"no heads in {heads} yet: nothing to compare with"
        )
    if report.ok:
        out.text("every hash chain holds")
    else:
        out.rows(breaks, BREAK_COLUMNS)
        out.text(
            f"{plural(len(report.breaks), 'broken chain')}: records were changed after they "
            "were written"
        )
        if heads is not None:
            out.text(f"{heads} was not updated")
    if saved:
        out.text(f"saved {plural(len(report.heads), 'head')} to {heads}")


class ExportFormat(StrEnum):
    """The formats of ``audit export``."""

    jsonl = "jsonl"
    csv = "csv"


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 date or time; one without a timezone is taken as UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise usage_error(
            f"{option} {text!r} is not an ISO 8601 date or time "
            "(for example 2024-05-01 or 2024-05-01T12:00:00+02:00)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def accepted_at(view: dict[str, Any]) -> datetime | None:
    """When a record was accepted, from its view; None if it does not say."""
    value = view.get("accepted_at")
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def export(
    ctx: typer.Context,
    format_: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="jsonl (one JSON object a line) or csv.")
    ] = ExportFormat.jsonl,
    stream: Annotated[
        list[str] | None,
        typer.Option(
            "--stream", "-s", help="Only this stream (repeat for more).", show_default=False
        ),
    ] = None,
    actor: Annotated[
        list[str] | None,
        typer.Option(
            "--actor",
            "-a",
            help="Only inputs from this actor (repeat for more).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="TIME",
            help="Only inputs accepted at or after TIME (ISO 8601).",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            metavar="TIME", help="Only inputs accepted before TIME (ISO 8601).", show_default=False
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write to FILE instead of stdout.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    machine: MachineOption = None,
    debug: DebugOption = False,
) -> None:
    """Export records with their metadata, actions and chain hashes, for auditors.

    Records come in global order, or stream by stream with --stream. Without
    --machine the stored JSON is exported as it is; with --machine each record
    is decoded (and upcast) first. Times without a timezone are UTC.
    """
    start = parse_time(since, "--since") if since else None
    end = parse_time(until, "--until") if until else None
    if start is not None and end is not None and start >= end:
        raise usage_error(f"--since {since} is not before --until {until}")
    with Session(ctx, db=db, machine=machine) as session:
        store, out = session.store, session.out
        names = list(stream or ())
        for name in names:
            session.require_stream(name)
        found = session.optional_machine()
        codec: Codec[Any, Any, Any, Any] | None = (
            Codec(found.types, found.schema) if found is not None else None
        )
        actors = set(actor or ())

        def raws() -> Iterator[RawRecord]:
            if not names:
                yield from store.read_log()
            for name in names:
                yield from store.read_stream(name)

        def selected(meter: Meter) -> Iterator[dict[str, Any]]:
            for raw in raws():
                meter.advance()
                view = record_view(raw, codec)
                if actors and view.get("actor") not in actors:
                    continue
                if start is not None or end is not None:
                    when = accepted_at(view)
                    if when is None or (start is not None and when < start):
                        continue
                    if end is not None and when >= end:
                        continue
                yield view

        total = None
        if output is not None and out.shows_progress:
            total = sum(store.last_version(n) for n in names) if names else store.last_position()
        # Progress only beside a file: on a terminal it would mix with the records.
        with out.progress("exporting", total, enabled=output is not None) as meter:
            count = write_export(selected(meter), format_, output)
        if output is not None:
            out.note(f"exported {count} records to {output}")


def write_export(rows: Iterator[dict[str, Any]], format_: ExportFormat, output: Path | None) -> int:
    """Write ``rows`` as JSON lines or CSV to ``output`` (stdout if None); return the count."""
    try:
        if output is None:
            return _write(rows, format_, sys.stdout)
        with output.open("w", encoding="utf-8", newline="") as handle:
            return _write(rows, format_, handle)
    except OSError as exc:
        if output is not None and exc.filename == str(output):
            raise CliError(ExitCode.USAGE, f"cannot write {str(output)!r}: {exc.strerror}") from exc
        raise


def _write(rows: Iterator[dict[str, Any]], format_: ExportFormat, handle: IO[str]) -> int:
    count = 0
    if format_ is ExportFormat.jsonl:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        return count
    writer = csv.DictWriter(handle, fieldnames=RECORD_KEYS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: compact(row[key]) if key in ("input", "actions") else row[key]
                for key in RECORD_KEYS
            }
        )
        count += 1
    return count
