"""``stuck`` and ``retry``: stuck tracked actions seen and retried from another process.

A real engine runs here (a :class:`SyncEngine` on a SQLite file) with a
rewards service that is down; the command line, which opens the database on
its own, sees the stuck ``Redeem`` only through what the engine saved there,
and asks for a retry the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from examples.coffee_shop import (
    CheckStatus,
    CoffeeShop,
    EarnPoints,
    Redeem,
    RequestRedemption,
    Success,
)
from fasm_es import (
    Engine,
    IdempotencyKey,
    MemoryCheckpoints,
    RetryPolicy,
    Streams,
    SyncEngine,
    open_store,
)
from fasm_es.cli import ExitCode
from fasm_es.outstanding import StoreCheckpoints
from fasm_es.record import RawSnapshot
from fasm_es.stuck import STUCK_KEY, read_retry_requests, read_stuck, request_retry
from tests.cli.conftest import COFFEE, Run

T = TypeVar("T")


class Rewards:
    """The outside rewards service: down until :meth:`repair`; records every call."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.down.set()
        self.calls: list[str] = []

    def __call__(self, action: Redeem | CheckStatus, key: IdempotencyKey) -> Success:
        self.calls.append(f"{key} {type(action).__name__}")
        if self.down.is_set():
            raise ConnectionError("rewards service down")
        return Success(voucher=f"V-{key}")

    def repair(self) -> None:
        self.down.clear()


def engine(url: str, rewards: Rewards) -> SyncEngine[Any, Any, Any, Any, Any]:
    """An engine that gives up on a handler after two calls and looks for retry requests often."""
    return SyncEngine(
        CoffeeShop(),
        url,
        handlers={Redeem: rewards, CheckStatus: rewards},
        retry=RetryPolicy(max_attempts=2, base_delay=0, jitter=0),
        stuck_interval=0.02,
    )


def request_muffin(shop: SyncEngine[Any, Any, Any, Any, Any], stream: str) -> None:
    shop.submit(stream, EarnPoints(order_id=f"{stream}-1", points=300), actor="till")
    shop.submit(stream, RequestRedemption(reward="muffin", cost=100), actor="app")


