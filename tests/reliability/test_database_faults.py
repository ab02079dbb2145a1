"""Database faults: PostgreSQL restarted mid-load, and a SQLite file locked by another process.

- PostgreSQL restarted under load: the engine is not restarted; callers
  during the outage get :class:`~fasm_es.errors.StoreUnavailable` (retryable,
  and saying so), they retry under the same idempotency key, and afterwards
  the engine goes on: every acknowledged input is in the log once, every
  tracked action is completed, nothing is doubled.
- A SQLite file whose write lock another process holds: a short hold is
  waited out; a hold longer than the lock timeout gives a clear retryable
  error, appends nothing, and the file stays sound.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import record_figures
from torture import LogFacts
from workers.machine import Deposit, Ledger, Post, Posted

from fasm_es import (
    Engine,
    EventStore,
    FasmError,
    IdempotencyKey,
    RetryPolicy,
    StoreUnavailable,
    open_store,
    verify,
)
from fasm_es.backends.sqlite import SQLiteBackend

PATIENT = RetryPolicy(max_attempts=200, base_delay=0.05, max_delay=0.5)


async def post(action: Post, key: IdempotencyKey) -> Posted:
    return Posted(receipt=f"R-{key}")


class Load:
    """Submitters that retry an input until it has an answer, noting every error they meet."""

    def __init__(self, engine: Engine[Any, Any, Any, Any, Any], streams: int = 8) -> None:
        self.engine = engine
        self.streams = [f"acct-{i}" for i in range(streams)]
        self.acks: dict[str, tuple[str, int]] = {}
        self.errors: Counter[str] = Counter()
        self.messages: list[str] = []
        self.stop = asyncio.Event()
        self.acked_at: list[float] = []
        self._next = 0

    async def submitter(self) -> None:
        while not self.stop.is_set():
            self._next += 1
            ref = f"in-{self._next}"
            stream = self.streams[self._next % len(self.streams)]
            amount = 1 + self._next % 96  # never a multiple of 97: no rejections here
            while True:
                try:
                    record = await self.engine.submit(
                        stream, Deposit(ref=ref, amount=amount), idempotency_key=ref
                    )
                except FasmError as exc:
                    self.errors[type(exc).__name__] += 1
                    if len(self.messages) < 5:
                        self.messages.append(str(exc))
                    await asyncio.sleep(0.05)
                    continue
                self.acks[ref] = (stream, record.version)
                self.acked_at.append(time.monotonic())
                break

    async def run(self, concurrency: int) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.submitter()) for _ in range(concurrency)]


@pytest.mark.postgres
def test_postgres_restarted_under_load_the_engine_goes_on_and_loses_nothing(
    postgres_cluster: Any,
) -> None:
    url = postgres_cluster.url

    async def scenario() -> tuple[Load, float, float]:
        engine = Engine(Ledger(), url, handlers={Post: post}, retry=PATIENT)
        async with engine:
            load = Load(engine)
            tasks = await load.run(16)
            await asyncio.sleep(1.5)
            down = time.monotonic()
            # An immediate stop is a crash for the server; start recovers it.
            await asyncio.to_thread(postgres_cluster.stop)
            # Stay down until a caller has met the outage. A short outage can
            # pass unseen: callers waiting for a pooled connection get a fresh
            # one once the server is back. Past the pool timeout (the URL's
            # connect_timeout, 5 s) every waiting caller gets StoreUnavailable.
            await asyncio.sleep(1.0)
            deadline = time.monotonic() + 30
            while not load.errors["StoreUnavailable"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.to_thread(postgres_cluster.start)
            up = time.monotonic()
            await asyncio.sleep(3.0)
            load.stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 120)
            await engine.idle(timeout=60)
            assert engine.stuck() == []
        return load, down, up

    load, down, up = asyncio.run(scenario())

    assert load.errors["StoreUnavailable"] > 0, "the outage was never noticed"
    assert set(load.errors) <= {"StoreUnavailable", "ConcurrencyConflict"}, load.errors
    assert all("PostgreSQL" in m and "retry" in m for m in load.messages), load.messages
    after = sum(1 for t in load.acked_at if t > up)
    assert after > 0, "nothing was acknowledged after the restart"
    facts = LogFacts()
    facts.read(url)
    lost = [ref for ref in load.acks if facts.refs.get(ref, 0) != 1]
    assert lost == []
    assert {ref: facts.at[ref] for ref in load.acks} == load.acks
    assert facts.duplicates() == []
    assert facts.outstanding() == set()
    assert all(n == 1 for n in facts.completed.values())
    record_figures(
        "postgres-restart",
        {
            "acknowledged": len(load.acks),
            "acknowledged_after_restart": after,
            "errors_during_outage": dict(load.errors),
            "outage_seconds": round(up - down, 2),
            "losses": len(lost),
            "duplicates": len(facts.duplicates()),
        },
    )


# -- SQLite locked by another process -------------------------------------------------------

LOCKER = """
import sqlite3, sys, time
from pathlib import Path
db, ready, hold = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
ready.write_text("locked")
time.sleep(hold)
conn.execute("ROLLBACK")
"""


def hold_lock(db: Path, seconds: float, tmp_path: Path) -> subprocess.Popen[bytes]:
    """Another process takes the file's write lock and keeps it for ``seconds``."""
    ready = tmp_path / "locked"
    ready.unlink(missing_ok=True)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(ready), str(seconds)])
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert locker.poll() is None and time.monotonic() < deadline, "the locker did not start"
        time.sleep(0.01)
    return locker


