"""The stored encoding of records: round trips, metadata and the per-stream hash chain."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from machines import (
    Cancel,
    Charge,
    ChargeCard,
    ChargeResult,
    CheckStatus,
    Increment,
    Incremented,
    Payments,
    Receipt,
    Tally,
)
from pydantic import BaseModel

from fasm_es import (
    Codec,
    Completed,
    CorruptRecord,
    InvalidInput,
    MachineError,
    Metadata,
    Normal,
    RawRecord,
    Record,
    StateMachine,
    Tracked,
    UnknownRecordType,
    Untracked,
)
from fasm_es.record import GENESIS, chain_hash, split_hash

AT = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
META = Metadata(accepted_at=AT)


def payments_codec() -> Codec[Any, Any, Any, Any]:
    return Codec(Payments.types)


def round_trip(
    codec: Codec[Any, Any, Any, Any],
    inp: Normal[Any] | Completed[Any],
    actions: tuple[Any, ...],
    *,
    version: int = 1,
    prev: str = GENESIS,
    position: int = 17,
) -> Record[Any, Any, Any, Any]:
    encoded = codec.encode("acct-1", version, prev, inp, actions)
    raw = RawRecord("acct-1", version, position, encoded.tag, encoded.body)
    decoded = codec.decode(raw)
    assert decoded.hash == encoded.hash
    assert decoded.position == position
    assert decoded.version == version
    assert decoded.stream == "acct-1"
    return decoded


def test_normal_input_with_tracked_and_untracked_actions_round_trips() -> None:
    actions = (
        Tracked(1, ChargeCard(amount=5)),
        Untracked(Receipt(amount=5, ok=True)),
        Tracked("c2", CheckStatus(amount_due=7)),
    )
    inp = Normal(Charge(amount=5), META)
    decoded = round_trip(payments_codec(), inp, actions)
    assert decoded.tag == "Charge"
    assert decoded.input == inp
    assert decoded.actions == actions


def test_completed_input_round_trips_with_int_and_string_ids() -> None:
    codec = payments_codec()
    for action_id in (3, "c3", "3"):
        inp = Completed(action_id, ChargeResult(ok=False), META)
        decoded = round_trip(codec, inp, (Untracked(Receipt(amount=1, ok=False)),))
        assert decoded.tag == "Completed"
        assert decoded.input == inp
        assert isinstance(decoded.input, Completed)
        # "3" and 3 are different ids: the type survives the JSON round trip.
        assert type(decoded.input.id) is type(action_id)


def test_action_ids_keep_their_type() -> None:
    actions = (Tracked(1, ChargeCard(amount=1)), Tracked("1", ChargeCard(amount=2)))
    decoded = round_trip(payments_codec(), Normal(Charge(amount=1), META), actions)
    assert [type(a.id) for a in decoded.actions if isinstance(a, Tracked)] == [int, str]


def test_record_with_no_actions_round_trips() -> None:
    decoded = round_trip(payments_codec(), Normal(Cancel(reason="none"), META), ())
    assert decoded.actions == ()
    assert decoded.tag == "Cancel"


def test_metadata_round_trips_with_every_field() -> None:
    meta = Metadata(
        accepted_at=AT.astimezone(timezone(timedelta(hours=-5))),
        actor="alice@example.com",
        correlation_id="order-9",
        causation_id="msg-4",
        idempotency_key="retry-key-1",
    )
    decoded = round_trip(payments_codec(), Normal(Charge(amount=2), meta), ())
    assert decoded.meta == meta
    assert decoded.meta.accepted_at.utcoffset() == timedelta(hours=-5)
    assert decoded.meta.accepted_at.tzinfo is not None


def test_body_layout_is_plain_json_without_absent_metadata() -> None:
    codec = payments_codec()
    encoded = codec.encode(
        "acct-1", 1, GENESIS, Normal(Charge(amount=5), META), (Tracked(1, ChargeCard(amount=5)),)
    )
    body = json.loads(encoded.body)
    assert list(body) == ["input", "actions", "meta", "hash"]
    assert body["input"] == {"amount": 5, "ids": "int"}
    assert body["actions"] == [{"id": 1, "action": {"amount": 5}}]
    assert body["meta"] == {"accepted_at": "2026-05-06T07:08:09.123456Z"}
    assert body["hash"] == encoded.hash
    completed = codec.encode(
        "acct-1", 2, encoded.hash, Completed(1, ChargeResult(ok=True), META), ()
    )
    assert list(json.loads(completed.body)) == ["id", "result", "actions", "meta", "hash"]


# -- the hash chain -------------------------------------------------------------------


def test_chain_hash_covers_the_previous_hash_and_the_record() -> None:
    content = b'{"input":1}'
    base = chain_hash("p", "s", 1, "T", content)
    assert len(base) == 64
    assert base == chain_hash("p", "s", 1, "T", content)
    assert chain_hash("q", "s", 1, "T", content) != base
    assert chain_hash("p", "t", 1, "T", content) != base
    assert chain_hash("p", "s", 2, "T", content) != base
    assert chain_hash("p", "s", 1, "U", content) != base
    assert chain_hash("p", "s", 1, "T", b'{"input":2}') != base


def test_split_hash_recovers_the_hashed_content_and_the_hash() -> None:
    codec = payments_codec()
    encoded = codec.encode("acct-1", 1, GENESIS, Normal(Charge(amount=5), META), ())
    split = split_hash(encoded.body)
    assert split is not None
    content, stored = split
    assert stored == encoded.hash
    assert chain_hash(GENESIS, "acct-1", 1, encoded.tag, content) == encoded.hash
    assert json.loads(content) == {k: v for k, v in json.loads(encoded.body).items() if k != "hash"}


@pytest.mark.parametrize("body", [b"", b"{}", b'{"input":1}', b'{"hash":"short"}', b"not json"])
def test_split_hash_refuses_a_malformed_body(body: bytes) -> None:
    assert split_hash(body) is None


def test_each_hash_depends_on_the_previous_record() -> None:
    codec = payments_codec()
    first = codec.encode("acct-1", 1, GENESIS, Normal(Charge(amount=5), META), ())
    edited_first = codec.encode("acct-1", 1, GENESIS, Normal(Charge(amount=6), META), ())
    second_input = Normal(Cancel(reason="x"), META)
    second = codec.encode("acct-1", 2, first.hash, second_input, ())
    second_after_edit = codec.encode("acct-1", 2, edited_first.hash, second_input, ())
    assert first.hash != edited_first.hash
    # The same second record gets a different hash when its predecessor differs.
    assert second.hash != second_after_edit.hash
    split = split_hash(second.body)
    assert split is not None
    other = split_hash(second_after_edit.body)
    assert other is not None
    # Same content, different stored hash.
    assert other[0] == split[0]
    assert other[1] != split[1]
    assert chain_hash(first.hash, "acct-1", 2, second.tag, split[0]) == second.hash


# -- decoding errors and validation -----------------------------------------------------


def test_decode_unknown_tag_names_stream_version_tag_and_machine() -> None:
    codec = payments_codec()
    with pytest.raises(UnknownRecordType) as info:
        codec.decode(RawRecord("acct-1", 4, 9, "Refund", b'{"input":{}}'))
    err = info.value
    assert (err.stream, err.version, err.tag) == ("acct-1", 4, "Refund")
    assert "Payments" in str(err)
    assert "'acct-1'" in str(err)
    assert "version 4" in str(err)


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"input":{"amount":"lots"},"actions":[],"meta":{"accepted_at":"2026-01-01T00:00:00Z"},'
        b'"hash":"x"}',
        b'{"input":{"amount":1},"actions":[],"meta":{"accepted_at":"2026-01-01T00:00:00"},'
        b'"hash":"x"}',
        b'{"input":{"amount":1},"actions":[],"hash":"x"}',
    ],
)
def test_decode_invalid_body_is_a_corrupt_record(body: bytes) -> None:
    with pytest.raises(CorruptRecord) as info:
        payments_codec().decode(RawRecord("acct-1", 2, 5, "Charge", body))
    assert (info.value.stream, info.value.version) == ("acct-1", 2)


# -- decoding for folding --------------------------------------------------------------

TALLY_META = b'"meta":{"accepted_at":"2026-01-01T00:00:00Z"},"hash":"' + b"0" * 64 + b'"}'


def tally_raw(body: bytes, tag: str = "Increment") -> RawRecord:
    return RawRecord("t", 3, 8, tag, body)


def test_fold_input_is_the_input_decode_gives_and_stored_hash_its_hash() -> None:
    codec: Codec[Any, Any, Any, Any] = Codec(Tally.types)
    meta = Metadata(accepted_at=AT, actor="ann", idempotency_key="k-1")
    encoded = codec.encode(
        "t",
        1,
        GENESIS,
        Normal(Increment(by=4), meta),
        (Untracked(Incremented(previous=0, current=4)),),
    )
    raw = RawRecord("t", 1, 3, encoded.tag, encoded.body)
    inp = codec.fold_input(raw)
    assert type(inp) is Normal
    assert inp == codec.decode(raw).input == Normal(Increment(by=4), meta)
    assert codec.stored_hash(raw) == codec.decode(raw).hash == encoded.hash


def test_fold_input_leaves_other_records_to_decode() -> None:
    # A machine with tracked actions needs them to fold: every record is decoded.
    payments = payments_codec()
    charge = payments.encode("p", 1, GENESIS, Normal(Charge(amount=5), META), ())
    assert payments.fold_input(RawRecord("p", 1, 1, charge.tag, charge.body)) is None
    # A tag that is not a current input type (an older version, or unknown).
    tally: Codec[Any, Any, Any, Any] = Codec(Tally.types)
    body = b'{"input":{"by":1},"actions":[],' + TALLY_META
    assert tally.fold_input(tally_raw(body)) is not None
    assert tally.fold_input(tally_raw(body, "Increment@2")) is None
    assert tally.fold_input(tally_raw(body, "Completed")) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"input":{"by":"x"},"actions":[],' + TALLY_META,
        b'{"input":{"by":1},' + TALLY_META,  # no actions
        b'{"input":{"by":1},"actions":[],"meta":{"accepted_at":"2026-01-01T00:00:00Z"}}',
        b'{"input":{"by":1},"actions":[],"meta":{"accepted_at":"2026-01-01T00:00:00Z"},"hash":7}',
        b'{"input":{"by":1},"actions":[1],' + TALLY_META,
        # A tracked entry in a machine that declares none, however it is laid out.
        b'{"input":{"by":1},"actions":[{"id":1,"action":{"previous":0,"current":1}}],' + TALLY_META,
        b'{"input":{"by":1},"actions":[{"action":{"previous":0,"current":1}},'
        b'{"action":{"previous":1,"current":2},"id":1}],' + TALLY_META,
        b'{"input":{"by":1},"actions":[{ "id" : "a", "action":{"previous":0,"current":1}}],'
        + TALLY_META,
    ],
    ids=[
        "wrong-field-type",
        "no-actions",
        "no-hash",
        "hash-not-a-string",
        "action-not-an-object",
        "tracked-entry",
        "tracked-entry-id-last",
        "tracked-entry-spaced",
    ],
)
def test_fold_input_leaves_a_bad_body_to_decode_which_reports_it(body: bytes) -> None:
    codec: Codec[Any, Any, Any, Any] = Codec(Tally.types)
    assert codec.fold_input(tally_raw(body)) is None
    with pytest.raises(CorruptRecord) as info:
        codec.decode(tally_raw(body))
    assert (info.value.stream, info.value.version) == ("t", 3)


def test_validate_input_names_the_field() -> None:
    codec: Codec[Any, Any, Any, Any] = Codec(Tally.types)
    assert codec.validate_input({"by": 3}) == Increment(by=3)
    with pytest.raises(InvalidInput) as info:
        codec.validate_input({"by": "three"})
    assert "by" in str(info.value)
    assert info.value.errors[0]["loc"] == ("by",)


def test_validate_result_refuses_results_a_machine_does_not_declare() -> None:
    codec: Codec[Any, Any, Any, Any] = Codec(Tally.types)
    with pytest.raises(InvalidInput, match="declares no tracked results"):
        codec.validate_result({"ok": True})


def test_subclass_of_a_declared_input_model_is_invalid_input() -> None:
    class BigIncrement(Increment):
        extra: int = 0

    codec: Codec[Any, Any, Any, Any] = Codec(Tally.types)
    with pytest.raises(InvalidInput, match="BigIncrement is not a declared input model"):
        codec.validate_input(BigIncrement(by=1))


# -- values that would read back as something else ---------------------------------------


class Go(BaseModel):
    """A tracked action."""

    n: int


class Check(BaseModel):
    """Another tracked action with the same fields as Go: indistinguishable in JSON."""

    n: int


class Succeeded(BaseModel):
    """An empty result."""


class Failed(BaseModel):
    """Another empty result: encodes exactly as Succeeded does."""


class Ambiguous(StateMachine[Succeeded, int, Go | Check, Succeeded | Failed, float]):
    """Declares unions whose members encode alike."""

    def stf(self, state: Any, input: Any, actions: Any) -> None:
        return None


def test_action_that_would_read_back_as_another_model_is_a_machine_error() -> None:
    codec: Codec[Any, Any, Any, Any] = Codec(Ambiguous.types)
    # The first member reads back as itself, so it is fine.
    round_trip(codec, Normal(1, META), (Tracked(1, Go(n=1)),))
    with pytest.raises(MachineError, match=r"read back from the log as \[Tracked\(id=1, action=Go"):
        codec.encode("acct-1", 1, GENESIS, Normal(1, META), (Tracked(1, Check(n=1)),))


def test_result_that_would_read_back_as_another_model_is_a_machine_error() -> None:
    codec: Codec[Any, Any, Any, Any] = Codec(Ambiguous.types)
    round_trip(codec, Completed(1, Succeeded(), META), ())
    with pytest.raises(MachineError, match="tracked result Failed"):
        codec.encode("acct-1", 1, GENESIS, Completed(1, Failed(), META), ())


def test_action_that_cannot_be_read_back_is_a_machine_error() -> None:
    codec: Codec[Any, Any, Any, Any] = Codec(Ambiguous.types)
    round_trip(codec, Normal(1, META), (Untracked(1.5),))
    # JSON has no NaN: it would be stored as null and the record could not be decoded.
    with pytest.raises(MachineError, match="read back"):
        codec.encode("acct-1", 1, GENESIS, Normal(1, META), (Untracked(float("nan")),))
