"""Inputs and their metadata: what the STF receives and what is recorded with it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from fasm_es import Completed, ManualClock, Metadata, Normal
from fasm_es.inputs import stamp

AT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def test_metadata_requires_a_timezone_aware_time() -> None:
    with pytest.raises(ValidationError, match="accepted_at"):
        Metadata(accepted_at=datetime(2026, 1, 1))  # a naive time


def test_metadata_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Metadata.model_validate({"accepted_at": AT, "user": "x"})


def test_metadata_is_frozen() -> None:
    meta = Metadata(accepted_at=AT)
    with pytest.raises(ValidationError):
        meta.actor = "someone"  # type: ignore[misc]


def test_stamp_fills_every_field() -> None:
    meta = stamp(
        AT,
        actor="alice",
        correlation_id="corr",
        causation_id="cause",
        idempotency_key="key-1",
    )
    assert meta == Metadata(
        accepted_at=AT,
        actor="alice",
        correlation_id="corr",
        causation_id="cause",
        idempotency_key="key-1",
    )


def test_metadata_json_round_trip_keeps_the_instant_and_offset() -> None:
    plus_two = timezone(timedelta(hours=2))
    meta = stamp(AT.astimezone(plus_two), actor="bob", idempotency_key="k")
    back = Metadata.model_validate_json(meta.model_dump_json())
    assert back == meta
    assert back.accepted_at.utcoffset() == timedelta(hours=2)


def test_normal_and_completed_are_frozen_values() -> None:
    meta = Metadata(accepted_at=AT)
    normal = Normal(5, meta)
    completed = Completed("c1", {"ok": True}, meta)
    assert normal == Normal(5, meta)
    assert completed == Completed("c1", {"ok": True}, meta)
    assert completed != Completed(1, {"ok": True}, meta)
    with pytest.raises(dataclasses.FrozenInstanceError):
        normal.value = 6  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        completed.id = "c2"  # type: ignore[misc]


def test_manual_clock_moves_only_forward_when_told() -> None:
    clock = ManualClock(AT)
    assert clock.now() == AT
    assert clock.now() == AT
    assert clock.advance(1.5) == AT + timedelta(seconds=1.5)
    assert clock.advance(timedelta(minutes=1)) == AT + timedelta(seconds=61.5)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(AT)
    with pytest.raises(ValueError, match="timezone"):
        ManualClock(datetime(2026, 1, 1))
