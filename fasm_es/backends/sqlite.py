"""SQLite file backend (the embedded default) on the ``eventsourcing`` SQLite recorder.

The file is opened in WAL mode with SQLite's default ``synchronous=FULL``:
an append returns only after its transaction is on disk. The global position is the table's
rowid, which SQLite assigns in commit order because it has one writer at a time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteApplicationRecorder,
    SQLiteDatastore,
)

from fasm_es.backends.common import check_consecutive, conflict_for
from fasm_es.errors import DatabaseURLError, StoreError, StoreUnavailable
from fasm_es.record import EncodedRecord, RawRecord, RawSnapshot

TABLE = "fasm_records"
SNAPSHOT_TABLE = "fasm_snapshots"


def sqlite_path(url: str) -> str:
    """The file path in a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise DatabaseURLError(
            f"malformed SQLite URL {url!r}: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    path = url[len(prefix) :]
    if path in (":memory:", "") or "mode=memory" in path:
        raise DatabaseURLError(
            f"SQLite URL {url!r} names an in-memory database: use memory:// for a store "
            "that lives in this process"
        )
    return path


def _failure(path: str, doing: str, exc: Exception, lock_timeout: float) -> StoreError:
    """The error for a failed operation: retryable when another process held the lock."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return StoreUnavailable(
            f"SQLite file {path!r}: {doing} failed: the database is locked by another "
            f"connection or process (waited {lock_timeout:g} s); nothing was written: "
            "retry once it is released"
        )
    return StoreError(f"SQLite file {path!r}: {doing} failed: {exc}")


class SQLiteBackend:
    """A store in one SQLite file.

    A write waits up to ``lock_timeout`` seconds for another connection or
    process that holds the file's write lock, then raises
    :class:`~fasm_es.errors.StoreUnavailable` (retryable; nothing written).
    """

    def __init__(self, path: str, *, lock_timeout: int = 30) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise DatabaseURLError(
                f"cannot open SQLite file {path!r}: directory {str(parent)!r} does not exist "
                "(create it or fix the URL)"
            )
        try:
            self.datastore = SQLiteDatastore(
                db_name=path, lock_timeout=lock_timeout, originator_id_type="text"
            )
            self.recorder = SQLiteApplicationRecorder(self.datastore, events_table_name=TABLE)
            self.recorder.create_table()
            self.snapshots = SQLiteAggregateRecorder(
                self.datastore, events_table_name=SNAPSHOT_TABLE
            )
            self.snapshots.create_table()
            with self.datastore.transaction(commit=False) as c:
                c.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {TABLE} LIMIT 1)")
        except (PersistenceError, sqlite3.Error) as exc:
            raise DatabaseURLError(
                f"cannot open SQLite file {path!r}: {exc} (is it a fasm-es database, "
                "and readable and writable?)"
            ) from exc

    def _query(self, statement: str, params: Sequence[Any]) -> list[Any]:
        try:
            with self.datastore.transaction(commit=False) as c:
                cursor = c.sqlite_cursor
                cursor.row_factory = None  # plain tuples: the pool's Row factory costs per row
                cursor.execute(statement, params)
                return cursor.fetchall()
        except PersistenceError as exc:
            raise _failure(self.path, "reading", exc, self.lock_timeout) from exc

    def insert(self, records: Sequence[EncodedRecord]) -> list[int]:
        check_consecutive(records)
        events = [StoredEvent(r.stream, r.version, r.tag, r.body) for r in records]
        try:
            ids = self.recorder.insert_events(events)
        except IntegrityError as exc:
            taken = next(
                (r for r in records if self.last_version(r.stream) >= r.version), records[0]
            )
            raise conflict_for(taken, "version already stored") from exc
        except PersistenceError as exc:
            raise _failure(self.path, "append", exc, self.lock_timeout) from exc
        assert ids is not None
        return list(ids)

    def select_stream(self, stream: str, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        statement = (
            f"SELECT originator_version, rowid, topic, state FROM {TABLE} "
            "WHERE originator_id=? AND originator_version>? "
        )
        params: list[Any] = [stream, gt]
        if lte is not None:
            statement += "AND originator_version<=? "
            params.append(lte)
        statement += "ORDER BY originator_version LIMIT ?"
        params.append(limit)
        rows = self._query(statement, params)
        return [RawRecord(stream, v, position, tag, body) for v, position, tag, body in rows]

    def select_log(self, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        statement = (
            f"SELECT originator_id, originator_version, rowid, topic, state FROM {TABLE} "
            "WHERE rowid>? "
        )
        params: list[Any] = [gt]
        if lte is not None:
            statement += "AND rowid<=? "
            params.append(lte)
        statement += "ORDER BY rowid LIMIT ?"
        params.append(limit)
        return [RawRecord(r[0], r[1], r[2], r[3], r[4]) for r in self._query(statement, params)]

    def last_version(self, stream: str) -> int:
        rows = self._query(
            f"SELECT MAX(originator_version) FROM {TABLE} WHERE originator_id=?", [stream]
        )
        return int(rows[0][0] or 0)

    def last_versions(self, streams: Sequence[str]) -> dict[str, int]:
        # One parameter however many streams: their ids as a JSON array.
        rows = self._query(
            f"SELECT originator_id, MAX(originator_version) FROM {TABLE} "
            "WHERE originator_id IN (SELECT value FROM json_each(?)) GROUP BY originator_id",
            [json.dumps(list(streams))],
        )
        return {r[0]: int(r[1]) for r in rows}

    def last_position(self) -> int:
        return int(self._query(f"SELECT MAX(rowid) FROM {TABLE}", [])[0][0] or 0)

    def select_streams(self, gt: str, limit: int) -> list[str]:
        rows = self._query(
            f"SELECT DISTINCT originator_id FROM {TABLE} WHERE originator_id>? "
            "ORDER BY originator_id LIMIT ?",
            [gt, limit],
        )
        return [r[0] for r in rows]

    def insert_snapshot(self, snapshot: RawSnapshot) -> None:
        event = StoredEvent(snapshot.stream, snapshot.version, snapshot.tag, snapshot.body)
        try:
            self.snapshots.insert_events([event])
        except IntegrityError:
            pass  # a snapshot of that version is already stored
        except PersistenceError as exc:
            raise _failure(self.path, "snapshot", exc, self.lock_timeout) from exc

    def delete_snapshots(self, stream: str, before: int) -> int:
        try:
            with self.datastore.transaction(commit=True) as c:
                cursor = c.sqlite_cursor
                cursor.execute(
                    f"DELETE FROM {SNAPSHOT_TABLE} WHERE originator_id=? AND originator_version<?",
                    [stream, before],
                )
                return int(cursor.rowcount)
        except PersistenceError as exc:
            raise _failure(self.path, "snapshot", exc, self.lock_timeout) from exc

    def select_snapshot(self, stream: str, lte: int | None) -> RawSnapshot | None:
        statement = (
            f"SELECT originator_version, topic, state FROM {SNAPSHOT_TABLE} WHERE originator_id=? "
        )
        params: list[Any] = [stream]
        if lte is not None:
            statement += "AND originator_version<=? "
            params.append(lte)
        rows = self._query(statement + "ORDER BY originator_version DESC LIMIT 1", params)
        return RawSnapshot(stream, rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def close(self) -> None:
        self.datastore.close()
