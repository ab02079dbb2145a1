"""Waiting for new records: LISTEN/NOTIFY on PostgreSQL, polling elsewhere.

The event store's PostgreSQL recorder issues ``NOTIFY`` on its channel with
every append. A follower on a PostgreSQL store listens on that channel and
wakes as soon as a record commits; it still wakes every ``interval`` seconds
in case a notification was missed (a dropped connection, say). On SQLite and
in memory there is nothing to listen to, so the follower polls every
``interval`` seconds.

``LISTEN`` is issued before the follower's first catch-up, so a record
appended while it catches up is never waited for past one interval.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from fasm_es.store import EventStore, redact

log = logging.getLogger(__name__)


class Wakeup(Protocol):
    """Blocks until new records may be there, ``interval`` passes, or ``stop`` is set."""

    def wait(self, interval: float, stop: threading.Event) -> None:
        """Return when woken, after ``interval`` seconds, or soon after ``stop`` is set."""
        ...

    def close(self) -> None:
        """Release what the waiting holds."""
        ...


class Polling:
    """Wakes every ``interval`` seconds."""

    def wait(self, interval: float, stop: threading.Event) -> None:
        """Sleep ``interval`` seconds, or less if ``stop`` is set."""
        stop.wait(interval)

    def close(self) -> None:
        """Nothing to release."""


class Listening:
    """Wakes on ``NOTIFY`` from the PostgreSQL event store, or every ``interval`` seconds."""

    STEP = 0.2
    """How often the wait looks at ``stop`` (seconds)."""

    def __init__(self, conninfo: dict[str, Any], channel: str, url: str) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._url = url
        self._connection: Any = None
        self._connect()

    def _connect(self) -> None:
        import psycopg
        from psycopg.sql import SQL, Identifier

        try:
            connection = psycopg.connect(**self._conninfo, autocommit=True)
            connection.execute(SQL("LISTEN {}").format(Identifier(self._channel)))
        except psycopg.Error as exc:
            log.warning("cannot listen on %s (%s): polling instead", redact(self._url), exc)
            self._connection = None
            return
        self._connection = connection

    def wait(self, interval: float, stop: threading.Event) -> None:
        """Return at the first notification, after ``interval``, or once ``stop`` is set."""
        import psycopg

        if self._connection is None:
            self._connect()
            if self._connection is None:
                stop.wait(interval)
                return
        waited = 0.0
        while waited < interval and not stop.is_set():
            step = min(self.STEP, interval - waited)
            try:
                for _ in self._connection.notifies(timeout=step, stop_after=1):
                    return
            except psycopg.Error as exc:
                log.warning("lost the LISTEN connection (%s): reconnecting", exc)
                self.close()
                return
            waited += step

    def close(self) -> None:
        """Close the listening connection."""
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None


def wakeup_for(store: EventStore) -> Wakeup:
    """Listening for a PostgreSQL store, polling for any other."""
    backend = store.backend
    recorder = getattr(backend, "recorder", None)
    channel = getattr(recorder, "channel_name", None)
    params = getattr(backend, "params", None)
    if channel is None or params is None or not hasattr(params, "dbname"):
        return Polling()
    conninfo: dict[str, Any] = {
        "dbname": params.dbname,
        "user": params.user or None,
        "password": params.password or None,
        "host": params.host or None,
        "port": params.port,
        "connect_timeout": max(1, round(params.connect_timeout)),
    }
    return Listening({k: v for k, v in conninfo.items() if v is not None}, channel, store.url)
