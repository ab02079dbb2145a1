"""How far behind a projection is: its position beside the head of the log.

``lag_records`` is the head's position minus the projection's. On SQLite and
in memory positions are consecutive, so it is the number of records still to
apply; PostgreSQL positions may have gaps (an aborted append uses up numbers),
so there it is an upper bound. ``lag_seconds`` is how long ago the oldest
record not yet applied was accepted (0 when caught up).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from fasm_es.clock import Clock
from fasm_es.inputs import Metadata
from fasm_es.record import RawRecord
from fasm_es.store import EventStore
from projections.batch import read_batch
from projections.position import Failure, Position


@dataclass(frozen=True, slots=True)
class Status:
    """A projection's position, the head of the log, and how far behind it is.

    ``failure`` names the record the projection stopped at, if a handler
    failed on it; ``rebuilding`` is the position a rebuild in progress has
    reached (None when none is); ``skipped`` counts the records an operator
    skipped.
    """

    projection: str
    position: int
    head: int
    lag_records: int
    lag_seconds: float
    updated_at: datetime | None
    failure: Failure | None
    rebuilding: int | None
    skipped: int

    @property
    def caught_up(self) -> bool:
        """Whether every record in the log so far is applied."""
        return self.position >= self.head

    def as_json(self) -> dict[str, object]:
        """The status as plain JSON values (for scripts and the command line)."""
        failure = None
        if self.failure is not None:
            f = self.failure
            failure = {
                "position": f.position,
                "stream": f.stream,
                "version": f.version,
                "tag": f.tag,
                "error": f.error,
                "at": f.at.isoformat() if f.at else None,
            }
        return {
            "projection": self.projection,
            "position": self.position,
            "head": self.head,
            "lag_records": self.lag_records,
            "lag_seconds": round(self.lag_seconds, 3),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "failure": failure,
            "rebuilding": self.rebuilding,
            "skipped": self.skipped,
        }


def accepted_at(raw: RawRecord) -> datetime | None:
    """When a stored record's input was accepted, read from its body (None if unreadable)."""
    try:
        body = json.loads(raw.body)
        return Metadata.model_validate(body["meta"]).accepted_at
    except (ValueError, KeyError, TypeError):
        return None


def status(
    name: str,
    stored: Position,
    store: EventStore,
    clock: Clock,
    *,
    rebuilding: Position | None,
    skipped: int,
) -> Status:
    """The status of projection ``name`` at ``stored`` against the log in ``store``."""
    head = store.last_position()
    lag_seconds = 0.0
    if head > stored.position:
        after = read_batch(store, stored.position, 1)
        when = accepted_at(after[0]) if after else None
        if when is not None:
            lag_seconds = max(0.0, (clock.now() - when).total_seconds())
    return Status(
        projection=name,
        position=stored.position,
        head=head,
        lag_records=max(0, head - stored.position),
        lag_seconds=lag_seconds,
        updated_at=stored.updated_at,
        failure=stored.failure,
        rebuilding=None if rebuilding is None else rebuilding.position,
        skipped=skipped,
    )
