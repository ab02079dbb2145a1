"""What the store tests share: where a store lives, and valid records to put in it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from examples.counter import Counter, Increment, Incremented
from fasm_es import Codec, EncodedRecord, EventStore, Metadata, Normal, Untracked
from fasm_es.backends.memory import MemoryBackend
from fasm_es.record import GENESIS
from fasm_es.store import open_store

START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MakeRecords = Callable[..., list[EncodedRecord]]


class StoreTarget:
    """One database on one backend; :meth:`open` gives a new connection to it."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url
        self.durable = backend != "memory"
        self._memory = MemoryBackend() if backend == "memory" else None
        self._opened: list[EventStore] = []

    def open(self) -> EventStore:
        """A store on this target; the fixture closes it after the test."""
        if self._memory is not None:
            store = EventStore(self._memory, self.url)
        else:
            store = open_store(self.url)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        """Close every store opened by :meth:`open`."""
        for store in self._opened:
            store.close()


def counter_records(
    stream: str, count: int, *, start: int = 1, prev_hash: str = GENESIS
) -> list[EncodedRecord]:
    """``count`` valid counter records of ``stream`` from version ``start``, chained."""
    codec: Codec[Any, Any, Any, Any] = Codec(Counter.types)
    records = []
    total = sum(range(1, start))
    for version in range(start, start + count):
        meta = Metadata(accepted_at=START + timedelta(seconds=version), actor="tester")
        action = Untracked(Incremented(previous=total, current=total + version))
        record = codec.encode(
            stream, version, prev_hash, Normal(Increment(by=version), meta), [action]
        )
        records.append(record)
        prev_hash = record.hash
        total += version
    return records
