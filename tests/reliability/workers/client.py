"""A client process: submits deposits to engine processes and records every acknowledgement.

Run as ``python -m workers.client ACKS DONE --engine NAME=SOCKET [...] [options]``.
``concurrency`` coroutines each submit one :class:`~workers.machine.Deposit`
at a time, with a fresh reference (``CLIENT-N``) used as its idempotency key,
to a random one of ``streams`` accounts. An input whose outcome is unknown
(the engine died, the connection broke, a timeout, a retryable error) is
sent again with the same key until an answer comes back; only then is the
next one started. Each answer is appended to ACKS as one JSON line, flushed:

- ``{"ref", "stream", "amount", "status": "accepted", "version", "position", "engine"}``
- ``{"ref", "stream", "amount", "status": "rejected", "error"}`` (the STF refused it)

With several engines, a ``StreamNotOwned`` answer names the owner when it
is known, and the input is sent there (routing is learnt per stream).
SIGTERM stops starting new inputs; once every coroutine has its answer, the
counters are written to DONE and the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
from collections import Counter
from pathlib import Path
from typing import IO

from workers.wire import Message, request, write_json

RETRYABLE = {
    "StoreUnavailable",
    "ConcurrencyConflict",
    "StreamNotOwned",
    "TimeoutError",
    "StoreError",
}


class Client:
    """Submitters sharing one acknowledgement file and a routing table."""

    def __init__(self, args: argparse.Namespace, acks: IO[str]) -> None:
        self.args = args
        self.acks = acks
        self.engines: dict[str, str] = dict(e.split("=", 1) for e in args.engine)
        self.routes: dict[str, str] = {}
        self.streams = [f"acct-{i:03d}" for i in range(args.streams)]
        self.rng = random.Random(args.seed)
        self.counts: Counter[str] = Counter()
        self.next_ref = 0
        self.stopping = asyncio.Event()

    def new_input(self) -> Message:
        self.next_ref += 1
        return {
            "ref": f"{self.args.client_id}-{self.next_ref}",
            "stream": self.rng.choice(self.streams),
            "amount": self.rng.randint(1, 1000),
        }

    def engine_for(self, stream: str) -> str:
        name = self.routes.get(stream)
        if name is None:
            name = self.rng.choice(sorted(self.engines))
        return name

    async def submit(self, item: Message) -> None:
        stream, ref = item["stream"], item["ref"]
        value = {"ref": ref, "amount": item["amount"]}
        while True:
            name = self.engine_for(stream)
            message = {
                "op": "submit",
                "stream": stream,
                "value": value,
                "key": ref,
                "actor": self.args.client_id,
            }
            try:
                answer = await request(self.engines[name], message, timeout=self.args.timeout)
            except (OSError, TimeoutError, ValueError):
                self.counts["unanswered"] += 1
                self.routes.pop(stream, None)
                await asyncio.sleep(0.05)
                continue
            if answer.get("ok"):
                self.ack(item, status="accepted", version=answer["version"],
                         position=answer["position"], engine=name)  # fmt: skip
                return
            error = str(answer.get("error"))
            self.counts[error] += 1
            if error == "Unlucky":
                self.ack(item, status="rejected", error=error)
                return
            if error not in RETRYABLE:
                self.ack(item, status="failed", error=error, message=answer.get("message"))
                return
            owner = answer.get("owner")
            if error == "StreamNotOwned" and owner in self.engines:
                self.routes[stream] = owner
                continue
            self.routes.pop(stream, None)
            await asyncio.sleep(0.05 if error == "StreamNotOwned" else 0.1)

    def ack(self, item: Message, **outcome: object) -> None:
        self.counts[f"ack_{outcome['status']}"] += 1
        self.acks.write(json.dumps({**item, **outcome}) + "\n")
        self.acks.flush()

    async def submitter(self) -> None:
        while not self.stopping.is_set():
            if self.args.max_inputs and self.next_ref >= self.args.max_inputs:
                return
            await self.submit(self.new_input())

    async def run(self) -> Message:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        await asyncio.gather(*(self.submitter() for _ in range(self.args.concurrency)))
        return dict(self.counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("acks", type=Path)
    parser.add_argument("done", type=Path)
    parser.add_argument("--engine", action="append", required=True, help="NAME=SOCKET")
    parser.add_argument("--client-id", default="c")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--max-inputs", type=int, default=0, help="0: until SIGTERM")
    args = parser.parse_args()
    with open(args.acks, "a") as acks:
        counts = asyncio.run(Client(args, acks).run())
    write_json(args.done, counts)


if __name__ == "__main__":
    main()
