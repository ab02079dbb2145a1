"""The fake outside ledger service: its own process, applying each idempotency key once.

Run as ``python -m workers.service SOCKET LEDGER``. A ``post`` request names
an idempotency key; the first request for a key is applied (a receipt is
issued from the service's own counter) and every later one is answered with
that first receipt and recorded as a repeat, as real payment and ledger APIs
do. Every request is appended to the ledger file (one JSON line each, flushed)
with the engine and generation that sent it, so a driver can tell which
actions each engine process dispatched and how often a key was applied.

After applying, the answer waits a few milliseconds (``--answer-delay``), so a
SIGKILL of the engine often lands between "applied here" and "answer
committed there": the case restore and the idempotency key exist for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from pathlib import Path
from typing import IO

from workers.wire import Message, serve


class LedgerService:
    """The service's state: receipts by key, and the ledger file every request goes to."""

    def __init__(self, ledger: IO[str], answer_delay: float, seed: int) -> None:
        self.ledger = ledger
        self.answer_delay = answer_delay
        self.receipts: dict[str, str] = {}
        self.rng = random.Random(seed)

    async def handle(self, message: Message) -> Message:
        if message.get("op") != "post":
            return {"ok": False, "error": f"unknown op {message.get('op')!r}"}
        key = str(message["key"])
        receipt = self.receipts.get(key)
        outcome = "repeat" if receipt is not None else "applied"
        if receipt is None:
            receipt = self.receipts[key] = f"R{len(self.receipts) + 1}"
        entry = {
            "key": key,
            "outcome": outcome,
            "receipt": receipt,
            "amount": message.get("amount"),
            "engine": message.get("engine"),
            "generation": message.get("generation"),
            "t": time.time(),
        }
        self.ledger.write(json.dumps(entry) + "\n")
        self.ledger.flush()
        if self.answer_delay:
            await asyncio.sleep(self.rng.uniform(0, self.answer_delay))
        return {"ok": True, "receipt": receipt}


async def main(socket: Path, ledger_path: Path, answer_delay: float, seed: int) -> None:
    with open(ledger_path, "a") as ledger:
        service = LedgerService(ledger, answer_delay, seed)
        server = await serve(socket, service.handle)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("socket", type=Path)
    parser.add_argument("ledger", type=Path)
    parser.add_argument("--answer-delay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.socket, args.ledger, args.answer_delay, args.seed))
