"""The coffee shop end to end on a SQLite file, a crash and its recovery included.

Run it with ``make demo``, or ``python -m examples.demo [--db URL]``. The
default database is ``demo.db`` in the current directory, deleted and
recreated at the start. It walks through one customer's loyalty account:

1. purchases earn points;
2. a redemption is requested: the record holds the tracked ``Redeem`` action;
3. the rewards service applies it, but the process crashes before the answer
   is recorded;
4. a fresh store reopens the file: the state is the fold of the log, and
   restore re-issues a ``CheckStatus`` (not the ``Redeem``);
5. the service answers and the completion is applied;
6. the late answer to the original ``Redeem`` is refused as a duplicate;
7. a rejected input appends nothing;
8. the log is printed and its replay verified.

It exits 0 when every step behaved as described, 1 otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from examples.coffee_shop import (
    CheckStatus,
    CoffeeRecord,
    CoffeeShop,
    CoffeeStreams,
    CollectReward,
    EarnPoints,
    InsufficientPoints,
    Redeem,
    RequestRedemption,
    RewardsService,
    Success,
    deliver,
)
from fasm_es import (
    Completed,
    CompletionNotOutstanding,
    EventStore,
    FasmError,
    Streams,
    Tracked,
    open_store,
)
from fasm_es.store import redact

DEFAULT_URL = "sqlite:///demo.db"
CUSTOMER = "alice"


class DemoFailed(Exception):
    """A step of the demo did not behave as the demo says it does."""


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the process exit code (0 when every step held)."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description="The coffee-shop loyalty service end to end, with a crash and restore.",
    )
    parser.add_argument(
        "--db",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"database URL (default {DEFAULT_URL}; a SQLite file is deleted first)",
    )
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    if args.db.lower().startswith("memory:"):
        console.print(
            "the demo reopens the database after a crash, so it needs a durable one: "
            "use sqlite:///demo.db or postgresql://..."
        )
        return 2
    try:
        run(args.db, console)
    except (DemoFailed, FasmError) as exc:
        console.print(f"[bold red]demo failed:[/] {escape(str(exc))}")
        return 1
    return 0


def run(url: str, console: Console) -> None:
    """Walk through the scenario on the database at ``url``, printing each step."""
    remove_sqlite_file(url)
    demo = Demo(url, console)
    try:
        demo.earn()
        redeem, lost = demo.redeem_then_crash()
        demo.restart_and_restore(redeem)
        demo.refuse_duplicate(redeem, lost)
        demo.reject()
        demo.show_log_and_verify(redeem)
    finally:
        demo.store.close()


class Demo:
    """The scenario's steps, sharing one customer stream and one rewards service."""

    def __init__(self, url: str, console: Console) -> None:
        self.url = url
        self.say = console.print
        self.service = RewardsService()
        self.store = open_store(url)
        self.streams: CoffeeStreams = Streams(CoffeeShop(), self.store)
        self.stream = unused_stream(self.store)
        self.say(f"[bold]Coffee-shop loyalty demo[/]: customer stream {self.stream!r}")
        self.say(f"   database {escape(redact(url))}")

    def earn(self) -> None:
        """Two purchases earn points."""
        self.say("\n[bold]1.[/] Alice buys coffee twice and earns points")
        for order_id, points in (("A-1001", 120), ("A-1002", 80)):
            value = EarnPoints(order_id=order_id, points=points)
            rec = self.streams.submit(self.stream, value, actor="till-1")
            balance = self.streams.state(self.stream).points
            self.say(f"   v{rec.version} order {order_id}: +{points} points, balance {balance}")

    def redeem_then_crash(self) -> tuple[Tracked[Redeem], Success]:
        """Request a redemption; the service applies it; the process dies before its answer."""
        self.say("\n[bold]2.[/] She redeems 150 points for a flat white")
        value = RequestRedemption(reward="flat white", cost=150)
        rec = self.streams.submit(self.stream, value, actor="app")
        tracked = next(a for a in rec.actions if isinstance(a, Tracked))
        if not isinstance(tracked.action, Redeem):
            raise DemoFailed(f"expected a Redeem action, the STF emitted {tracked!r}")
        redeem = Tracked(tracked.id, tracked.action)
        self.say(f"   v{rec.version} recorded with the tracked action Redeem #{redeem.id}")
        self.say(f"   150 points held, balance {self.streams.state(self.stream).points}")

        self.say(f"\n[bold]3.[/] The rewards service applies Redeem #{redeem.id} ...")
        lost = self.service.answer(self.stream, redeem.id, redeem.action)
        if not isinstance(lost, Success):
            raise DemoFailed(f"the rewards service answered {lost!r}, not Success")
        self.say(f"   it issued voucher {lost.voucher} for key {(self.stream, redeem.id)}")
        self.say("   ... and the process crashes before the answer is recorded")
        # The crash: every in-memory object goes; only the database remains.
        self.store.close()
        del self.streams, self.store
        return redeem, lost

    def restart_and_restore(self, redeem: Tracked[Redeem]) -> None:
        """Reopen the database, fold the state, restore, and apply the service's answer."""
        self.say("\n[bold]4.[/] Restart: a fresh store opens the same database")
        self.store = open_store(self.url)
        self.streams = Streams(CoffeeShop(), self.store)
        state = self.streams.state(self.stream)
        if state.pending is None:
            raise DemoFailed("after the restart no redemption is in flight")
        self.say(
            f"   folded {self.streams.version(self.stream)} records: balance {state.points}, "
            f"redemption {state.pending.redemption_id} ({state.pending.reward}) in flight"
        )
        restored = self.streams.restore(self.stream)
        checks = [a for a in restored if isinstance(a, Tracked)]
        if len(checks) != 1 or checks[0].id != redeem.id:
            raise DemoFailed(f"restore should re-issue one CheckStatus #{redeem.id}: {restored!r}")
        if not isinstance(checks[0].action, CheckStatus):
            raise DemoFailed(f"restore re-issued {checks[0]!r}, not a CheckStatus")
        self.say(f"   restore re-issues CheckStatus #{checks[0].id}, not the Redeem")

        self.say("\n[bold]5.[/] The service answers the status check")
        (done,) = deliver(self.streams, self.stream, restored, self.service, actor="rewards")
        state = self.streams.state(self.stream)
        self.say(
            f"   v{done.version} completed #{redeem.id}: voucher {state.rewards[0].voucher}, "
            f"balance {state.points}"
        )

    def refuse_duplicate(self, redeem: Tracked[Redeem], lost: Success) -> None:
        """The answer lost in the crash turns up late and is refused."""
        self.say(f"\n[bold]6.[/] The late answer to the original Redeem #{redeem.id} arrives")
        try:
            self.streams.complete(self.stream, redeem.id, lost, actor="rewards")
        except CompletionNotOutstanding:
            self.say("   refused: CompletionNotOutstanding (already completed), nothing appended")
        else:
            raise DemoFailed("a duplicate completion was applied")

    def reject(self) -> None:
        """A redemption the balance cannot cover is rejected and appends nothing."""
        self.say("\n[bold]7.[/] She asks for a 500-point bag of beans")
        before = self.store.last_version(self.stream)
        value = RequestRedemption(reward="bag of beans", cost=500)
        try:
            self.streams.submit(self.stream, value, actor="app")
        except InsufficientPoints as exc:
            self.say(f"   rejected: {escape(str(exc))}")
        else:
            raise DemoFailed("a redemption without enough points was accepted")
        if self.store.last_version(self.stream) != before:
            raise DemoFailed("a rejected input was appended")
        self.say(f"   nothing appended: the log is still at version {before}")

    def show_log_and_verify(self, redeem: Tracked[Redeem]) -> None:
        """Collect the reward, print the log, verify the replay and the service's ledger."""
        value = CollectReward(redemption_id=int(redeem.id))
        rec = self.streams.submit(self.stream, value, actor="till-1")
        self.say(f"\n[bold]8.[/] v{rec.version} the barista hands over the flat white. The log:")
        self.say(log_table(list(self.streams.records(self.stream))))
        folded = self.streams.verify_replay(self.stream)
        if folded.state != self.streams.state(self.stream):
            raise DemoFailed("the replayed state differs from the live state")
        self.say(
            f"\nReplay verified: {folded.version} records re-emit their actions, state equals live"
        )
        if self.service.applied != [(self.stream, redeem.id)]:
            raise DemoFailed(f"the rewards service applied {self.service.applied!r}")
        self.say(f"The rewards service applied {self.service.applied} once: no reward issued twice")


