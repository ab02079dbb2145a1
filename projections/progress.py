"""A progress bar for long catch-ups and rebuilds (rich), or nothing when it is off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]
"""Report the position reached."""


@contextmanager
def progress_bar(
    enabled: bool, description: str, start: int, head: Callable[[], int]
) -> Iterator[Advance]:
    """Yield a function to report the position reached; shows a bar from ``start`` to the head.

    The head is read again at each report, since records keep arriving.
    """
    if not enabled:
        yield lambda _position: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=max(head() - start, 0))

        def advance(position: int) -> None:
            bar.update(task, completed=position - start, total=max(head() - start, 0))

        yield advance
