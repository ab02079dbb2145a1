"""What the engine dispatches again for one stream when it starts.

The machine's ``restore`` (or the default: the outstanding tracked actions
themselves) says what to re-issue. Two rules of the engine's own come on top:

- timers belong to the engine: an outstanding :class:`~fasm_es.timers.Timer`
  is re-armed even when ``restore`` leaves it out;
- a ``restore`` that fails (it raises, or re-issues an id that is not
  outstanding) must not stop the engine nor lose anything: the stream's
  outstanding actions are listed as stuck, with the error, for an operator
  to fix the machine and retry them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fasm_es.actions import Tracked
from fasm_es.errors import FasmError
from fasm_es.streams import Streams
from fasm_es.timers import Timer


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """For one stream: the actions to dispatch, and those to list as stuck (with ``error``)."""

    stream: str
    dispatch: list[Tracked[Any]] = field(default_factory=list)
    stuck: list[Tracked[Any]] = field(default_factory=list)
    error: str | None = None


def plan_restore(streams: Streams[Any, Any, Any, Any, Any], stream: str) -> RestorePlan | None:
    """The restore plan of ``stream``; None when it has nothing outstanding."""
    outstanding = streams.outstanding(stream)
    if not outstanding:
        return None
    timers = {i: Tracked(i, a) for i, a in outstanding.items() if isinstance(a, Timer)}
    try:
        emitted = [a for a in streams.restore(stream) if isinstance(a, Tracked)]
    except (FasmError, ValueError, TypeError) as exc:
        stuck = [Tracked(i, a) for i, a in outstanding.items() if i not in timers]
        return RestorePlan(stream, list(timers.values()), stuck, f"restore failed: {exc}")
    reissued = {a.id for a in emitted}
    return RestorePlan(stream, emitted + [t for i, t in timers.items() if i not in reissued])
