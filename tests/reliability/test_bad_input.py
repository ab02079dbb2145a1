"""Bad input, fuzzed: every malformed thing gets a clear named error and the log stays as it was.

- random and malformed payloads at ``submit``: ``InvalidInput`` (or the
  machine's rejection), never another exception, and the stored log is byte
  for byte what it was;
- random stream ids: accepted, or ``ValueError`` naming what is wrong;
- random bytes, truncated JSON and flipped bytes in stored rows: decoding
  raises a ``RecordDecodeError`` naming the stream and version (or, for a
  flip inside a string, decodes, and the hash chain catches it);
- unknown type tags: ``UnknownRecordType``;
- inputs whose record passes ``max_record_bytes``: ``RecordTooLarge``;
- unknown and duplicate completion ids: ``CompletionNotOutstanding``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from workers.machine import Deposit, Ledger, Post, Posted

from fasm_es import (
    Actions,
    CompletionNotOutstanding,
    CorruptRecord,
    Engine,
    EventStore,
    Input,
    InvalidInput,
    Normal,
    NoTracked,
    RawRecord,
    RecordDecodeError,
    RecordTooLarge,
    Rejection,
    StateMachine,
    Streams,
    UnknownRecordType,
    open_store,
    verify,
)
from fasm_es.record import Codec, EncodedRecord

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
odd_values = st.one_of(
    st.binary(),
    st.sets(st.integers(), max_size=3),
    st.builds(object),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(),
)
deposit_like = st.fixed_dictionaries(
    {"ref": json_values | odd_values, "amount": json_values | odd_values},
    optional={"extra": json_values},
)
payloads = st.one_of(json_values, odd_values, deposit_like)


def log_bytes(store: EventStore) -> list[tuple[str, int, int, str, bytes]]:
    """Every stored row, as stored."""
    return [(r.stream, r.version, r.position, r.tag, r.body) for r in store.read_log()]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Streams[Any, Any, Any, Any, Any]]:
    """Ledger streams on a SQLite file, with a few records already stored."""
    with open_store(f"sqlite:///{tmp_path / 'fuzz.db'}") as store:
        streams = Streams(Ledger(), store)
        for i in range(3):
            record = streams.submit("acct", Deposit(ref=f"seed-{i}", amount=i + 1))
            streams.complete("acct", record.actions[0].id, Posted(receipt=f"R{i}"))  # type: ignore[union-attr]
        streams.submit("acct", Deposit(ref="pending", amount=5))
        yield streams


def still_the_fold(streams: Streams[Any, Any, Any, Any, Any], stream: str) -> None:
    """The state held equals the log's fold (DESIGN guarantee 2)."""
    assert streams.state(stream) == streams.verify_replay(stream).state


@FUZZ
@given(payload=payloads)
def test_malformed_payloads_are_refused_by_name_and_append_nothing(
    ledger: Streams[Any, Any, Any, Any, Any], payload: object
) -> None:
    before = log_bytes(ledger.store)
    try:
        ledger.submit("acct", payload)
    except (InvalidInput, Rejection):
        assert log_bytes(ledger.store) == before
        still_the_fold(ledger, "acct")
        return
    # Accepted: it really was a valid deposit, and exactly one record was added.
    assert Deposit.model_validate(payload)
    assert len(log_bytes(ledger.store)) == len(before) + 1


@FUZZ
@given(stream=st.text(max_size=20))
def test_any_stream_id_is_stored_as_given_or_refused_with_a_value_error(
    ledger: Streams[Any, Any, Any, Any, Any], stream: str
) -> None:
    before = log_bytes(ledger.store)
    try:
        record = ledger.submit(stream, Deposit(ref="r", amount=1))
    except ValueError as exc:
        assert "stream id" in str(exc)
        assert log_bytes(ledger.store) == before
        return
    assert [r.stream for r in ledger.store.read_stream(stream)][-1] == stream
    assert record.stream == stream


