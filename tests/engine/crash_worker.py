"""A service process for the crash test: the Jobs machine on a SQLite file, work done at a gateway.

Run as ``python tests/engine/crash_worker.py PHASE DB LEDGER OUT``. Each job's
:class:`Work` is a charge at a :class:`FakeGateway` whose ledger is a file
(so it outlives this process), under the action's idempotency key.

- ``first``: jobs ``ok-*`` are charged and completed; jobs ``hang-*`` are
  charged but their handler never returns (the answer is lost when the
  process dies); then jobs ``cut-*`` are submitted and, right after their
  transaction commits and before anything is dispatched, the process writes
  the committed keys to OUT and freezes, for the test to SIGKILL it.
- ``second``: a fresh engine on the same files; restore dispatches every
  outstanding action again. Once all is done it writes the keys its handler
  saw, and the engine's counters, to OUT and exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine_support import Done, Jobs, Start, Work

from examples.payments.gateway import FakeGateway
from fasm_es import Engine, IdempotencyKey, Normal, Record, Tracked


def write(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON, durably, then rename it into place (never half-written)."""
    partial = path.with_suffix(".partial")
    with open(partial, "w") as f:
        json.dump(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


async def first(db: str, gateway: FakeGateway, out: Path) -> None:
    armed = False

    async def work(action: Work, key: IdempotencyKey) -> Done:
        await asyncio.to_thread(gateway.charge, str(key), 1, action.job)
        if action.job.startswith("hang-"):
            await asyncio.Event().wait()  # the answer never comes back
        return Done(output="charged")

    def freeze_after_commit(records: Sequence[Record[Any, Any, Any, Any]]) -> None:
        cut = [
            r
            for r in records
            if isinstance(r.input, Normal) and r.input.value.job.startswith("cut-")
        ]
        if not armed or not cut:
            return
        keys = [f"{r.stream}/{a.id}" for r in cut for a in r.actions if isinstance(a, Tracked)]
        write(out, {"committed": keys})
        time.sleep(3600)  # committed, not dispatched: wait here for SIGKILL

    engine = Engine(Jobs(), db, handlers={Work: work}, on_commit=freeze_after_commit)
    async with engine:
        await engine.submit("a", Start(job="ok-1"))
        await engine.submit("b", Start(job="ok-2"))
        await engine.idle(timeout=30)
        await engine.submit("a", Start(job="hang-1"))
        await engine.submit("b", Start(job="hang-2"))
        while len(gateway.charged()) < 4:
            await asyncio.sleep(0.01)
        armed = True
        await asyncio.gather(
            engine.submit("a", Start(job="cut-1")),
            engine.submit("b", Start(job="cut-2")),
            engine.submit("c", Start(job="cut-3")),
        )
    raise SystemExit("the process should have frozen after committing the cut-* jobs")


async def second(db: str, gateway: FakeGateway, out: Path) -> None:
    seen: list[str] = []

    def work(action: Work, key: IdempotencyKey) -> Done:
        seen.append(str(key))
        gateway.charge(str(key), 1, action.job)
        return Done(output="charged")

    async with Engine(Jobs(), db, handlers={Work: work}) as engine:
        await engine.idle(timeout=60)
        stats = engine.stats()
        outstanding = {s: sorted(map(str, await engine.outstanding(s))) for s in "abc"}
    write(
        out,
        {
            "dispatched": seen,
            "restored_actions": stats.restored_actions,
            "outstanding": outstanding,
        },
    )


def main(argv: list[str]) -> None:
    phase, db, ledger, out = argv
    gateway = FakeGateway(Path(ledger))
    run = first if phase == "first" else second
    asyncio.run(run(f"sqlite:///{db}", gateway, Path(out)))


if __name__ == "__main__":
    main(sys.argv[1:])
