"""An engine process: the :class:`~workers.machine.Ledger` machine served over a Unix socket.

Run as ``python -m workers.engine SOCKET STORE_URL SERVICE READY [options]``.
Requests (lines of JSON, see :mod:`workers.wire`):

- ``{"op": "submit", "stream": s, "value": {...}, "key": k, "actor": a}``:
  ``Engine.submit`` with ``k`` as the idempotency key; answers ``ok`` with the
  record's version and position once it is committed, or ``ok: false`` with
  ``error`` naming the exception class (``Unlucky``, ``StoreUnavailable``,
  ``StreamNotOwned`` with ``owner`` when known, ...);
- ``{"op": "state", "stream": s}``: the committed state as JSON;
- ``{"op": "idle", "timeout": t}``: wait until no action is in flight;
- ``{"op": "stats"}``: counters, and the partitions held when partitioned.

Tracked ``Post`` actions go to the ledger service at SERVICE with their
idempotency key, this engine's name and its generation (how many times the
driver started an engine before this one). Once restore has run, READY is
written with the restore counters. SIGTERM stops the engine cleanly; SIGKILL
is what the driver uses to test everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

from fasm_es import Engine, FasmError, IdempotencyKey, RetryPolicy
from fasm_es.partition import PartitionLease
from workers.machine import Ledger, Post, Posted
from workers.wire import Message, request, serve, write_json

# Handler failures (the service briefly unreachable, the database restarting)
# are retried patiently: an action must not become stuck during a short outage.
PATIENT = RetryPolicy(max_attempts=100, base_delay=0.05, max_delay=1.0)


class EngineProcess:
    """The engine, its lease (when partitioned) and the request handler."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lease: PartitionLease | None = None
        if args.partitions:
            self.lease = PartitionLease(
                args.store_url,
                name=args.name,
                partitions=args.partitions,
                poll_interval=args.poll_interval,
            )
        self.engine: Engine[Any, Any, Any, Any, Any] = Engine(
            Ledger(),
            args.store_url,
            handlers={Post: self.post},
            retry=PATIENT,
            checkpoint_interval=args.checkpoint_interval,
            partitions=self.lease,
        )

    async def post(self, action: Post, key: IdempotencyKey) -> Posted:
        answer = await request(
            self.args.service,
            {
                "op": "post",
                "key": str(key),
                "amount": action.amount,
                "engine": self.args.name,
                "generation": self.args.generation,
            },
        )
        return Posted(receipt=answer["receipt"])

    async def handle(self, message: Message) -> Message:
        op = message.get("op")
        try:
            if op == "submit":
                record = await self.engine.submit(
                    message["stream"],
                    message["value"],
                    idempotency_key=message.get("key"),
                    actor=message.get("actor"),
                )
                return {"ok": True, "version": record.version, "position": record.position}
            if op == "state":
                state = await self.engine.state(message["stream"])
                return {"ok": True, "state": state.model_dump(mode="json")}
            if op == "idle":
                await self.engine.idle(timeout=float(message.get("timeout", 60)))
                return {"ok": True, **self.stats()}
            if op == "stats":
                return {"ok": True, **self.stats()}
        except FasmError as exc:
            answer: Message = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
            if self.lease is not None and type(exc).__name__ == "StreamNotOwned":
                answer["owner"] = await asyncio.to_thread(self.lease.owner_of, message["stream"])
            return answer
        except TimeoutError as exc:
            return {"ok": False, "error": "TimeoutError", "message": str(exc)}
        return {"ok": False, "error": "BadRequest", "message": f"unknown op {op!r}"}

    def stats(self) -> Message:
        stats = self.engine.stats()
        return {
            "pid": os.getpid(),
            "committed": stats.commits.committed,
            "in_flight": stats.in_flight,
            "stuck": stats.stuck,
            "restored_actions": stats.restored_actions,
            "restored_streams": stats.restored_streams,
            "restore_scanned": stats.restore_scanned,
            "partitions": sorted(self.lease.owned()) if self.lease is not None else None,
        }

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with self.engine:
            server = await serve(self.args.socket, self.handle)
            write_json(self.args.ready, self.stats())
            async with server:
                await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("socket", type=Path)
    parser.add_argument("store_url")
    parser.add_argument("service", type=Path)
    parser.add_argument("ready", type=Path)
    parser.add_argument("--name", default="engine")
    parser.add_argument("--generation", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=0, help="0: not partitioned")
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--checkpoint-interval", type=float, default=1.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {args.name} g{args.generation} %(levelname)s %(message)s",
    )
    asyncio.run(EngineProcess(args).run())


if __name__ == "__main__":
    main()
