"""In-process backend on the ``eventsourcing`` POPO recorder (``memory://``)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from threading import Lock

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder

from fasm_es.backends.common import check_consecutive, conflict_for
from fasm_es.record import EncodedRecord, RawRecord, RawSnapshot


class MemoryBackend:
    """Records live in this process only; for tests and simulation."""

    def __init__(self) -> None:
        self.recorder = POPOApplicationRecorder()
        self.snapshots = POPOAggregateRecorder()
        # Pruned snapshots are hidden here: the recorder cannot delete.
        self._pruned_below: dict[str, int] = {}
        # version -> global position per stream: the recorder's public
        # select_events does not return positions.
        self._positions: dict[str, list[int]] = {}
        self._lock = Lock()

    def insert(self, records: Sequence[EncodedRecord]) -> list[int]:
        events = [StoredEvent(r.stream, r.version, r.tag, r.body) for r in records]
        check_consecutive(records)
        with self._lock:
            try:
                ids = self.recorder.insert_events(events)
            except IntegrityError as exc:
                taken = next(
                    (r for r in records if len(self._positions.get(r.stream, ())) >= r.version),
                    records[0],
                )
                raise conflict_for(taken, "version already stored") from exc
            assert ids is not None
            for r, position in zip(records, ids, strict=True):
                self._positions.setdefault(r.stream, []).append(position)
            return list(ids)

    def select_stream(self, stream: str, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        with self._lock:
            positions = self._positions.get(stream, [])
            events = self.recorder.select_events(stream, gt=gt, lte=lte, limit=limit)
            return [
                RawRecord(
                    stream,
                    e.originator_version,
                    positions[e.originator_version - 1],
                    e.topic,
                    e.state,
                )
                for e in events
            ]

    def select_log(self, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        notifications = self.recorder.select_notifications(
            gt, limit, stop=lte, inclusive_of_start=False
        )
        return [
            RawRecord(str(n.originator_id), n.originator_version, n.id, n.topic, n.state)
            for n in notifications
        ]

    def last_version(self, stream: str) -> int:
        with self._lock:
            return len(self._positions.get(stream, ()))

    def last_versions(self, streams: Sequence[str]) -> dict[str, int]:
        with self._lock:
            found = ((s, len(self._positions.get(s, ()))) for s in streams)
            return {s: n for s, n in found if n}

    def last_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def select_streams(self, gt: str, limit: int) -> list[str]:
        with self._lock:
            return sorted(s for s in self._positions if s > gt)[:limit]

    def insert_snapshot(self, snapshot: RawSnapshot) -> None:
        event = StoredEvent(snapshot.stream, snapshot.version, snapshot.tag, snapshot.body)
        with contextlib.suppress(IntegrityError):
            self.snapshots.insert_events([event])

    def select_snapshot(self, stream: str, lte: int | None) -> RawSnapshot | None:
        found = self.snapshots.select_events(stream, lte=lte, desc=True, limit=1)
        if not found or found[0].originator_version < self._pruned_below.get(stream, 0):
            return None
        s = found[0]
        return RawSnapshot(stream, s.originator_version, s.topic, s.state)

    def delete_snapshots(self, stream: str, before: int) -> int:
        with self._lock:
            below = self._pruned_below.get(stream, 0)
            if before <= below:
                return 0
            older = self.snapshots.select_events(stream, lte=before - 1)
            self._pruned_below[stream] = before
            return sum(1 for s in older if s.originator_version >= below)

    def close(self) -> None:
        """Nothing to release."""
