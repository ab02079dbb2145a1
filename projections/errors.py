"""The exceptions the projections package raises, under :class:`~fasm_es.FasmError`.

Catch the branch you can act on::

    FasmError
    └── ProjectionError          anything about a projection
        ├── ProjectionDefinitionError
        │                        a projection is declared wrongly (bad table or
        │                        projection name, foreign keys, an unknown table)
        ├── ProjectionFailed     a handler (or decoding) failed on a record: the
        │                        projection stopped just before it, position kept
        └── SkipRefused          an operator asked to skip a record that is not the
                                 one the projection is stopped at
"""

from __future__ import annotations

from fasm_es.errors import FasmError


class ProjectionError(FasmError):
    """Base of every error about a projection."""


class ProjectionDefinitionError(ProjectionError, TypeError):
    """A projection, or one of its tables, is declared in a way that cannot be run."""


class ProjectionFailed(ProjectionError):
    """A record could not be projected; the projection stopped just before it.

    Everything before the record is committed and the stored position names
    the record before it, so nothing is skipped and nothing is counted twice.
    The failure is also stored, so :meth:`~projections.Runner.status` shows it
    from any process. Fix the handler and run again (the record is retried),
    or skip the record deliberately with :meth:`~projections.Runner.skip`.
    """

    def __init__(
        self,
        projection: str,
        stream: str,
        version: int,
        position: int,
        tag: str,
        error: str,
    ) -> None:
        super().__init__(
            f"projection {projection!r} stopped at log position {position} "
            f"(stream {stream!r} version {version}, record type {tag!r}): {error}; "
            f"nothing after it was applied: fix the handler and run the projection again, "
            f"or skip this record deliberately with skip({position}, reason)"
        )
        self.projection = projection
        self.stream = stream
        self.version = version
        self.position = position
        self.tag = tag
        self.error = error


class SkipRefused(ProjectionError, ValueError):
    """A skip named a record other than the next one the projection would apply."""
