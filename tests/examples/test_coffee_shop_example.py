"""The coffee-shop example on a real SQLite file: accept, reject, complete, crash, restore."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from examples.coffee_shop import (
    NEVER_ARRIVED,
    OUT_OF_STOCK,
    CheckStatus,
    CoffeeShop,
    CoffeeStreams,
    CollectReward,
    EarnPoints,
    Failed,
    FailedToQueueAction,
    InsufficientPoints,
    InvalidRedemptionId,
    LoyaltyAccount,
    PendingRedemption,
    Redeem,
    RedemptionAlreadyPending,
    RequestRedemption,
    RewardsService,
    ShowBalance,
    ShowRedemptionFailed,
    ShowRedemptionPending,
    ShowStillProcessing,
    Success,
    deliver,
)
from fasm_es import (
    Actions,
    Completed,
    CompletionNotOutstanding,
    EventStore,
    InvalidInput,
    Metadata,
    Normal,
    Streams,
    Tracked,
    Untracked,
    open_store,
)

ALICE = "alice"

Opener = Callable[[], tuple[EventStore, CoffeeStreams]]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'coffee.db'}"


@pytest.fixture
def open_shop(db_url: str) -> Iterator[Opener]:
    """Open the SQLite file with a fresh store and Streams, as a restarted process would."""
    stores: list[EventStore] = []

    def opener() -> tuple[EventStore, CoffeeStreams]:
        store = open_store(db_url)
        stores.append(store)
        return store, Streams(CoffeeShop(), store)

    yield opener
    for store in stores:
        store.close()


def earn(streams: CoffeeStreams, points: int, order_id: str = "A-1") -> None:
    streams.submit(ALICE, EarnPoints(order_id=order_id, points=points), actor="till")


def request(streams: CoffeeStreams, cost: int, reward: str = "flat white") -> Tracked[Any]:
    """Request a redemption and return the tracked Redeem it emitted."""
    record = streams.submit(ALICE, RequestRedemption(reward=reward, cost=cost), actor="app")
    (tracked,) = [a for a in record.actions if isinstance(a, Tracked)]
    return tracked


def meta() -> Metadata:
    return Metadata(accepted_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_redemption_succeeds_and_spends_the_held_points(open_shop: Opener) -> None:
    _, streams = open_shop()
    service = RewardsService()
    earn(streams, 200)
    record = streams.submit(ALICE, RequestRedemption(reward="flat white", cost=150))

    assert record.actions == (
        Tracked(1, Redeem(redemption_id=1, reward="flat white", cost=150)),
        Untracked(ShowRedemptionPending(redemption_id=1, reward="flat white")),
        Untracked(ShowBalance(points=50, held=150)),
    )
    held = streams.state(ALICE)
    assert (held.points, held.held) == (50, 150)
    assert held.pending == PendingRedemption(
        redemption_id=1, reward="flat white", cost=150, awaiting=1
    )

    (done,) = deliver(streams, ALICE, record.actions, service)

    assert done.input == Completed(1, Success(voucher="V0001"), done.meta)
    state = streams.state(ALICE)
    assert (state.points, state.held, state.pending) == (50, 0, None)
    rewards = [(r.redemption_id, r.voucher, r.collected) for r in state.rewards]
    assert rewards == [(1, "V0001", False)]
    assert streams.outstanding(ALICE) == {}
    assert service.applied == [(ALICE, 1)]


def test_rejected_inputs_append_nothing_and_leave_state_as_the_log_says(open_shop: Opener) -> None:
    store, streams = open_shop()
    earn(streams, 100)
    request(streams, 60)
    before = streams.state(ALICE)
    version = store.last_version(ALICE)

    with pytest.raises(RedemptionAlreadyPending):
        streams.submit(ALICE, RequestRedemption(reward="muffin", cost=10))
    with pytest.raises(InvalidRedemptionId):
        streams.submit(ALICE, CollectReward(redemption_id=1))  # not issued yet
    with pytest.raises(InvalidInput):
        streams.submit(ALICE, {"kind": "earn_points", "order_id": "A-2", "points": 0})
    with pytest.raises(InvalidInput):
        streams.submit(ALICE, {"kind": "earn_points", "points": 5})
    with pytest.raises(InvalidInput):
        streams.submit(ALICE, {"kind": "earn_points", "order_id": "A-2", "points": 5, "pts": 1})
    with pytest.raises(InvalidInput):
        streams.submit(ALICE, {"kind": "refund", "points": 5})

    assert store.last_version(ALICE) == version
    assert streams.state(ALICE) == before
    assert streams.load(ALICE).state == before


def test_insufficient_points_is_rejected(open_shop: Opener) -> None:
    store, streams = open_shop()
    earn(streams, 40)
    with pytest.raises(InsufficientPoints) as caught:
        streams.submit(ALICE, RequestRedemption(reward="flat white", cost=41))
    assert (caught.value.cost, caught.value.points) == (41, 40)
    assert store.last_version(ALICE) == 1
    assert streams.state(ALICE).points == 40


def test_a_reward_is_collected_once(open_shop: Opener) -> None:
    store, streams = open_shop()
    earn(streams, 50)
    deliver(streams, ALICE, (request(streams, 50),), RewardsService())
    streams.submit(ALICE, CollectReward(redemption_id=1))
    assert streams.state(ALICE).rewards[0].collected

    with pytest.raises(InvalidRedemptionId, match="already collected"):
        streams.submit(ALICE, CollectReward(redemption_id=1))
    assert store.last_version(ALICE) == 4


def test_a_failed_redemption_gives_the_points_back(open_shop: Opener) -> None:
    _, streams = open_shop()
    earn(streams, 80)
    service = RewardsService(out_of_stock={"cake"})
    (done,) = deliver(streams, ALICE, (request(streams, 75, "cake"),), service)

    assert done.actions[0] == Untracked(
        ShowRedemptionFailed(redemption_id=1, reason=OUT_OF_STOCK, refunded=75)
    )
    state = streams.state(ALICE)
    assert (state.points, state.pending, state.rewards) == (80, None, [])
    assert state.failed_redemptions == 1
    assert service.applied == []


def test_a_pending_answer_is_followed_by_a_status_check_under_a_fresh_id(
    open_shop: Opener,
) -> None:
    _, streams = open_shop()
    service = RewardsService(pending_answers=2)
    earn(streams, 100)

    records = deliver(streams, ALICE, (request(streams, 100),), service)

    answers = [(r.input.id, r.input.result.kind) for r in records if isinstance(r.input, Completed)]
    assert answers == [
        (1, "pending"),
        (2, "pending"),
        (3, "success"),
    ]
    assert records[0].actions == (
        Tracked(2, CheckStatus(redemption_id=1)),
        Untracked(ShowStillProcessing(redemption_id=1)),
    )
    assert streams.state(ALICE).next_action_id == 4
    assert service.applied == [(ALICE, 1)]
    # The answer to an earlier poll arriving again is a duplicate: refused before the STF.
    with pytest.raises(CompletionNotOutstanding) as caught:
        streams.complete(ALICE, 2, Success(voucher="V0001"))
    assert caught.value.reason == "completed"


def test_restore_after_a_crash_checks_status_and_never_redeems_twice(open_shop: Opener) -> None:
    store, streams = open_shop()
    service = RewardsService()
    earn(streams, 200)
    redeem = request(streams, 150)
    lost = service.answer(ALICE, redeem.id, redeem.action)  # applied, answer lost in the crash
    live = streams.state(ALICE)
    store.close()

    store, streams = open_shop()
    assert streams.state(ALICE) == live
    restored = streams.restore(ALICE)
    assert restored == (Tracked(1, CheckStatus(redemption_id=1)),)

    (done,) = deliver(streams, ALICE, restored, service)
    assert done.input == Completed(1, Success(voucher="V0001"), done.meta)
    assert lost == Success(voucher="V0001")
    with pytest.raises(CompletionNotOutstanding):
        streams.complete(ALICE, redeem.id, lost)
    assert service.applied == [(ALICE, 1)]
    assert streams.state(ALICE).rewards[0].voucher == "V0001"
    assert streams.restore(ALICE) == ()


def test_a_redeem_lost_in_the_crash_is_failed_and_refunded_and_stays_refused(
    open_shop: Opener,
) -> None:
    store, streams = open_shop()
    service = RewardsService()
    earn(streams, 100)
    redeem = request(streams, 100)
    store.close()  # crash before the Redeem reached the service

    _, streams = open_shop()
    (done,) = deliver(streams, ALICE, streams.restore(ALICE), service)

    assert done.input == Completed(1, Failed(reason=NEVER_ARRIVED), done.meta)
    assert streams.state(ALICE).points == 100
    # The original request turning up late must not buy a reward with refunded points.
    assert service.answer(ALICE, redeem.id, redeem.action) == Failed(reason=NEVER_ARRIVED)
    assert service.applied == []


def test_restore_names_the_status_check_still_outstanding(open_shop: Opener) -> None:
    store, streams = open_shop()
    service = RewardsService(pending_answers=1)
    earn(streams, 100)
    redeem = request(streams, 100)
    streams.complete(ALICE, redeem.id, service.answer(ALICE, redeem.id, redeem.action))
    store.close()

    _, streams = open_shop()
    restored = streams.restore(ALICE)
    assert restored == (Tracked(2, CheckStatus(redemption_id=1)),)
    assert set(streams.outstanding(ALICE)) == {2}
    deliver(streams, ALICE, restored, service)
    assert streams.state(ALICE).pending is None
    assert service.applied == [(ALICE, 1)]


def test_state_survives_reopening_the_file_and_replay_equals_live(open_shop: Opener) -> None:
    store, streams = open_shop()
    service = RewardsService(out_of_stock={"cake"}, pending_answers=1)
    earn(streams, 300, "A-1")
    deliver(streams, ALICE, (request(streams, 100, "cake"),), service)
    deliver(streams, ALICE, (request(streams, 120, "latte"),), service)
    streams.submit(ALICE, CollectReward(redemption_id=3))
    earn(streams, 7, "A-2")
    live = streams.state(ALICE)
    version = streams.version(ALICE)
    store.close()

    store, streams = open_shop()
    assert streams.version(ALICE) == version == store.last_version(ALICE)
    assert streams.state(ALICE) == live
    assert (live.points, live.earned, live.failed_redemptions) == (187, 307, 1)
    assert streams.verify_replay(ALICE).state == live


def test_records_are_stored_as_json_tagged_by_kind(open_shop: Opener) -> None:
    store, streams = open_shop()
    earn(streams, 10)
    request(streams, 10)
    bodies = [json.loads(raw.body) for raw in store.read_stream(ALICE)]

    assert [raw.tag for raw in store.read_stream(ALICE)] == ["EarnPoints", "RequestRedemption"]
    assert bodies[1]["input"] == {"kind": "request_redemption", "reward": "flat white", "cost": 10}
    assert bodies[1]["actions"][0] == {
        "id": 1,
        "action": {"kind": "redeem", "redemption_id": 1, "reward": "flat white", "cost": 10},
    }


class CrampedCoffeeShop(CoffeeShop):
    """Room for two actions per input: a redemption request needs three."""

    actions_capacity = 2


def test_no_room_for_the_actions_is_failed_to_queue_action(db_url: str) -> None:
    with open_store(db_url) as store:
        streams = Streams(CrampedCoffeeShop(), store)
        streams.submit(ALICE, EarnPoints(order_id="A-1", points=50))
        with pytest.raises(FailedToQueueAction):
            streams.submit(ALICE, RequestRedemption(reward="flat white", cost=50))
        assert store.last_version(ALICE) == 1
        assert streams.state(ALICE) == LoyaltyAccount(points=50, earned=50)


def test_the_stf_queues_actions_before_changing_state() -> None:
    # Under fasm's rules (no engine to discard a mutated state) a rejection must
    # leave the state untouched: check the STF itself, not the engine.
    state = LoyaltyAccount(points=50, earned=50)
    with pytest.raises(FailedToQueueAction):
        asyncio.run(
            CoffeeShop().stf(
                state,
                Normal(RequestRedemption(reward="flat white", cost=50), meta()),
                Actions(2),
            )
        )
    assert state == LoyaltyAccount(points=50, earned=50)


def test_the_stf_refuses_an_answer_no_redemption_waits_for() -> None:
    pending = PendingRedemption(redemption_id=1, reward="tea", cost=5, awaiting=1)
    state = LoyaltyAccount(points=0, earned=5, next_action_id=2, pending=pending)
    with pytest.raises(InvalidRedemptionId):
        asyncio.run(CoffeeShop().stf(state, Completed(7, Success(voucher="V9"), meta()), Actions()))
    assert state.pending == pending


def test_restore_with_nothing_in_flight_re_issues_nothing(open_shop: Opener) -> None:
    _, streams = open_shop()
    earn(streams, 10)
    assert streams.restore(ALICE) == ()


def test_the_service_applies_each_key_once() -> None:
    service = RewardsService()
    redeem = Redeem(redemption_id=1, reward="tea", cost=5)
    first = service.answer(ALICE, 1, redeem)
    assert service.answer(ALICE, 1, redeem) == first
    assert service.answer(ALICE, 1, CheckStatus(redemption_id=1)) == first
    assert service.answer("bob", 1, redeem) == Success(voucher="V0002")
    assert service.applied == [(ALICE, 1), ("bob", 1)]


# -- a randomised run: crashes, lost requests and duplicate answers ------------------------

OPERATIONS = (
    ["earn"] * 2
    + ["request"] * 2
    + ["answer"] * 4
    + [
        "collect",
        "lose",
        "duplicate",
        "crash",
    ]
)  # repeated names weigh the draw towards the common operations
operations = st.lists(
    st.tuples(st.sampled_from(OPERATIONS), st.integers(1, 100)), min_size=8, max_size=50
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, pending_answers=st.integers(0, 2), out_of_stock=st.booleans())
def test_random_runs_keep_points_conserved_and_apply_each_redemption_once(
    ops: list[tuple[str, int]], pending_answers: int, out_of_stock: bool
) -> None:
    store = open_store("memory://")
    streams: CoffeeStreams = Streams(CoffeeShop(), store)
    service = RewardsService(
        out_of_stock={"cake"} if out_of_stock else (), pending_answers=pending_answers
    )
    in_flight: list[Tracked[Any]] = []  # requests sent to the service, not yet answered
    answered: list[tuple[Any, Any]] = []
    streams.submit(ALICE, EarnPoints(order_id="opening", points=100))
    earned = 100

    def complete(tracked: Tracked[Any]) -> None:
        result = service.answer(ALICE, tracked.id, tracked.action)
        answered.append((tracked.id, result))
        try:
            record = streams.complete(ALICE, tracked.id, result)
        except CompletionNotOutstanding:
            return
        in_flight.extend(a for a in record.actions if isinstance(a, Tracked))

    for n, (op, amount) in enumerate(ops):
        if op == "earn":
            streams.submit(ALICE, EarnPoints(order_id=f"A-{n}", points=amount))
            earned += amount
        elif op in ("request", "collect"):
            value: Any = (
                RequestRedemption(reward="cake" if amount % 2 else "tea", cost=amount)
                if op == "request"
                else CollectReward(redemption_id=amount % 12 + 1)
            )
            try:
                record = streams.submit(ALICE, value)
            except (InsufficientPoints, RedemptionAlreadyPending, InvalidRedemptionId):
                pass
            else:
                in_flight.extend(a for a in record.actions if isinstance(a, Tracked))
        elif op == "answer" and in_flight:
            complete(in_flight.pop(0))
        elif op == "lose" and in_flight:
            in_flight.pop(0)
        elif op == "duplicate" and answered:
            with pytest.raises(CompletionNotOutstanding):
                streams.complete(ALICE, *answered[-1])
            event("duplicate answer refused")
        elif op == "crash":
            streams = Streams(CoffeeShop(), store)
            in_flight = [a for a in streams.restore(ALICE) if isinstance(a, Tracked)]
            if streams.state(ALICE).pending is not None:
                event("crash with a redemption in flight")
        check_invariants(streams, service, earned)

    # Recover whatever is still in flight, as a restarted process would.
    for _ in range(pending_answers + 2):
        for tracked in streams.restore(ALICE):
            assert isinstance(tracked, Tracked)
            complete(tracked)
    state = streams.state(ALICE)
    event(f"rewards issued: {min(len(state.rewards), 2)}{'+' if len(state.rewards) >= 2 else ''}")
    assert state.pending is None
    assert [(ALICE, r.redemption_id) for r in state.rewards] == service.applied
    completed_ids = [r.input.id for r in streams.records(ALICE) if isinstance(r.input, Completed)]
    assert len(completed_ids) == len(set(completed_ids))
    assert streams.verify_replay(ALICE).state == state


def check_invariants(streams: CoffeeStreams, service: RewardsService, earned: int) -> None:
    state = streams.state(ALICE)
    spent = sum(r.cost for r in state.rewards)
    assert state.points >= 0
    assert state.points + state.held + spent == earned == state.earned
    assert len(service.applied) == len(set(service.applied))
    assert {(ALICE, r.redemption_id) for r in state.rewards} <= set(service.applied)
    assert streams.load(ALICE).state == state
