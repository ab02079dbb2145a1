"""The event store: durable, ordered records, chosen by one URL.

The store knows nothing of machines: it appends and reads
:class:`~fasm_es.record.RawRecord` rows. Each backend sits on one of the
``eventsourcing`` library's recorders:

============================  =====================================================
URL                           backend
============================  =====================================================
``memory://``                 in-process (POPO recorder); gone when the process ends
``sqlite:///relative.db``     SQLite file (the embedded default), WAL mode
``sqlite:////abs/path.db``    the same, absolute path
``postgresql://u:p@h:5432/d`` PostgreSQL via psycopg 3, for more than one machine
============================  =====================================================

:func:`open_store` with no URL reads ``FASM_ES_DATABASE_URL``, and falls back to
``sqlite:///fasm_es.db``.

Appends are atomic per call and use optimistic concurrency: a record's
version must be the stream's next one, and if another writer took it first the
whole call stores nothing and raises :class:`~fasm_es.errors.ConcurrencyConflict`.
Reads stream in pages, so memory stays flat however long a stream or the log is.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Protocol, Self
from urllib.parse import urlsplit

from eventsourcing.persistence import Cipher

from fasm_es.errors import CorruptRecord, DatabaseURLError, StoreError
from fasm_es.record import EncodedRecord, RawRecord, RawSnapshot

URL_ENV = "FASM_ES_DATABASE_URL"
CIPHER_KEY_ENV = "FASM_ES_CIPHER_KEY"
DEFAULT_URL = "sqlite:///fasm_es.db"
DEFAULT_PAGE_SIZE = 2000


class Backend(Protocol):
    """What a storage backend provides; each wraps an ``eventsourcing`` recorder."""

    def insert(self, records: Sequence[EncodedRecord]) -> list[int]:
        """Append atomically; return global positions; raise ConcurrencyConflict."""
        ...

    def select_stream(self, stream: str, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        """Records of ``stream`` with ``gt < version <= lte``, in version order."""
        ...

    def select_log(self, gt: int, lte: int | None, limit: int) -> list[RawRecord]:
        """Records with ``gt < position <= lte``, in position order."""
        ...

    def last_version(self, stream: str) -> int:
        """The stream's highest version (0 if it has none)."""
        ...

    def last_versions(self, streams: Sequence[str]) -> dict[str, int]:
        """The highest version of each of ``streams`` that has records (absent: none)."""
        ...

    def last_position(self) -> int:
        """The highest global position (0 if the log is empty)."""
        ...

    def select_streams(self, gt: str, limit: int) -> list[str]:
        """Stream ids greater than ``gt``, in order."""
        ...

    def insert_snapshot(self, snapshot: RawSnapshot) -> None:
        """Store a snapshot; one already stored for that stream and version is kept."""
        ...

    def select_snapshot(self, stream: str, lte: int | None) -> RawSnapshot | None:
        """The newest snapshot of ``stream`` with version ``<= lte`` (any if None)."""
        ...

    def delete_snapshots(self, stream: str, before: int) -> int:
        """Delete the snapshots of ``stream`` with version ``< before``; return how many."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class EventStore:
    """Appends and reads records on one backend. Use :func:`open_store` to get one.

    With a ``cipher`` (see :func:`open_store`'s ``cipher_key``), record and
    snapshot bodies are encrypted before they are stored and decrypted as they
    are read; stream ids, versions and type tags stay readable.
    """

    def __init__(self, backend: Backend, url: str, *, cipher: Cipher | None = None) -> None:
        self.backend = backend
        self.url = url
        self.cipher = cipher

    def append(self, records: Sequence[EncodedRecord]) -> list[int]:
        """Append ``records`` in one transaction and return their global positions.

        Each record's version must be its stream's next version (records of one
        stream in one call must be consecutive). Raises
        :class:`~fasm_es.errors.ConcurrencyConflict` and stores nothing if any
        version is already taken.
        """
        if not records:
            return []
        if self.cipher is not None:
            encrypt = self.cipher.encrypt
            records = [replace(r, body=encrypt(r.body)) for r in records]
        return self.backend.insert(records)

    def read_stream(
        self,
        stream: str,
        *,
        after: int = 0,
        upto: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[RawRecord]:
        """Yield ``stream``'s records with ``after < version <= upto``, a page at a time."""
        while True:
            page = self.backend.select_stream(stream, after, upto, page_size)
            yield from self._decrypt(page) if self.cipher is not None else page
            if len(page) < page_size:
                return
            after = page[-1].version

    def read_log(
        self,
        *,
        after: int = 0,
        upto: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[RawRecord]:
        """Yield every record with ``after < position <= upto`` in global order, paged."""
        while True:
            page = self.backend.select_log(after, upto, page_size)
            yield from self._decrypt(page) if self.cipher is not None else page
            if len(page) < page_size:
                return
            after = page[-1].position

    def _decrypt(self, page: list[RawRecord]) -> Iterator[RawRecord]:
        assert self.cipher is not None
        for raw in page:
            try:
                body = self.cipher.decrypt(raw.body)
            except Exception as exc:
                raise CorruptRecord(
                    raw.stream,
                    raw.version,
                    f"cannot decrypt the record: wrong cipher key, or the stored bytes were "
                    f"changed ({type(exc).__name__})",
                ) from exc
            yield replace(raw, body=body)

    def last_version(self, stream: str) -> int:
        """The stream's highest version; 0 for a stream with no records."""
        return self.backend.last_version(stream)

    def last_versions(self, streams: Sequence[str]) -> dict[str, int]:
        """The highest version of each of ``streams`` that has records, in one read.

        Streams with no records are left out of the answer.
        """
        if not streams:
            return {}
        return self.backend.last_versions(streams)

    def last_position(self) -> int:
        """The global position of the newest record; 0 for an empty log."""
        return self.backend.last_position()

    def streams(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[str]:
        """Yield every stream id, in order, paged."""
        after = ""
        while True:
            page = self.backend.select_streams(after, page_size)
            yield from page
            if len(page) < page_size:
                return
            after = page[-1]

    def save_snapshot(self, snapshot: RawSnapshot) -> None:
        """Store a snapshot (kept beside the log; the log stays the source of truth)."""
        if self.cipher is not None:
            snapshot = replace(snapshot, body=self.cipher.encrypt(snapshot.body))
        self.backend.insert_snapshot(snapshot)

    def prune_snapshots(self, stream: str, *, keep_from: int) -> int:
        """Delete ``stream``'s snapshots older than version ``keep_from``; return how many.

        Snapshots are a cache beside the log, so nothing is lost; loading a
        version before ``keep_from`` then folds from an older snapshot or
        from the first record.
        """
        return self.backend.delete_snapshots(stream, keep_from)

    def load_snapshot(self, stream: str, *, at: int | None = None) -> RawSnapshot | None:
        """The newest snapshot of ``stream`` (at or before version ``at``), or None."""
        found = self.backend.select_snapshot(stream, at)
        if found is None or self.cipher is None:
            return found
        try:
            return replace(found, body=self.cipher.decrypt(found.body))
        except Exception as exc:
            raise CorruptRecord(
                stream, found.version, f"cannot decrypt the snapshot ({type(exc).__name__})"
            ) from exc

    def close(self) -> None:
        """Close the backend's connections."""
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({redact(self.url)!r})"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def new_cipher_key(size: int = 32) -> str:
    """A fresh random AES key (16, 24 or 32 bytes), base64-encoded, for ``cipher_key``."""
    from eventsourcing.cryptography import AESCipher

    return AESCipher.create_key(size)


def _cipher(key: str) -> Cipher:
    try:
        from eventsourcing.cryptography import AESCipher
        from eventsourcing.utils import Environment
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise StoreError(
            "encryption needs the 'cryptography' package: pip install 'fasm-es[encryption]'"
        ) from exc
    try:
        return AESCipher(Environment(env={AESCipher.CIPHER_KEY: key}))
    except (ValueError, OSError, binascii.Error) as exc:
        raise StoreError(
            f"invalid cipher key ({exc}): use a base64 AES key of 16, 24 or 32 bytes, "
            "for example from fasm_es.store.new_cipher_key()"
        ) from exc


def open_store(url: str | None = None, *, cipher_key: str | None = None) -> EventStore:
    """Open the event store named by ``url``, ``$FASM_ES_DATABASE_URL`` or the default.

    ``cipher_key`` (or ``$FASM_ES_CIPHER_KEY``) turns on encryption at rest
    with AES-GCM: a base64 key of 16, 24 or 32 bytes. Off by default.

    Raises :class:`~fasm_es.errors.DatabaseURLError` naming the URL and the fix
    when it is malformed, unsupported or cannot be opened.
    """
    url = url or os.environ.get(URL_ENV) or DEFAULT_URL
    key = cipher_key or os.environ.get(CIPHER_KEY_ENV)
    cipher = _cipher(key) if key else None
    return EventStore(_backend(url), url, cipher=cipher)


def _backend(url: str) -> Backend:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "memory":
        from fasm_es.backends.memory import MemoryBackend

        return MemoryBackend()
    if scheme == "sqlite":
        from fasm_es.backends.sqlite import SQLiteBackend, sqlite_path

        return SQLiteBackend(sqlite_path(url))
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from fasm_es.backends.postgres import PostgresBackend

        return PostgresBackend(url)
    raise DatabaseURLError(
        f"unsupported database URL {redact(url)!r}: use memory://, sqlite:///path/to/file.db "
        f"or postgresql://user:password@host:port/database (or set {URL_ENV})"
    )
