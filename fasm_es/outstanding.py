"""Which streams have tracked actions outstanding, without replaying the whole log at start.

The log is the source of truth: a record names the tracked actions its input
emitted and, for a completion, the action it completed. :class:`OutstandingIndex`
folds exactly that (no STF, no state) into ``stream -> outstanding ids`` as of
a global log position. A *checkpoint* stores the index at a position, so a
start reads only the records appended since the last checkpoint.

Checkpoints are kept beside the snapshots of the event store
(:class:`StoreCheckpoints`), under reserved ids starting with ``$fasm-es/``
that no user stream may take. A checkpoint is an optimisation: losing it
only means the next start scans the log from the beginning. Engines that
share a store also share the checkpoint; since the index is a pure function
of the log up to its position, any of them may advance it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from fasm_es.actions import Tracked
from fasm_es.inputs import ActionId, Completed
from fasm_es.record import Codec, RawSnapshot, Record
from fasm_es.store import EventStore

RESERVED_PREFIX = "$fasm-es/"
"""Stream ids with this prefix are the engine's own (checkpoints); users may not take them."""

OUTSTANDING_CHECKPOINT = RESERVED_PREFIX + "outstanding"
CHECKPOINT_TAG = "Checkpoint"


class Checkpoints(Protocol):
    """A durable place for small engine bodies, each saved at an increasing log position."""

    def load(self, key: str) -> tuple[int, bytes] | None:
        """The newest (position, body) saved under ``key``, or None."""
        ...

    def save(self, key: str, position: int, body: bytes) -> None:
        """Save ``body`` as of ``position`` (a save at a position already saved is ignored)."""
        ...


class StoreCheckpoints:
    """Checkpoints kept as snapshots of reserved ids in the event store itself."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def load(self, key: str) -> tuple[int, bytes] | None:
        """The newest checkpoint saved under ``key``."""
        found = self.store.load_snapshot(key)
        return None if found is None else (found.version, found.body)

    def save(self, key: str, position: int, body: bytes) -> None:
        """Save a checkpoint and delete the older ones under ``key``.

        A log position of 0 (empty log) needs none.
        """
        if position > 0:
            self.store.save_snapshot(RawSnapshot(key, position, CHECKPOINT_TAG, body))
            self.store.prune_snapshots(key, keep_from=position)


class MemoryCheckpoints:
    """Checkpoints in a dict: for tests, or to run without touching the store."""

    def __init__(self) -> None:
        self.saved: dict[str, tuple[int, bytes]] = {}

    def load(self, key: str) -> tuple[int, bytes] | None:
        """The checkpoint saved under ``key``."""
        return self.saved.get(key)

    def save(self, key: str, position: int, body: bytes) -> None:
        """Keep the checkpoint if it is newer than the one held."""
        held = self.saved.get(key)
        if held is None or position > held[0]:
            self.saved[key] = (position, body)


class OutstandingIndex:
    """``stream -> ids of tracked actions outstanding``, as of log ``position``."""

    def __init__(
        self, position: int = 0, outstanding: dict[str, set[ActionId]] | None = None
    ) -> None:
        self.position = position
        self.outstanding: dict[str, set[ActionId]] = outstanding or {}

    def apply(self, record: Record[Any, Any, Any, Any]) -> None:
        """Account for one record (records must come in log order)."""
        ids = self.outstanding.get(record.stream)
        if isinstance(record.input, Completed) and ids is not None:
            ids.discard(record.input.id)
        emitted = [a.id for a in record.actions if isinstance(a, Tracked)]
        if emitted:
            if ids is None:
                ids = self.outstanding[record.stream] = set()
            ids.update(emitted)
        if ids is not None and not ids:
            del self.outstanding[record.stream]
        self.position = max(self.position, record.position)

    def apply_all(self, records: Iterable[Record[Any, Any, Any, Any]]) -> int:
        """Account for ``records`` in order; return how many there were."""
        count = 0
        for record in records:
            self.apply(record)
            count += 1
        return count

    def catch_up(self, store: EventStore, codec: Codec[Any, Any, Any, Any]) -> int:
        """Read every record after ``position`` from ``store``; return how many were read."""
        return self.apply_all(
            codec.decode(raw)
            for raw in store.read_log(after=self.position)
            if not raw.stream.startswith(RESERVED_PREFIX)
        )

    def streams(self) -> list[str]:
        """The streams with at least one tracked action outstanding, in order."""
        return sorted(self.outstanding)

    def holds(self, stream: str, action_id: ActionId) -> bool:
        """Whether tracked action ``action_id`` of ``stream`` is outstanding as of ``position``."""
        return action_id in self.outstanding.get(stream, ())

    def count(self) -> int:
        """How many tracked actions are outstanding in all."""
        return sum(len(ids) for ids in self.outstanding.values())

    # -- checkpoints -----------------------------------------------------------------

    def encode(self) -> bytes:
        """The index as JSON (ids keep their int or str type)."""
        body = {
            "position": self.position,
            "outstanding": {
                stream: sorted(ids, key=lambda i: (isinstance(i, str), i))
                for stream, ids in sorted(self.outstanding.items())
            },
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> OutstandingIndex:
        """The index encoded by :meth:`encode`; raises ``ValueError`` if malformed."""
        data = json.loads(body)
        position = data["position"]
        outstanding = data["outstanding"]
        if not isinstance(position, int) or not isinstance(outstanding, dict):
            raise ValueError("an outstanding checkpoint needs an int position and a dict")
        return cls(position, {str(s): set(ids) for s, ids in outstanding.items()})

    @classmethod
    def load(cls, checkpoints: Checkpoints | None) -> OutstandingIndex:
        """The checkpointed index, or an empty one at position 0 (scan from the start)."""
        saved = checkpoints.load(OUTSTANDING_CHECKPOINT) if checkpoints is not None else None
        if saved is None:
            return cls()
        try:
            return cls.decode(saved[1])
        except (ValueError, KeyError, TypeError):
            # A checkpoint is an optimisation; an unreadable one means a full scan.
            return cls()

    def save(self, checkpoints: Checkpoints | None) -> None:
        """Checkpoint the index at its position."""
        if checkpoints is not None:
            checkpoints.save(OUTSTANDING_CHECKPOINT, self.position, self.encode())


class OutstandingTracker:
    """Keeps an :class:`OutstandingIndex` caught up with the log and checkpointed.

    Safe to call from several threads: one catch-up runs at a time.
    """

    def __init__(
        self, store: EventStore, codec: Codec[Any, Any, Any, Any], checkpoints: Checkpoints | None
    ) -> None:
        self.store = store
        self.codec = codec
        self.checkpoints = checkpoints
        self.index = OutstandingIndex()
        self._lock = threading.Lock()

    def advance(self, *, load: bool = False) -> int:
        """Read the records after the index's position, checkpoint it; return how many were read.

        With ``load`` the index is first replaced by the last checkpoint.
        """
        with self._lock:
            if load:
                self.index = OutstandingIndex.load(self.checkpoints)
            before = self.index.position
            read = self.index.catch_up(self.store, self.codec)
            if self.index.position > before:
                self.index.save(self.checkpoints)
            return read
