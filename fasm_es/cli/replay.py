"""``replay [--verify]``: refold every stream with the current code and report divergences.

This is the check to run against a production log before deploying new STF
code. Each stream is folded from its first record, one stream at a time (no
more than one state is held in memory). Every record must decode through the
current types and be accepted again by the STF. With ``--verify`` each record
must also re-emit exactly the actions recorded with it, and the newest
snapshot's state must equal the fold at the snapshot's version (a snapshot is
what a restart loads, so a difference there changes what the service sees).

A divergence names the stream, the version and the first difference; the
command exits 1 if any stream diverges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import typer

from fasm_es.errors import (
    FasmError,
    RecordDecodeError,
    Rejection,
    ReplayDivergence,
    StoreError,
)
from fasm_es.fold import StreamState, apply_record, initial
from fasm_es.record import Codec
from fasm_es.snapshot import SnapshotCodec
from fasm_es.store import EventStore

from .loading import AnyMachine
from .output import (
    Column,
    ExitCode,
    Meter,
    compact,
    is_database_error,
    jsonable,
    one_line,
    plural,
)
from .session import DbOption, DebugOption, JsonOption, MachineOption, Session

Kind = Literal["rejected", "actions", "state", "gap", "decode", "error"]
"""What diverged: the STF now rejects a recorded input; it emits other actions;
the fold differs from the newest snapshot; versions are missing; a record no
longer decodes; or the machine raised an exception that is not a rejection."""


@dataclass(frozen=True)
class Divergence:
    """The first place one stream's replay differs from its log."""

    stream: str
    version: int
    kind: Kind
    difference: str


@dataclass
class ReplayReport:
    """What a replay checked and what it found."""

    machine: str
    verified: bool
    streams: int = 0
    records: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no stream diverged."""
        return not self.divergences


class Replayer:
    """Refolds streams of one store with one machine, one stream at a time."""

    def __init__(self, machine: AnyMachine, store: EventStore, *, verify: bool) -> None:
        self.machine = machine
        self.store = store
        self.verify = verify
        self.codec: Codec[Any, Any, Any, Any] = Codec(machine.types, machine.schema)
        self.snapshots: SnapshotCodec[Any, Any] = SnapshotCodec(machine.types, machine.schema)
        self.report = ReplayReport(machine.name, verify)

    def run(self, streams: Iterable[str], meter: Meter) -> ReplayReport:
        """Replay each of ``streams``; the report lists every stream that diverged."""
        for stream in streams:
            meter.note(f"replaying {stream}")
            self.report.streams += 1
            replayed, divergence = self.replay_stream(stream, meter)
            self.report.records += replayed
            if divergence is not None:
                self.report.divergences.append(divergence)
                if meter.active:
                    # Count the records a diverged stream left unread, so the bar completes.
                    meter.advance(self.store.last_version(stream) - replayed)
        return self.report

    def newest_snapshot(self, stream: str) -> StreamState[Any, Any] | None:
        """The stream's newest snapshot, or None (with a warning if it cannot be decoded)."""
        try:
            raw = self.store.load_snapshot(stream)
            return self.snapshots.decode(raw) if raw is not None else None
        except RecordDecodeError as exc:
            self.report.warnings.append(
                one_line(
                    f"{exc}; the snapshot is ignored, and loading the stream folds it from the "
                    "first record"
                )
            )
            return None

    def replay_stream(self, stream: str, meter: Meter) -> tuple[int, Divergence | None]:
        """Refold one stream; return how many records replayed and the first divergence."""
        machine = self.machine
        # A machine with snapshots turned off never loads one: a stale one is harmless.
        compare = self.verify and machine.snapshot_every is not None
        snapshot = self.newest_snapshot(stream) if compare else None
        current = initial(machine, stream)
        actions = machine.new_actions()
        version = 0
        replayed = 0

        def diverged(kind: Kind, difference: str) -> tuple[int, Divergence]:
            return replayed, Divergence(stream, version, kind, one_line(difference))

        try:
            for raw in self.store.read_stream(stream):
                version = raw.version
                record = self.codec.decode(raw)
                apply_record(machine, current, record, actions, check_actions=self.verify)
                replayed += 1
                meter.advance()
                if snapshot is not None and current.version == snapshot.version:
                    difference = first_difference(snapshot.state, current.state)
                    if difference is not None:
                        return diverged(
                            "state",
                            f"the snapshot at version {version} differs from the fold: "
                            f"{difference}",
                        )
        except ReplayDivergence as exc:
            if version != current.version + 1:
                kind: Kind = "gap"
            elif isinstance(exc.__cause__, Rejection):
                kind = "rejected"
            elif exc.__cause__ is not None:
                kind = "error"
            else:
                kind = "actions"
            return diverged(kind, exc.difference)
        except RecordDecodeError as exc:
            return diverged("decode", _without_prefix(str(exc), stream, exc.version))
        except StoreError:
            raise
        except FasmError as exc:
            return diverged("error", str(exc))
        except Exception as exc:
            if is_database_error(exc):
                raise
            return diverged(
                "error",
                f"the machine raised {type(exc).__name__}: {exc} (a bug, not a rejection)",
            )
        if snapshot is not None and snapshot.version > current.version:
            return diverged(
                "state",
                f"the newest snapshot is at version {snapshot.version} but the log ends at "
                f"version {current.version}",
            )
        return replayed, None