def log_bytes(store: EventStore) -> list[tuple[str, int, int, str, bytes]]:
    return [(r.stream, r.version, r.position, r.tag, r.body) for r in store.read_log()]


def sound(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with open_store(f"sqlite:///{db}") as store:
        assert verify(store).ok


def test_a_short_lock_by_another_process_is_waited_out(tmp_path: Path) -> None:
    db = tmp_path / "store.db"

    async def scenario() -> list[int]:
        async with Engine(Ledger(), f"sqlite:///{db}", handlers={Post: post}) as engine:
            await engine.submit("a", Deposit(ref="first", amount=1))
            await engine.idle(timeout=10)
            locker = await asyncio.to_thread(hold_lock, db, 1.5, tmp_path)
            records = await asyncio.gather(
                *(engine.submit("a", Deposit(ref=f"r{i}", amount=2)) for i in range(5))
            )
            await asyncio.to_thread(locker.wait, 30)
            await engine.idle(timeout=10)
            return [r.version for r in records]

    versions = asyncio.run(scenario())
    assert sorted(versions) == [3, 4, 5, 6, 7]
    sound(db)


def test_a_long_lock_gives_a_clear_retryable_error_and_appends_nothing(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    store = EventStore(SQLiteBackend(str(db), lock_timeout=1), f"sqlite:///{db}")

    async def scenario() -> None:
        async with Engine(Ledger(), store, handlers={Post: post}) as engine:
            await engine.submit("a", Deposit(ref="first", amount=1))
            await engine.idle(timeout=10)
            before = log_bytes(store)
            locker = await asyncio.to_thread(hold_lock, db, 6, tmp_path)
            with pytest.raises(StoreUnavailable, match=r"(?i)locked.*retry"):
                await engine.submit("a", Deposit(ref="second", amount=2), idempotency_key="k2")
            assert log_bytes(store) == before
            await asyncio.to_thread(locker.wait, 30)
            record = await engine.submit("a", Deposit(ref="second", amount=2), idempotency_key="k2")
            assert record.version == 3
            await engine.idle(timeout=10)
            assert (await engine.state("a")).posted == 2

    try:
        asyncio.run(scenario())
    finally:
        store.close()
    sound(db)
