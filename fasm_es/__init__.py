"""fasm-es: event-sourced Fallible Async State Machines.

Declare a machine once (:class:`StateMachine`), submit inputs through
:class:`Streams` on an :class:`EventStore` opened by URL (:func:`open_store`),
and every accepted input becomes a durable :class:`Record` that folds back
into the same state. The exceptions are drawn as a tree in :mod:`fasm_es.errors`.
"""

from fasm_es.actions import Action, Actions, Tracked, Untracked
from fasm_es.audit import ChainBreak, Head, VerifyReport, verify
from fasm_es.clock import Clock, ManualClock, SystemClock
from fasm_es.dispatch import IdempotencyKey, RetryPolicy, StuckAction
from fasm_es.engine import Engine, EngineStats
from fasm_es.errors import (
    ActionsFull,
    CompletionNotOutstanding,
    ConcurrencyConflict,
    CorruptRecord,
    DatabaseURLError,
    DefinitionError,
    FasmError,
    InvalidInput,
    MachineError,
    RecordDecodeError,
    RecordTooLarge,
    Rejection,
    ReplayDivergence,
    StoreError,
    StoreUnavailable,
    StreamNotOwned,
    UnknownRecordType,
)
from fasm_es.fold import StreamState, apply_record, fold, restore_actions
from fasm_es.inputs import ActionId, Completed, Input, Metadata, Normal
from fasm_es.machine import NoTracked, StateMachine
from fasm_es.outstanding import MemoryCheckpoints
from fasm_es.record import Codec, EncodedRecord, RawRecord, Record
from fasm_es.schema import upcaster
from fasm_es.store import EventStore, open_store
from fasm_es.streams import SnapshotWarning, Staged, Streams
from fasm_es.sync import SyncEngine
from fasm_es.timers import Timer, TimerFired

__all__ = [
    "Action",
    "ActionId",
    "Actions",
    "ActionsFull",
    "ChainBreak",
    "Clock",
    "Codec",
    "Completed",
    "CompletionNotOutstanding",
    "ConcurrencyConflict",
    "CorruptRecord",
    "DatabaseURLError",
    "DefinitionError",
    "EncodedRecord",
    "Engine",
    "EngineStats",
    "EventStore",
    "FasmError",
    "Head",
    "IdempotencyKey",
    "Input",
    "InvalidInput",
    "MachineError",
    "ManualClock",
    "MemoryCheckpoints",
    "Metadata",
    "NoTracked",
    "Normal",
    "RawRecord",
    "Record",
    "RecordDecodeError",
    "RecordTooLarge",
    "Rejection",
    "ReplayDivergence",
    "RetryPolicy",
    "SnapshotWarning",
    "Staged",
    "StateMachine",
    "StoreError",
    "StoreUnavailable",
    "StreamNotOwned",
    "StreamState",
    "Streams",
    "StuckAction",
    "SyncEngine",
    "SystemClock",
    "Timer",
    "TimerFired",
    "Tracked",
    "UnknownRecordType",
    "Untracked",
    "VerifyReport",
    "apply_record",
    "fold",
    "open_store",
    "restore_actions",
    "upcaster",
    "verify",
]

__version__ = "0.1.0"
