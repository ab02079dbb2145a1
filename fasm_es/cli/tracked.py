"""Tracked actions as the log shows them: ``outstanding``.

``stuck`` and ``retry`` (which need the runtime engine) belong here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from .output import Column, compact, plural
from .session import DbOption, DebugOption, JsonOption, MachineOption, Session
from .views import type_name

OUTSTANDING_COLUMNS = [
    Column("stream", "stream"),
    Column("id", "action id", "right"),
    Column("type", "type"),
    Column("action", "action", show=compact),
    Column("version", "stream version", "right"),
]


def outstanding(
    ctx: typer.Context,
    streams: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[STREAM]...",
            help="Only these streams (default: every stream).",
            show_default=False,
        ),
    ] = None,
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
