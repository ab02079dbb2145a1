"""Finding the database and the machine a command works on.

The database comes from ``--db URL``, else ``$FASM_ES_DATABASE_URL``, else the
default ``sqlite:///fasm_es.db``. The commands here only read: a SQLite file
that does not exist is an error, never a new empty store.

The machine comes from ``--machine module:attribute`` or ``$FASM_ES_MACHINE``:
the module is imported by the name given on the command line (never by a name
read from stored data), and the attribute may be a :class:`StateMachine`
subclass (instantiated with no arguments) or an instance.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasm_es.backends.sqlite import TABLE, sqlite_path
from fasm_es.machine import StateMachine
from fasm_es.store import DEFAULT_URL, URL_ENV, EventStore, open_store, redact

from .output import CliError, ExitCode, usage_error

MACHINE_ENV = "FASM_ES_MACHINE"

AnyMachine = StateMachine[Any, Any, Any, Any, Any]


@dataclass(frozen=True)
class Database:
    """A database URL and where it came from, for messages that say how to fix it."""

    url: str
    source: str

    @classmethod
    def resolve(cls, explicit: str | None) -> Database:
        """``--db`` if given, else the environment variable, else the default."""
        if explicit:
            return cls(explicit, "--db")
        from_env = os.environ.get(URL_ENV)
        if from_env:
            return cls(from_env, URL_ENV)
        return cls(DEFAULT_URL, f"the default; pass --db URL or set {URL_ENV}")

    @property
    def shown(self) -> str:
        """The URL with any password hidden."""
        return redact(self.url)


def open_existing(database: Database) -> EventStore:
    """Open an existing store for reading; refuse to create one.

    Raises :class:`CliError` (exit code 3) when a SQLite file is missing or
    holds no fasm-es store, and (exit code 2) for ``memory://``, which is
    always empty in a new process.
    """
    scheme = database.url.split(":", 1)[0].lower()
    if scheme == "memory":
        raise usage_error(
            "memory:// lives only inside the process that created it, so there is nothing "
            "to read here: pass --db sqlite:///path.db or --db postgresql://..."
        )
    if scheme == "sqlite":
        check_sqlite_store(database)
    return open_store(database.url)


def check_sqlite_store(database: Database) -> None:
    """Raise :class:`CliError` unless the SQLite URL names a file holding a fasm-es store."""
    path = Path(sqlite_path(database.url)).expanduser()
    if not path.is_file():
        raise CliError(
            ExitCode.DATABASE,
            f"no database at {str(path)!r} (from {database.source}); check the path",
        )
    try:
        # Read-only, so that checking a file never changes it.
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
            ).fetchone()
    except sqlite3.Error as exc:
        raise CliError(
            ExitCode.DATABASE, f"cannot read {str(path)!r} as a SQLite database: {exc}"
        ) from exc
    if found is None:
        raise CliError(
            ExitCode.DATABASE,
            f"{str(path)!r} is a SQLite database but holds no fasm-es store "
            f"(no table {TABLE!r}); check --db",
        )


def load_machine(spec: str) -> AnyMachine:
    """The machine named by ``module:attribute`` (``module`` may be dotted, so may the attribute).

    Raises :class:`CliError`: exit code 2 for a malformed spec, 4 when the
    module cannot be imported, the attribute is missing, or it is not a machine.
    """
    return as_machine(spec, import_attribute(spec, "--machine", "examples.counter:Counter"))


def import_attribute(spec: str, option: str, example: str) -> object:
    """The value named by ``module:attribute``, given as ``option`` (for messages).

    Raises :class:`CliError`: exit code 2 for a malformed spec (``example``
    shows a good one), 4 when the module cannot be imported or lacks the attribute.
    """
    module_name, sep, attribute = spec.partition(":")
    names = module_name.split(".") + attribute.split(".")
    if not sep or not all(name.isidentifier() for name in names):
        raise usage_error(f"{option} {spec!r} is not module:attribute (for example {example})")
    # As a script entry point the current directory is not on the import path;
    # a user naming their own module expects it to be found there.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise CliError(
                ExitCode.MACHINE,
                f"{option} {spec!r}: no module named {exc.name!r} (run from the directory "
                "that holds it, or add that directory to PYTHONPATH)",
            ) from exc
        raise CliError(
            ExitCode.MACHINE, f"{option} {spec!r}: importing {module_name!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise CliError(
            ExitCode.MACHINE,
            f"{option} {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}",
        ) from exc
    for name in attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise CliError(
                ExitCode.MACHINE, f"{option} {spec!r}: {module_name!r} has no attribute {name!r}"
            ) from None
    return found


def as_machine(spec: str, found: object) -> AnyMachine:
    """``found`` as a machine instance: a StateMachine subclass is called with no arguments."""
    if isinstance(found, StateMachine):
        return found
    if isinstance(found, type) and issubclass(found, StateMachine):
        try:
            instance: AnyMachine = found()
        except Exception as exc:
            raise CliError(
                ExitCode.MACHINE,
                f"--machine {spec!r}: {found.__name__}() failed: {type(exc).__name__}: {exc} "
                "(name an instance instead of the class)",
            ) from exc
        return instance
    raise CliError(
        ExitCode.MACHINE,
        f"--machine {spec!r} names a value of type {type(found).__name__}, not a StateMachine "
        "subclass or instance",
    )
