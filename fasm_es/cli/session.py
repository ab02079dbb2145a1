"""The options every command shares, and the session a command runs in.

``--db``, ``--machine``, ``--json`` and ``--debug`` are accepted both before
the command (``fasm-es --db URL streams``) and after it (``fasm-es streams
--db URL``); a value given after the command wins. A command opens a
:class:`Session`, which merges the two, and asks it for the store, the
machine and the output::

    def streams(ctx: typer.Context, db: DbOption = None, json_: JsonOption = False,
                debug: DebugOption = False) -> None:
        with Session(ctx, db=db, json_=json_) as session:
            ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Annotated, Any

import typer

from fasm_es.errors import FasmError
from fasm_es.fold import StreamState
from fasm_es.store import URL_ENV, EventStore
from fasm_es.streams import Streams

from .loading import MACHINE_ENV, AnyMachine, Database, load_machine, open_existing
from .output import CliError, ExitCode, Output, is_database_error, remember_debug, usage_error

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help=f"Database URL (sqlite:///file.db, postgresql://...); default ${URL_ENV}.",
        show_default=False,
    ),
]
MachineOption = Annotated[
    str | None,
    typer.Option(
        "--machine",
        "-m",
        metavar="MODULE:ATTR",
        help=f"The machine that decodes and folds records; default ${MACHINE_ENV}.",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print JSON for scripts instead of tables."),
]
DebugOption = Annotated[
    bool,
    typer.Option(
        "--debug",
        envvar="FASM_ES_DEBUG",
        callback=remember_debug,
        help="Show the traceback of an error.",
    ),
]


@dataclass(frozen=True)
class Settings:
    """The shared options as given before the command (kept in the root context)."""

    db: str | None = None
    machine: str | None = None
    json: bool = False


class Session:
    """One command's settings, output, store and machine; closes the store at the end."""

    def __init__(
        self,
        ctx: typer.Context,
        *,
        db: str | None = None,
        machine: str | None = None,
        json_: bool = False,
    ) -> None:
        root = ctx.find_root().obj
        given = root if isinstance(root, Settings) else Settings()
        self.database = Database.resolve(db or given.db)
        self.machine_spec = machine or given.machine
        self.out = Output(json_ or given.json)
        self._store: EventStore | None = None
        self._machine: AnyMachine | None = None
        self._streams: Streams[Any, Any, Any, Any, Any] | None = None

    @property
    def store(self) -> EventStore:
        """The existing store named by the settings, opened on first use."""
        if self._store is None:
            self._store = open_existing(self.database)
        return self._store

    def machine(self) -> AnyMachine:
        """The machine named by ``--machine`` or ``$FASM_ES_MACHINE``; a usage error if none."""
        found = self.optional_machine()
        if found is None:
            raise usage_error(
                "this command decodes and folds records, so it needs the machine: pass "
                f"--machine module:attribute (for example examples.counter:Counter) or set "
                f"{MACHINE_ENV}"
            )
        return found

    def optional_machine(self) -> AnyMachine | None:
        """The machine if one is named, else None (the command then shows raw records)."""
        spec = self.machine_spec or os.environ.get(MACHINE_ENV)
        if self._machine is None and spec:
            self._machine = load_machine(spec)
        return self._machine

    def streams(self) -> Streams[Any, Any, Any, Any, Any]:
        """The machine's streams in the store (both must be given)."""
        if self._streams is None:
            self._streams = Streams(self.machine(), self.store)
        return self._streams

    def load(self, stream: str, *, at: int | None = None) -> StreamState[Any, Any]:
        """Fold ``stream`` (up to version ``at``) with the machine, from its newest snapshot.

        An exception the machine raises that is not a fasm-es error is a bug
        in the machine: it is reported as such (exit code 4), naming the stream.
        """
        streams = self.streams()
        try:
            return streams.load(stream, at=at)
        except FasmError:
            raise
        except Exception as exc:
            if is_database_error(exc):
                raise
            raise CliError(
                ExitCode.MACHINE,
                f"machine {streams.machine.name} raised {type(exc).__name__}: {exc} while "
                f"folding stream {stream!r} (a bug in the machine; --debug shows where)",
            ) from exc

    def chosen_streams(self, names: list[str] | None) -> tuple[Iterable[str], int | None]:
        """The named streams (each must have records), else every stream; and how many.

        The count is for a progress bar: without one, every stream is not counted first.
        """
        if names:
            for name in names:
                self.require_stream(name)
            return list(names), len(names)
        total = sum(1 for _ in self.store.streams()) if self.out.shows_progress else None
        return self.store.streams(), total

    def require_stream(self, stream: str) -> int:
        """The stream's version; a usage error naming the database if it has no records."""
        version = self.store.last_version(stream)
        if version == 0:
            raise usage_error(
                f"stream {stream!r} has no records in {self.database.shown} "
                "(list the streams with: fasm-es streams)"
            )
        return version

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            self._store.close()


def remember_settings(ctx: typer.Context, **given: Any) -> None:
    """Keep the options given before the command for the command's :class:`Session`."""
    ctx.obj = Settings(**given)