def test_refused_payloads_through_the_engine_leave_the_log_byte_identical(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'engine.db'}"

    async def post(action: Post, key: object) -> Posted:
        return Posted(receipt="R")

    bad: list[object] = [
        {"ref": "x"},
        {"ref": "x", "amount": "many"},
        {"ref": "x", "amount": 0},
        {"ref": "", "amount": 1},
        {"ref": "x", "amount": 1, "admin": True},
        "Deposit(ref='x', amount=1)",
        b'{"ref": "x", "amount": 1}',
        None,
        [1, 2],
    ]

    async def scenario() -> None:
        async with Engine(Ledger(), url, handlers={Post: post}) as engine:
            await engine.submit("acct", Deposit(ref="ok", amount=1))
            await engine.idle(timeout=10)
            before = log_bytes(engine.store)
            for payload in bad:
                with pytest.raises(InvalidInput):
                    await engine.submit("acct", payload)
            with pytest.raises(Rejection):
                await engine.submit("acct", Deposit(ref="unlucky", amount=97))
            for stream in ("", "$fasm-es/outstanding", "a\x00b", "x\ud800"):
                with pytest.raises(ValueError, match="stream id"):
                    await engine.submit(stream, Deposit(ref="r", amount=1))
            assert log_bytes(engine.store) == before
            assert (await engine.state("acct")) == Streams(Ledger(), engine.store).verify_replay(
                "acct"
            ).state

    asyncio.run(scenario())


# -- stored rows ---------------------------------------------------------------------------


@pytest.fixture
def stored(ledger: Streams[Any, Any, Any, Any, Any]) -> RawRecord:
    """A genuine stored record (version 1 of ``acct``)."""
    return next(iter(ledger.store.read_stream("acct")))


CODEC = Codec.for_machine(Ledger())


@FUZZ
@given(body=st.binary(max_size=300))
def test_random_bytes_in_a_stored_row_raise_a_decode_error(stored: RawRecord, body: bytes) -> None:
    raw = RawRecord(stored.stream, stored.version, stored.position, stored.tag, body)
    with pytest.raises(RecordDecodeError) as raised:
        CODEC.decode(raw)
    assert raised.value.stream == stored.stream
    assert raised.value.version == stored.version


@FUZZ
@given(data=st.data())
def test_truncated_json_in_a_stored_row_raises_corrupt_record(
    stored: RawRecord, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(stored.body) - 1))
    raw = RawRecord(stored.stream, stored.version, stored.position, stored.tag, stored.body[:cut])
    with pytest.raises(CorruptRecord, match=f"stream 'acct' version {stored.version}"):
        CODEC.decode(raw)


@FUZZ
@given(data=st.data())
def test_a_flipped_byte_is_refused_or_caught_by_the_hash_chain(
    stored: RawRecord, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(stored.body) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != stored.body[at]))
    body = stored.body[:at] + bytes([value]) + stored.body[at + 1 :]
    with contextlib.suppress(RecordDecodeError):  # refused by name, or decoded
        CODEC.decode(RawRecord(stored.stream, 1, 1, stored.tag, body))
    # Decoded or not, the verifier sees the change.
    with open_store("memory://") as store:
        store.append([EncodedRecord(stored.stream, 1, stored.tag, body, "")])
        assert not verify(store).ok


@FUZZ
@given(tag=st.text(min_size=1, max_size=40))
def test_an_undeclared_type_tag_raises_unknown_record_type(stored: RawRecord, tag: str) -> None:
    assume(tag not in ("Deposit", "Completed", "Normal"))
    raw = RawRecord(stored.stream, stored.version, stored.position, tag, stored.body)
    with pytest.raises(UnknownRecordType) as raised:
        CODEC.decode(raw)
    assert raised.value.tag == tag


# -- size limit ----------------------------------------------------------------------------


class Note(BaseModel):
    """An input of any length."""

    text: str


class NoteBook(BaseModel):
    """How many notes, and how long in all."""

    notes: int = 0
    chars: int = 0


class Notes(StateMachine[NoteBook, Note, NoTracked, NoTracked, None]):
    """Keeps notes of any length (the store's limit is the only bound)."""

    def stf(
        self, state: NoteBook, input: Input[Note, NoTracked], actions: Actions[Any, None]
    ) -> None:
        assert isinstance(input, Normal)
        state.notes += 1
        state.chars += len(input.value.text)


LIMIT = 4096


