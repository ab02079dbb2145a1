"""What the command line prints, how it fails, and the exit codes scripts rely on.

Every command prints either rich tables for people or, with ``--json``,
JSON for scripts: one JSON document for a report (``state``, ``replay``,
``audit verify``) and JSON lines, one object per line, for a listing that
may be long (``streams``, ``log``, ``outstanding``). Progress bars go to
stderr, and only when stderr is a terminal and ``--json`` is off.

Errors are one line on stderr (``error: ...``) and an exit code from
:class:`ExitCode`; ``--debug`` (or ``FASM_ES_DEBUG=1``) adds the traceback.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

from pydantic_core import to_jsonable_python
from rich import box
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from fasm_es.errors import (
    DefinitionError,
    FasmError,
    MachineError,
    RecordDecodeError,
    StoreError,
)


class ExitCode(IntEnum):
    """Exit codes of ``fasm-es``; scripts may rely on them."""

    OK = 0
    """The command did what was asked and every check passed."""
    CHECK_FAILED = 1
    """A check found a problem: a replay diverged, a hash chain is broken, the demo failed."""
    USAGE = 2
    """Bad arguments: unknown option, malformed value, unknown stream, missing ``--machine``."""
    DATABASE = 3
    """The database is missing, unreachable, not a fasm-es store, or failed mid-operation."""
    MACHINE = 4
    """The machine cannot be loaded, a record cannot be decoded, or the machine failed."""
    INTERNAL = 5
    """An unexpected error: a bug. Rerun with ``--debug`` and report the traceback."""
    INTERRUPTED = 130
    """Stopped by Ctrl-C."""
    BROKEN_PIPE = 141
    """The reader of the output went away (for example ``| head``)."""


class CliError(Exception):
    """An error the command line reports as one line, with its exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def usage_error(message: str) -> CliError:
    """A :class:`CliError` for bad arguments (exit code 2)."""
    return CliError(ExitCode.USAGE, message)


DEBUG: ContextVar[bool] = ContextVar("fasm_es_cli_debug", default=False)
"""Set by ``--debug``; read when an error is reported."""


def remember_debug(value: bool) -> bool:
    """Option callback of ``--debug``: remember it for the error report."""
    if value:
        DEBUG.set(True)
    return value


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a database driver rather than from a machine."""
    module = type(exc).__module__
    return module.startswith(("sqlite3", "psycopg", "eventsourcing.persistence"))


def classify(exc: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the one-line message for an exception a command raised."""
    if isinstance(exc, CliError):
        return exc.code, exc.message
    if isinstance(exc, RecordDecodeError):
        # A store error by ancestry, but the fix is in the machine: exit code 4.
        return ExitCode.MACHINE, str(exc)
    if isinstance(exc, StoreError):
        return ExitCode.DATABASE, str(exc)
    if isinstance(exc, MachineError | DefinitionError):
        return ExitCode.MACHINE, str(exc)
    if isinstance(exc, FasmError):
        return ExitCode.MACHINE, str(exc)
    if is_database_error(exc):
        return ExitCode.DATABASE, f"database error: {type(exc).__name__}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED, "interrupted"
    return (
        ExitCode.INTERNAL,
        f"unexpected {type(exc).__name__}: {exc} (a bug: rerun with --debug for the traceback)",
    )


def one_line(message: str) -> str:
    """``message`` on one line: validation errors span several, with a link that says nothing."""
    message = re.sub(r"\s*For further information visit \S+", "", message)
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def report_error(exc: BaseException) -> ExitCode:
    """Print ``exc`` as one line on stderr (after its traceback with ``--debug``)."""
    code, message = classify(exc)
    if DEBUG.get():
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()
    return code


