"""Every exception fasm-es raises, in one hierarchy.

Catch the branch you can act on::

    FasmError
    ├── Rejection              the STF refused an input (domain rule); nothing was appended
    │   └── ActionsFull        the STF added past the actions container's capacity
    ├── DefinitionError        a machine declaration is wrong (raised at class creation)
    ├── InvalidInput           a payload failed validation against the declared type
    │   └── RecordTooLarge     its record would pass the store's size limit
    ├── StreamNotOwned         another engine process serves the stream (partitions); retryable
    ├── CompletionNotOutstanding
    │                          a completion names a tracked id that is not outstanding
    │                          (duplicate, late or unknown); it never reaches the STF
    ├── MachineError           the machine misbehaved (emitted an undeclared action,
    │                          awaited real I/O, diverged on replay)
    │   └── ReplayDivergence   folding the log gave a different outcome than recorded
    └── StoreError             anything about the event store
        ├── DatabaseURLError   the URL is malformed, unsupported or unreachable
        ├── StoreUnavailable   the database went away or timed out mid-operation; retryable
        ├── ConcurrencyConflict
        │                      another writer appended the expected version first
        └── RecordDecodeError  a stored record cannot be read back
            ├── UnknownRecordType
            │                  its type tag is not declared by the machine
            └── CorruptRecord  its body is not valid for its declared type

Any other exception raised by an STF is a bug in the STF and propagates
unchanged; the engine still leaves its state equal to the fold of the log.
"""

from __future__ import annotations


class FasmError(Exception):
    """Base of every exception raised by fasm-es."""


class Rejection(FasmError):
    """Base class for domain rejections raised by an STF.

    Raise a subclass from ``stf`` to refuse an input: nothing is appended and
    the state the engine holds stays equal to the fold of the log.
    """


class ActionsFull(Rejection):
    """An STF added an action past the container's capacity.

    It derives from :class:`Rejection`, so an STF that does not handle it
    rejects the input cleanly, as fasm's fallible ``ActionsContainer::add``
    does with ``?``.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__(
            f"actions container is full (capacity {capacity}): emit fewer actions per input "
            "or raise the machine's actions_capacity"
        )
        self.capacity = capacity


class DefinitionError(FasmError, TypeError):
    """A state machine class is declared in a way fasm-es cannot use."""


class InvalidInput(FasmError, ValueError):
    """A payload failed validation against the machine's declared type.

    Raised before the STF runs; nothing is appended. ``errors`` holds
    pydantic's structured errors (each names the field at fault).
    """

    def __init__(self, message: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class RecordTooLarge(InvalidInput):
    """The record an input would append is larger than the configured limit.

    ``size`` is the record body's size in bytes and ``limit`` the bound
    (``max_record_bytes``). Nothing is appended.
    """

    def __init__(self, stream: str, size: int, limit: int) -> None:
        message = (
            f"stream {stream!r}: the record for this input would be {size:,} bytes, over the "
            f"limit of {limit:,} (max_record_bytes): send a smaller input, or raise the limit"
        )
        super().__init__(message, [{"type": "record_too_large", "loc": (), "msg": message}])
        self.stream = stream
        self.size = size
        self.limit = limit


class StreamNotOwned(FasmError):
    """This engine process does not serve the stream: another one holds its partition.

    Raised by ``submit`` and ``complete`` of an engine with ``partitions``;
    nothing is appended. Send the input to the engine that serves the stream
    (:meth:`~fasm_es.partition.PartitionLease.owner_of` names it) or retry
    after a moment: partitions move when engines start and stop.
    """

    def __init__(self, stream: str, partition: int, engine: str) -> None:
        super().__init__(
            f"stream {stream!r} (partition {partition}) is not served by engine {engine!r}: "
            "another engine process holds its partition; send the input there, or retry "
            "once partitions have moved"
        )
        self.stream = stream
        self.partition = partition
        self.engine = engine


class CompletionNotOutstanding(FasmError):
    """A completion names a tracked action id that is not outstanding.

    ``reason`` is ``"completed"`` (a duplicate or late completion for an id the
    log shows as already completed) or ``"unknown"`` (an id never emitted on
    this stream). The completion does not reach the STF and nothing is appended.
    """

    def __init__(self, stream: str, action_id: int | str, reason: str) -> None:
        what = (
            "was already completed (duplicate or late completion)"
            if reason == "completed"
            else "was never emitted on this stream"
        )
        super().__init__(
            f"stream {stream!r}: completion for tracked action {action_id!r} ignored: the id {what}"
        )
        self.stream = stream
        self.action_id = action_id
        self.reason = reason


class MachineError(FasmError):
    """The machine broke its contract (a bug in the machine, not in the input)."""


class ReplayDivergence(MachineError):
    """Folding the log with the current code disagrees with what was recorded.

    ``stream`` and ``version`` name the first record where it happens and
    ``difference`` says what differs.
    """

    def __init__(self, stream: str, version: int, difference: str) -> None:
        super().__init__(f"stream {stream!r} version {version}: replay diverges: {difference}")
        self.stream = stream
        self.version = version
        self.difference = difference


class StoreError(FasmError):
    """Base of event store errors."""


class DatabaseURLError(StoreError, ValueError):
    """A database URL is malformed, of an unsupported kind, or unreachable."""


class StoreUnavailable(StoreError):
    """The database could not be reached, or the connection was lost, mid-operation.

    The operation may be retried once the database is back. An append that
    failed this way may have been committed just before the connection broke:
    re-read the stream before retrying it (a retry of a stored append raises
    :class:`ConcurrencyConflict`).
    """


class ConcurrencyConflict(StoreError):
    """Another writer appended the version this writer expected to append.

    Nothing of this writer's batch was stored. Re-read the stream and retry.
    """

    def __init__(self, stream: str, version: int, detail: str = "") -> None:
        message = (
            f"stream {stream!r} version {version} was appended by another writer first: "
            "reload the stream and retry"
        )
        super().__init__(f"{message} ({detail})" if detail else message)
        self.stream = stream
        self.version = version


class RecordDecodeError(StoreError):
    """A stored record cannot be decoded; nothing stored is changed."""

    def __init__(self, stream: str, version: int, message: str) -> None:
        super().__init__(f"stream {stream!r} version {version}: {message}")
        self.stream = stream
        self.version = version


class UnknownRecordType(RecordDecodeError):
    """A stored record's type tag is not declared by the machine."""

    def __init__(
        self, stream: str, version: int, tag: str, machine: str, detail: str | None = None
    ) -> None:
        super().__init__(
            stream,
            version,
            detail
            or f"record type {tag!r} is not declared by machine {machine} "
            "(declare it or add an upcaster)",
        )
        self.tag = tag


class CorruptRecord(RecordDecodeError):
    """A stored record's body is not valid JSON for its declared type."""
