"""The built-in projections: the latest state of each stream, and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from machines import (
    Cancel,
    Charge,
    ChargeResult,
    Increment,
    Payments,
    PaymentsState,
    Tally,
    TallyStricter,
)

from fasm_es import ManualClock, Streams, Tracked, open_store
from projections import AuditTrail, LatestState, ProjectionFailed, Runner

START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def payments_log(store_url: str) -> dict[str, PaymentsState]:
    """Charges, completions and cancels over three cards by three actors; the live states."""
    clock = ManualClock(START)
    with open_store(store_url) as store:
        payments = Streams(Payments(), store, clock=clock)
        for n in range(1, 16):
            card = f"card-{n % 3}"
            clock.advance(timedelta(minutes=1))
            record = payments.submit(card, Charge(amount=n * 10), actor=f"clerk-{n % 2}")
            tracked = record.actions[0]
            assert isinstance(tracked, Tracked)
            if n % 4:
                clock.advance(timedelta(minutes=1))
                payments.complete(card, tracked.id, ChargeResult(ok=n % 5 != 0), actor="bank")
            else:  # a charge left pending can be cancelled
                clock.advance(timedelta(minutes=1))
                payments.submit(card, Cancel(reason="customer asked"), actor="clerk-9")
        return {card: payments.state(card) for card in ("card-0", "card-1", "card-2")}


@pytest.mark.backends("sqlite", "postgres")
def test_latest_state_equals_the_live_state_of_every_stream(store_url: str, view_url: str) -> None:
    live = payments_log(store_url)
    # A cache of one stream forces states to be read back from the table.
    latest = LatestState(Payments(), cache_size=1)
    with Runner(latest, store_url, view_url, batch_size=4) as runner:
        runner.catch_up()

        def states() -> dict[str, PaymentsState | None]:
            with runner.engine.connect() as connection:
                return {card: latest.state(connection, card) for card in live}

        assert states() == live
        rows = runner.rows(latest.state_table)
        with open_store(store_url) as store:
            assert [(r[0], r[1]) for r in rows] == [
                (s, store.last_version(s)) for s in sorted(live)
            ]
        runner.rebuild()
        assert states() == live
        runner.reset()
        runner.catch_up()
        assert states() == live
        with runner.engine.connect() as connection:
            assert latest.state(connection, "no-such-card") is None


def test_latest_state_stops_at_a_record_the_current_code_would_reject(tmp_path: object) -> None:
    store = open_store("memory://")
    tally = Streams(Tally(), store, clock=ManualClock())
    for _ in range(5):
        tally.submit("t", Increment(by=1))
    stricter = LatestState(TallyStricter())  # its limit is 3: the 4th increment now fails
    with pytest.raises(ProjectionFailed) as failed:
        Runner(stricter, store, "sqlite://").catch_up()
    assert (failed.value.stream, failed.value.version, failed.value.position) == ("t", 4, 4)
    assert "replay diverges" in failed.value.error


@pytest.mark.backends("sqlite", "postgres")
def test_audit_trail_has_one_row_per_record_queryable_by_actor_stream_and_time(
    store_url: str, view_url: str
) -> None:
    payments_log(store_url)
    audit = AuditTrail(Payments())
    with open_store(store_url) as store, Runner(audit, store, view_url, batch_size=5) as runner:
        runner.catch_up()
        log = list(store.read_log())
        with runner.engine.connect() as connection:
            everything = audit.query(connection)
            assert [e.position for e in everything] == [r.position for r in log]
            assert all(e.accepted for e in everything)

            first = everything[0]
            assert (first.stream, first.version, first.actor) == ("card-1", 1, "clerk-1")
            assert first.input_type == "Charge"
            assert first.input == {"amount": 10, "ids": "int"}
            assert first.completes is None
            assert first.actions == [{"id": 1, "type": "ChargeCard", "action": {"amount": 10}}]
            assert first.accepted_at == START + timedelta(minutes=1)

            bank = audit.query(connection, actor="bank")
            assert bank and all(e.input_type == "Completed" for e in bank)
            assert bank[0].completes == 1 and bank[0].input == {"ok": True}
            assert bank[0].actions == [{"type": "Receipt", "action": {"amount": 10, "ok": True}}]

            card = audit.query(connection, stream="card-2")
            assert card == [e for e in everything if e.stream == "card-2"]
            assert [e.version for e in card] == list(range(1, len(card) + 1))

            since, until = START + timedelta(minutes=10), START + timedelta(minutes=20)
            window = audit.query(connection, since=since, until=until)
            assert window == [e for e in everything if since <= e.accepted_at < until]
            assert 0 < len(window) < len(everything)

            both = audit.query(connection, actor="clerk-9", stream="card-0", limit=1)
            assert [(e.actor, e.stream, e.input_type) for e in both] == [
                ("clerk-9", "card-0", "Cancel")
            ]