def redeemed(shop: SyncEngine[Any, Any, Any, Any, Any], stream: str) -> bool:
    """Whether ``stream``'s redemption has its answer."""
    return bool(shop.state(stream).pending is None)


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """The first true value of ``probe()``; fail naming ``what`` if none comes in time."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


def stuck_json(fasm: Run, url: str, *streams: str) -> list[dict[str, Any]]:
    result = fasm("stuck", *streams, "--db", url, "--json")
    assert result.exit_code == ExitCode.OK, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def shop_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shop.db'}"


@pytest.fixture
def rewards() -> Rewards:
    return Rewards()


@pytest.fixture
def stuck_then_stopped(shop_url: str, rewards: Rewards) -> Iterator[str]:
    """``bob`` and ``carol`` each have a ``Redeem`` (id 1) stuck; the engine then stopped."""
    with engine(shop_url, rewards) as shop:
        request_muffin(shop, "bob")
        request_muffin(shop, "carol")
        eventually(lambda: len(shop.stuck()) == 2, "both redemptions are stuck")
    yield shop_url


def test_a_stuck_action_is_listed_retried_from_the_command_line_and_completes(
    fasm: Run, shop_url: str, rewards: Rewards
) -> None:
    with engine(shop_url, rewards) as shop:
        request_muffin(shop, "bob")
        (listed,) = eventually(lambda: stuck_json(fasm, shop_url), "the engine saved it as stuck")
        table = fasm("stuck", "--db", shop_url)

        assert {k: listed[k] for k in ("stream", "id", "type", "attempts", "last_error")} == {
            "stream": "bob",
            "id": 1,
            "type": "Redeem",
            "attempts": 2,
            "last_error": "ConnectionError: rewards service down",
        }
        assert listed["action"] == {
            "kind": "redeem",
            "redemption_id": 1,
            "reward": "muffin",
            "cost": 100,
        }
        assert listed["retry_requested"] is None and listed["engine"]
        assert table.exit_code == ExitCode.OK
        assert "Redeem" in table.stdout and "ConnectionError: rewards service down" in table.stdout
        assert "1 stuck tracked action (list saved at" in table.stdout
        assert rewards.calls == ["bob/1 Redeem"] * 2

        rewards.repair()
        retry = fasm("retry", "bob", "1", "--db", shop_url)

        assert retry.exit_code == ExitCode.OK, retry.output
        assert "retry of a stuck tracked action requested (request #1)" in retry.stdout
        assert "bob/1 Redeem, stuck after 2 attempts: ConnectionError" in retry.stdout
        eventually(lambda: shop.state("bob").pending is None, "the redemption completed")
        assert [r.voucher for r in shop.state("bob").rewards] == ["V-bob/1"]
        assert rewards.calls == ["bob/1 Redeem"] * 3
        eventually(lambda: not stuck_json(fasm, shop_url), "the stuck list is empty again")

    with open_store(shop_url) as store:
        saved = read_stuck(StoreCheckpoints(store))
    ((request, stream, action_id),) = [(r.request, r.stream, r.action_id) for r in saved.retried]
    assert (request, stream, action_id) == (1, "bob", 1)
    outstanding = fasm("outstanding", "--db", shop_url, "-m", COFFEE, "--json")
    assert outstanding.exit_code == ExitCode.OK and outstanding.stdout == ""


def test_a_retry_requested_while_no_engine_runs_waits_and_a_start_dispatches_it(
    fasm: Run, stuck_then_stopped: str, rewards: Rewards
) -> None:
    url = stuck_then_stopped
    # The list outlives the engine: it is what the engine saw when it stopped.
    assert [(e["stream"], e["id"]) for e in stuck_json(fasm, url)] == [("bob", 1), ("carol", 1)]

    requested = fasm("retry", "carol", "1", "--db", url, "--json")
    carol_only = stuck_json(fasm, url, "carol")
    table = fasm("stuck", "--db", url)

    assert requested.exit_code == ExitCode.OK, requested.output
    document = json.loads(requested.stdout)
    assert (document["request"], document["all"]) == (1, False)
    assert [(t["stream"], t["id"]) for t in document["targets"]] == [("carol", 1)]
    assert [(e["stream"], e["retry_requested"]) for e in carol_only] == [("carol", 1)]
    assert "1 with a retry requested that no running engine has picked up yet" in table.stdout

    rewards.repair()
    with engine(url, rewards) as shop:
        # A start dispatches every outstanding action again (the machine's restore
        # asks for the status), which answers the waiting request too.
        for stream in ("bob", "carol"):
            eventually(partial(redeemed, shop, stream), f"{stream}'s redemption completed")
        eventually(lambda: not stuck_json(fasm, url), "the old engine's entries are gone")
    assert sorted(rewards.calls[-2:]) == ["bob/1 CheckStatus", "carol/1 CheckStatus"]


def test_retry_all_asks_for_every_stuck_action(fasm: Run, shop_url: str, rewards: Rewards) -> None:
    with engine(shop_url, rewards) as shop:
        request_muffin(shop, "bob")
        request_muffin(shop, "carol")
        eventually(lambda: len(stuck_json(fasm, shop_url)) == 2, "both are saved as stuck")
        rewards.repair()

        result = fasm("retry", "--all", "--db", shop_url)

        assert result.exit_code == ExitCode.OK, result.output
        assert "retry of every stuck tracked action requested (request #1)" in result.stdout
        assert "bob/1 Redeem" in result.stdout and "carol/1 Redeem" in result.stdout
        for stream in ("bob", "carol"):
            eventually(partial(redeemed, shop, stream), f"{stream}'s redemption completed")
        eventually(lambda: not stuck_json(fasm, shop_url), "nothing is stuck any more")

    nothing = fasm("retry", "--all", "--db", shop_url)
    assert nothing.exit_code == ExitCode.OK
    assert "nothing to retry" in nothing.stdout


def test_an_entry_the_log_shows_completed_is_dropped_by_the_next_engine(
    fasm: Run, stuck_then_stopped: str, rewards: Rewards
) -> None:
    url = stuck_then_stopped
    with open_store(url) as store:
        # An operator completes bob's redemption by hand, from another process.
        Streams(CoffeeShop(), store).complete("bob", 1, Success(voucher="by-hand"))
    # Still listed: no engine has looked since.
    assert len(stuck_json(fasm, url)) == 2

    with engine(url, rewards):
        # carol's Redeem is dispatched again (and gets stuck again); bob's is done.
        eventually(
            lambda: [(e["stream"], e["attempts"]) for e in stuck_json(fasm, url)] == [("carol", 2)],
            "only carol's action is listed, by the new engine",
        )
    assert "bob/1 CheckStatus" not in rewards.calls


def test_bad_arguments_and_unknown_actions(fasm: Run, stuck_then_stopped: str) -> None:
    url = stuck_then_stopped
    cases = {
        ("retry", "--db", url): "name the stuck action: fasm-es retry STREAM ID",
        ("retry", "bob", "--db", url): "name the stuck action",
        ("retry", "bob", "1", "--all", "--db", url): "give either STREAM ID or --all, not both",
        ("retry", "nobody", "1", "--db", url): "stream 'nobody' has no records",
        ("retry", "bob", "2", "--db", url): "tracked action bob/2 is not in the stuck list",
        ("stuck", "nobody", "--db", url): "stream 'nobody' has no records",
        ("stuck", "--db", "memory://"): "memory:// lives only inside the process",
        ("stuck", "--bogus", "--db", url): "No such option",
    }
    for args, message in cases.items():
        result = fasm(*args)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    # Nothing was requested by any of them.
    assert all(e["retry_requested"] is None for e in stuck_json(fasm, url))


def test_a_missing_database_and_an_unreadable_stuck_list(fasm: Run, tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    for args in (("stuck",), ("retry", "bob", "1"), ("retry", "--all")):
        result = fasm(*args, "--db", missing)
        assert result.exit_code == ExitCode.DATABASE, result.output
        assert "no database at" in result.stderr
    assert not (tmp_path / "nowhere.db").exists()

    url = f"sqlite:///{tmp_path / 'garbled.db'}"
    with open_store(url) as store:
        Streams(CoffeeShop(), store).submit("bob", EarnPoints(order_id="B", points=1))
        store.save_snapshot(RawSnapshot(STUCK_KEY, 1, "Checkpoint", b"{not json"))
    garbled = fasm("stuck", "--db", url)
    assert garbled.exit_code == ExitCode.DATABASE
    assert "the saved stuck list is malformed" in garbled.stderr


def test_nothing_saved_yet(fasm: Run, coffee_db: str) -> None:
    result = fasm("stuck", "--db", coffee_db)

    assert result.exit_code == ExitCode.OK
    assert "no engine has saved a stuck list" in result.stdout
    assert stuck_json(fasm, coffee_db) == []


@pytest.mark.postgres
def test_stuck_lists_what_an_engine_saved_in_postgresql(
    fasm: Run, postgres_url: str, rewards: Rewards
) -> None:
    with engine(postgres_url, rewards) as shop:
        request_muffin(shop, "bob")
        (listed,) = eventually(lambda: stuck_json(fasm, postgres_url), "the Redeem is saved")
        assert (listed["stream"], listed["id"], listed["type"]) == ("bob", 1, "Redeem")
        rewards.repair()
        assert fasm("retry", "bob", "1", "--db", postgres_url).exit_code == ExitCode.OK
        eventually(lambda: shop.state("bob").pending is None, "the redemption completed")


class Contended(MemoryCheckpoints):
    """Checkpoints where another operator's request lands first, at the revision we read."""

    def __init__(self) -> None:
        super().__init__()
        self.rival_pending = True

    def save(self, key: str, position: int, body: bytes) -> None:
        if self.rival_pending:
            self.rival_pending = False
            request_retry(self, "carol", 1, at=datetime.now(UTC), by="rival")
        super().save(key, position, body)


def test_concurrent_retry_requests_are_both_kept_in_order() -> None:
    checkpoints = Contended()

    mine = request_retry(checkpoints, "bob", 1, at=datetime.now(UTC), by="me")

    revision, requests = read_retry_requests(checkpoints)
    assert [(r.number, r.stream, r.requested_by) for r in requests] == [
        (1, "carol", "rival"),
        (2, "bob", "me"),
    ]
    assert (mine.number, revision) == (2, 2)


def test_the_stuck_interval_is_positive_or_off() -> None:
    with pytest.raises(ValueError, match="stuck_interval must be > 0 seconds or None"):
        Engine(CoffeeShop(), "memory://", stuck_interval=0)
