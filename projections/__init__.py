"""Projections: read models in SQLAlchemy tables, kept up to date from the event log.

Declare a :class:`Projection` (its tables and its handlers, chosen by input,
result and action type), then run it with a :class:`Runner`::

    runner = Runner(projection, store="sqlite:///shop.db", view="sqlite:///views.db")
    runner.catch_up()        # from the stored position to the head of the log
    runner.follow(stop)      # then new records as they arrive

Guarantees (DESIGN section 2, guarantee 7):

1. Exactly once. A batch's view rows and its new position commit in one
   transaction on the view database, so a crash at any point neither skips
   a record nor applies one twice; a restart resumes from the stored position.
2. Nothing is skipped silently. A record that cannot be decoded or whose
   handler raises stops the projection just before it, naming the record
   (:class:`ProjectionFailed`: stream, version, position). Only an operator
   can pass over it, with :meth:`Runner.skip`, which writes an audit line.
3. Readers never see a half-built view. :meth:`Runner.rebuild` builds into
   fresh tables and swaps them in, in one transaction, once caught up.
4. No side effects. A projection writes its own tables and nothing else; it
   never dispatches actions, so running or rebuilding it changes nothing
   outside the view.

Built in: :class:`LatestState` (each stream's latest state) and
:class:`AuditTrail` (one row per record: who, when, which input, which
actions). Errors are :class:`ProjectionError` and its subclasses (the tree
is drawn in :mod:`projections.errors`).
"""

from projections.builtin import AuditEntry, AuditTrail, LatestState
from projections.columns import UTCDateTime
from projections.context import Context, TableRef
from projections.definition import CommitHook, Handler, Projection, RecordHandler
from projections.errors import (
    ProjectionDefinitionError,
    ProjectionError,
    ProjectionFailed,
    SkipRefused,
)
from projections.position import Failure, Skip
from projections.rebuild import RebuildResult
from projections.runner import Runner
from projections.status import Status

__all__ = [
    "AuditEntry",
    "AuditTrail",
    "CommitHook",
    "Context",
    "Failure",
    "Handler",
    "LatestState",
    "Projection",
    "ProjectionDefinitionError",
    "ProjectionError",
    "ProjectionFailed",
    "RebuildResult",
    "RecordHandler",
    "Runner",
    "Skip",
    "SkipRefused",
    "Status",
    "TableRef",
    "UTCDateTime",
]