def remove_sqlite_file(url: str) -> None:
    """Delete the SQLite database at ``url`` (with its WAL files) so the demo starts empty."""
    if not url.lower().startswith("sqlite:"):
        return
    from fasm_es.backends.sqlite import sqlite_path

    path = sqlite_path(url)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(path + suffix).unlink(missing_ok=True)


def unused_stream(store: EventStore) -> str:
    """The customer's stream id, suffixed if a shared database already holds it."""
    stream, n = CUSTOMER, 1
    while store.last_version(stream) > 0:
        n += 1
        stream = f"{CUSTOMER}-{n}"
    return stream


def log_table(records: list[CoffeeRecord]) -> Table:
    """The stream's records as a table: version, position, input, actions, actor."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for header in ("version", "position"):
        table.add_column(header, justify="right")
    for header in ("input", "actions", "actor"):
        table.add_column(header)
    for rec in records:
        inp = rec.input
        what = f"Completed #{inp.id}: {inp.result.kind}" if isinstance(inp, Completed) else rec.tag
        actions = "\n".join(
            f"[bold]{type(a.action).__name__} #{a.id}[/]"
            if isinstance(a, Tracked)
            else type(a.action).__name__
            for a in rec.actions
        )
        table.add_row(str(rec.version), str(rec.position), what, actions, rec.meta.actor or "")
    return table


if __name__ == "__main__":
    raise SystemExit(main())
