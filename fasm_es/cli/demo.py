"""``demo``: the coffee-shop loyalty service end to end, a crash and its restore included."""

from __future__ import annotations

from typing import Annotated

import typer

from .output import CliError, ExitCode
from .session import DebugOption, Settings


def demo(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Where to run it (default sqlite:///demo.db here). A SQLite file is deleted "
            "first; FASM_ES_DATABASE_URL is ignored for that reason.",
            show_default=False,
        ),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Run an example service on a SQLite file, crash it, restore it, and say what happened.

    Exits 0 when every step behaved as the demo says, 1 otherwise.
    """
    try:
        from examples.demo import main as run_demo
    except ImportError as exc:
        raise CliError(
            ExitCode.MACHINE,
            f"the demo needs the examples package, installed with fasm-es from its source "
            f"tree ({exc})",
        ) from exc
    root = ctx.find_root().obj
    url = db or (root.db if isinstance(root, Settings) else None)
    code = run_demo(["--db", url] if url else [])
    if code:
        raise typer.Exit(code)
