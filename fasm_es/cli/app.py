"""The ``fasm-es`` application: its commands, and the one place errors become exit codes.

A command is a plain function registered below with one line; it raises
:class:`~fasm_es.cli.output.CliError` (or lets a fasm-es error through) and
:class:`FasmGroup` turns that into one line on stderr and an exit code.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

import typer
from typer.core import TyperGroup

from fasm_es import __version__
from fasm_es.streams import SnapshotWarning

from . import audit, demo, inspection, projections, replay, simulate, tracked
from .output import DEBUG, ExitCode, one_line, report_error
from .session import DbOption, DebugOption, JsonOption, MachineOption, remember_settings


class PipeClosed(Exception):
    """The reader of stdout went away; the command stops quietly."""


class FasmGroup(TyperGroup):
    """The root command: parses, runs, and reports every failure as one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command, turning a closed stdout into :class:`PipeClosed`."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            # Raised past the parser, which would otherwise exit 1 for it.
            raise PipeClosed() from exc

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit (or return the code when not standalone)."""
        token = DEBUG.set(False)
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _warning_line
                # One line per stream whose snapshot is skipped, not one per run.
                warnings.simplefilter("always", SnapshotWarning)
                code = self._run(args, prog_name, complete_var, windows_expand_args, extra)
        finally:
            DEBUG.reset(token)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        windows_expand_args: bool,
        extra: dict[str, Any],
    ) -> int:
        try:
            result = super().main(
                args,
                prog_name or "fasm-es",
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.Abort:
            sys.stderr.write("error: aborted\n")
            return ExitCode.INTERRUPTED
        except PipeClosed:
            _silence_stdout()
            return ExitCode.BROKEN_PIPE
        except (Exception, KeyboardInterrupt) as exc:
            if _from_parser(exc):
                return _usage_line(exc)
            return report_error(exc)
        # Not standalone, the parser returns an exit code (or the command's None).
        return result if isinstance(result, int) else ExitCode.OK


def _from_parser(exc: BaseException) -> bool:
    # Newer typer vendors click and older typer uses it as a package: match the
    # parser's exception base by name so that both are recognised.
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def _usage_line(exc: Any) -> int:
    code = int(getattr(exc, "exit_code", ExitCode.USAGE))
    ctx = getattr(exc, "ctx", None)
    message = str(exc.format_message())
    if type(exc).__name__ == "NoArgsIsHelpError":
        # No command given: the help is the answer (rich has printed it already).
        if message.strip():
            sys.stdout.write(message + "\n")
        return code
    hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
    sys.stderr.write(f"error: {message}{hint}\n")
    return code


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # A snapshot that cannot be read is worth a line, not a source location.
    sys.stderr.write(f"warning: {one_line(str(message))}\n")


def _silence_stdout() -> None:
    # Python would report the broken pipe again when flushing stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a real file (a test runner's buffer)
    finally:
        os.close(devnull)


app = typer.Typer(
    cls=FasmGroup,
    name="fasm-es",
    help="Inspect, replay and audit the event logs of fasm-es state machines.",
    epilog="Exit codes: 0 ok, 1 a check failed, 2 bad arguments, 3 database error, "
    "4 machine or decoding error, 5 unexpected error. See docs/cli.md.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"fasm-es {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: DbOption = None,
    machine: MachineOption = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Inspect, replay and audit the event logs of fasm-es state machines.

    The database is --db URL or $FASM_ES_DATABASE_URL; the machine that
    decodes records is --machine module:attribute or $FASM_ES_MACHINE. Both
    may be given here or after the command.
    """
    remember_settings(ctx, db=db, machine=machine, json=json_)


# Adding a command: write a function in a module of this package, register it here.
app.command()(demo.demo)
app.command()(inspection.streams)
app.command()(inspection.log)
app.command()(inspection.state)
app.command()(replay.replay)
app.command()(tracked.outstanding)
app.command()(tracked.stuck)
app.command()(tracked.retry)
app.command()(simulate.simulate)

audit_app = typer.Typer(
    help="Verify the hash chains and export the audit trail.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
audit_app.command("verify")(audit.verify)
audit_app.command("export")(audit.export)
app.add_typer(audit_app, name="audit")

projections_app = typer.Typer(
    help="Run, inspect, reset and rebuild projections (read models) of the log.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
projections_app.command("status")(projections.status)
projections_app.command("run")(projections.run)
projections_app.command("reset")(projections.reset)
projections_app.command("rebuild")(projections.rebuild)
projections_app.command("skip")(projections.skip)
app.add_typer(projections_app, name="projections")
