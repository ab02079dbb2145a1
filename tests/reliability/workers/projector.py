"""A projection process: the built-in latest-state view of the Ledger machine, following the log.

Run as ``python -m workers.projector STORE_URL VIEW_URL``. The driver kills
it with SIGKILL alongside the engine; each batch commits its rows with its
position, so the view must still come out equal to a from-scratch rebuild.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from projections import LatestState, Runner
from workers.machine import Account, Ledger

VIEW_TABLE = "account_state"


def latest_state(name: str = "accounts", table: str = VIEW_TABLE) -> LatestState[Account]:
    """The view the projector keeps (and, with other names, the driver rebuilds)."""
    return LatestState(Ledger(), name=name, table=table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store_url")
    parser.add_argument("view_url")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    runner = Runner(
        latest_state(), args.store_url, args.view_url, batch_size=args.batch_size, poll_interval=0.1
    )
    try:
        runner.follow(stop, retry_after=0.2)
    finally:
        runner.close()


if __name__ == "__main__":
    main()
