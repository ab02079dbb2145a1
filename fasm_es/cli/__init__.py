"""The ``fasm-es`` command line: inspect, replay and audit event logs.

``fasm-es --help`` lists the commands; ``docs/cli.md`` describes each one,
its JSON output and its exit codes (:class:`~fasm_es.cli.output.ExitCode`).
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from .app import app
from .output import ExitCode

__all__ = ["ExitCode", "app", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fasm-es`` with ``argv`` (default: the process's arguments); return the exit code."""
    command = typer.main.get_command(app)
    code = command.main(args=argv, prog_name="fasm-es", standalone_mode=False)
    return int(code)