@FUZZ
@given(size=st.integers(LIMIT - 400, LIMIT + 400))
def test_records_over_the_size_limit_are_refused_by_name(size: int) -> None:
    with open_store("memory://") as store:
        streams = Streams(Notes(), store, max_record_bytes=LIMIT)
        streams.submit("n", Note(text="first"))
        before = log_bytes(store)
        try:
            record = streams.submit("n", Note(text="x" * size))
        except RecordTooLarge as exc:
            assert exc.size > LIMIT and exc.limit == LIMIT
            assert isinstance(exc, InvalidInput)
            assert "max_record_bytes" in str(exc)
            assert log_bytes(store) == before
            assert streams.state("n") == NoteBook(notes=1, chars=5)
            return
        stored = list(store.read_stream("n"))[-1]
        assert len(stored.body) <= LIMIT
        assert record.version == 2


def test_the_default_limit_refuses_a_huge_input_through_the_engine(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Notes(), f"sqlite:///{tmp_path / 'notes.db'}") as engine:
            await engine.submit("n", Note(text="small"))
            with pytest.raises(RecordTooLarge, match="1,048,576"):
                await engine.submit("n", Note(text="x" * 2_000_000))
            assert engine.store.last_version("n") == 1
            assert await engine.state("n") == NoteBook(notes=1, chars=5)

    asyncio.run(scenario())


# -- completions ---------------------------------------------------------------------------

action_ids = st.integers(-(2**40), 2**40) | st.text(min_size=1, max_size=10)


@FUZZ
@given(action_id=action_ids)
def test_unknown_completion_ids_are_refused_and_never_reach_the_stf(
    ledger: Streams[Any, Any, Any, Any, Any], action_id: int | str
) -> None:
    assume(action_id != 4)  # the one outstanding id (the "pending" deposit)
    before = log_bytes(ledger.store)
    with pytest.raises(CompletionNotOutstanding) as raised:
        ledger.complete("acct", action_id, Posted(receipt="R"))
    expected = "completed" if action_id in (1, 2, 3) else "unknown"
    assert raised.value.reason == expected
    assert log_bytes(ledger.store) == before


@FUZZ
@given(result=payloads)
def test_malformed_completion_results_are_refused_by_name(
    ledger: Streams[Any, Any, Any, Any, Any], result: object
) -> None:
    before = log_bytes(ledger.store)
    try:
        ledger.complete("acct", 4, result)
    except InvalidInput:
        assert log_bytes(ledger.store) == before
        return
    # A valid result: the one outstanding action is now completed, once.
    assert Posted.model_validate(result)
    assert ledger.outstanding("acct") == {}
    with pytest.raises(CompletionNotOutstanding):
        ledger.complete("acct", 4, result)


def test_a_duplicate_completion_through_the_engine_is_refused_and_counted(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Engine(Ledger(), f"sqlite:///{tmp_path / 'c.db'}") as engine:
            record = await engine.submit("acct", Deposit(ref="a", amount=1))
            action_id = record.actions[0].id  # type: ignore[union-attr]
            await engine.complete("acct", action_id, Posted(receipt="R1"))
            before = log_bytes(engine.store)
            for _ in range(3):
                with pytest.raises(CompletionNotOutstanding) as raised:
                    await engine.complete("acct", action_id, Posted(receipt="R2"))
                assert raised.value.reason == "completed"
            with pytest.raises(CompletionNotOutstanding) as raised:
                await engine.complete("acct", 999, Posted(receipt="R3"))
            assert raised.value.reason == "unknown"
            assert log_bytes(engine.store) == before
            assert engine.stats().completions_ignored == 4
            assert (await engine.state("acct")).posted == 1

    asyncio.run(scenario())


def test_a_stored_row_with_broken_json_stops_loading_with_its_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broken.db'}"
    with open_store(url) as store:
        streams = Streams(Ledger(), store)
        streams.submit("acct", Deposit(ref="a", amount=1))
        good = next(iter(store.read_stream("acct")))
        body = json.dumps({"input": {"ref": "b"}}).encode()
        store.append([EncodedRecord("acct", 2, good.tag, body, "")])
        with pytest.raises(CorruptRecord, match="stream 'acct' version 2"):
            Streams(Ledger(), store).load("acct")