def plural(count: int, noun: str) -> str:
    """``1 stream``, ``2 streams``: a count and its noun, in the right number."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def jsonable(value: object) -> Any:
    """``value`` as plain JSON data (models, dataclasses, datetimes and sets included)."""
    return to_jsonable_python(value, fallback=repr)


def compact(value: object) -> str:
    """``value`` as one line of JSON, for a table cell."""
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(", ", ": "))


def cell(value: object) -> str:
    """A table cell: strings as they are, nothing for ``None``, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return compact(value)


@dataclass(frozen=True)
class Column:
    """A table column: which key of a row it shows, under which header, and how."""

    key: str
    header: str
    justify: Literal["left", "right"] = "left"
    show: Callable[[Any], str] = cell


TABLE_PAGE = 1000
"""Rows per printed table, so a long listing does not sit in memory."""


class Meter:
    """Advances a progress bar; does nothing when progress is off."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def active(self) -> bool:
        """Whether a progress bar is drawn (work done only for the bar can be skipped if not)."""
        return self._progress is not None

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more units of work done."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def note(self, text: str) -> None:
        """Show what is being worked on."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=text)


class Output:
    """Where a command prints: tables or JSON on stdout, notes and progress on stderr."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        self.console = Console(highlight=False)
        self.errors = Console(stderr=True, highlight=False)

    @property
    def shows_progress(self) -> bool:
        """Progress bars are drawn only for a person watching a terminal."""
        return not self.json and self.errors.is_terminal

    # -- JSON -----------------------------------------------------------------------

    def document(self, data: Mapping[str, Any]) -> None:
        """Print one JSON document (``--json`` reports)."""
        sys.stdout.write(json.dumps(jsonable(data), ensure_ascii=False, indent=2) + "\n")

    def line(self, data: Mapping[str, Any]) -> None:
        """Print one JSON object on one line (``--json`` listings)."""
        sys.stdout.write(json.dumps(jsonable(data), ensure_ascii=False) + "\n")

    # -- people -----------------------------------------------------------------------

    def print(self, *renderables: RenderableType) -> None:
        """Print for people on stdout (markup allowed)."""
        self.console.print(*renderables)

    def text(self, message: str) -> None:
        """Print plain text on stdout, markup characters shown as they are."""
        self.console.print(Text(message))

    def note(self, message: str) -> None:
        """Print a plain note on stderr (kept off stdout so it never mixes with data)."""
        self.errors.print(Text(message))

    def rows(self, rows: Iterable[Mapping[str, Any]], columns: list[Column]) -> int:
        """Print ``rows``: JSON lines with every key, or tables of ``columns``.

        Returns how many rows were printed. Tables are printed a page at a
        time, so memory stays flat however many rows come.
        """
        count = 0
        page: list[Mapping[str, Any]] = []
        for row in rows:
            count += 1
            if self.json:
                self.line(row)
                continue
            page.append(row)
            if len(page) == TABLE_PAGE:
                self.console.print(table(columns, page))
                page = []
        if page:
            self.console.print(table(columns, page))
        return count

    def blocks(
        self,
        rows: Iterable[Mapping[str, Any]],
        render: Callable[[Mapping[str, Any]], RenderableType],
    ) -> int:
        """Print ``rows``: JSON lines with every key, or one block each from ``render``."""
        count = 0
        for row in rows:
            count += 1
            if self.json:
                self.line(row)
            else:
                self.console.print(render(row))
        return count

    @contextmanager
    def progress(
        self, description: str, total: int | None, *, enabled: bool = True
    ) -> Iterator[Meter]:
        """A progress bar on stderr for ``total`` units (unknown if None), or a silent meter."""
        if not (enabled and self.shows_progress):
            yield Meter()
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.errors,
            transient=True,
        ) as progress:
            yield Meter(progress, progress.add_task(description, total=total))


def table(columns: list[Column], rows: Iterable[Mapping[str, Any]]) -> Table:
    """A rich table of ``rows``; cell text is never read as markup."""
    result = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        result.add_column(column.header, justify=column.justify, overflow="fold")
    for row in rows:
        result.add_row(*(Text(column.show(row.get(column.key))) for column in columns))
    return result