def _without_prefix(message: str, stream: str, version: int) -> str:
    prefix = f"stream {stream!r} version {version}: "
    return message.removeprefix(prefix)


def first_difference(snapshot: object, folded: object, path: str = "state") -> str | None:
    """Where the snapshot's state and the folded state first differ; None if equal."""
    if snapshot == folded and type(snapshot) is type(folded):
        return None
    if type(snapshot) is not type(folded):
        return (
            f"{path} is of type {type(snapshot).__name__} in the snapshot but "
            f"{type(folded).__name__} in the fold"
        )
    found = _walk(jsonable(snapshot), jsonable(folded), path)
    return found or f"{path} differs: {snapshot!r} in the snapshot, {folded!r} in the fold"


def _walk(was: Any, now: Any, path: str) -> str | None:
    if isinstance(was, dict) and isinstance(now, dict):
        for key in [*was, *(k for k in now if k not in was)]:
            where = f"{path}.{key}"
            if key not in now:
                return f"{where} is {compact(was[key])} in the snapshot and absent from the fold"
            if key not in was:
                return f"{where} is absent from the snapshot and {compact(now[key])} in the fold"
            found = _walk(was[key], now[key], where)
            if found is not None:
                return found
        return None
    if isinstance(was, list) and isinstance(now, list):
        for index, (a, b) in enumerate(zip(was, now, strict=False)):
            found = _walk(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        if len(was) != len(now):
            return f"{path} has {len(was)} items in the snapshot and {len(now)} in the fold"
        return None
    if was != now or type(was) is not type(now):
        return f"{path} is {compact(was)} in the snapshot and {compact(now)} in the fold"
    return None


DIVERGENCE_COLUMNS = [
    Column("stream", "stream"),
    Column("version", "version", "right"),
    Column("kind", "kind"),
    Column("difference", "first difference"),
]


def replay(
    ctx: typer.Context,
    streams: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[STREAM]...",
            help="Only these streams (default: every stream).",
            show_default=False,
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also compare the actions every record re-emits, and the newest snapshot's state.",
        ),
    ] = False,
    db: DbOption = None,
    machine: MachineOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Refold every stream with the current code and report where it diverges from the log.

    Every record must decode and be accepted again by the STF; --verify also
    checks the actions each record re-emits and the state in the newest
    snapshot. Exits 1 if any stream diverges, naming the stream, the version
    and the first difference. --json prints one JSON document.
    """
    with Session(ctx, db=db, machine=machine, json_=json_) as session:
        found, store, out = session.machine(), session.store, session.out
        names = list(streams) if streams else None
        for name in names or ():
            session.require_stream(name)
        total = None
        if out.shows_progress:
            total = (
                sum(store.last_version(n) for n in names)
                if names is not None
                else store.last_position()
            )
        replayer = Replayer(found, store, verify=verify)
        with out.progress("replaying", total) as meter:
            report = replayer.run(names if names is not None else store.streams(), meter)
        show_report(session, report)
        if not report.ok:
            raise typer.Exit(ExitCode.CHECK_FAILED)


def show_report(session: Session, report: ReplayReport) -> None:
    """Print a replay report: a JSON document, or a summary and a table of divergences."""
    out = session.out
    if out.json:
        out.document(
            {
                "ok": report.ok,
                "machine": report.machine,
                "verified": report.verified,
                "streams": report.streams,
                "records": report.records,
                "divergences": [asdict(d) for d in report.divergences],
                "warnings": report.warnings,
            }
        )
        return
    for warning in report.warnings:
        out.note(f"warning: {warning}")
    checked = (
        "actions and snapshot states compared"
        if report.verified
        else "acceptance checked; add --verify to compare actions and snapshots"
    )
    out.text(
        f"replayed {plural(report.streams, 'stream')} ({plural(report.records, 'record')}) of "
        f"{session.database.shown} with {report.machine}: {checked}"
    )
    if report.ok:
        out.text("no divergence: the current code reproduces the log")
        return
    out.rows((asdict(d) for d in report.divergences), DIVERGENCE_COLUMNS)
    out.text(
        f"{len(report.divergences)} of {plural(report.streams, 'stream')} "
        f"{'diverges' if len(report.divergences) == 1 else 'diverge'}"
    )
