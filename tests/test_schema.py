"""Schema evolution: old stored records are upcast on read; what cannot be read says why."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from fasm_es import (
    Actions,
    DefinitionError,
    Input,
    Normal,
    NoTracked,
    StateMachine,
    Streams,
    UnknownRecordType,
    open_store,
    upcaster,
)
from fasm_es.record import chain_hash


class Account(BaseModel):
    cents: int = 0
    reversed: int = 0


class Deposit(BaseModel):
    """Version 2: amounts in cents with a currency (version 1 had ``amount`` in whole euros)."""

    cents: int
    currency: Literal["EUR", "USD"]


class Reversal(BaseModel):
    cents: int


class Bank(StateMachine[Account, Deposit | Reversal, NoTracked, NoTracked, NoTracked]):
    snapshot_every = None
    schema_versions = {"Deposit": 2}

    @staticmethod
    @upcaster("Deposit", 1)
    def euros_to_cents(body: dict[str, Any]) -> dict[str, Any]:
        body["input"] = {"cents": body["input"]["amount"] * 100, "currency": "EUR"}
        return body

    @staticmethod
    @upcaster("Refund", 1, to="Reversal")
    def refund_is_now_reversal(body: dict[str, Any]) -> dict[str, Any]:
        body["input"] = {"cents": body["input"]["euros"] * 100}
        return body

    def stf(
        self,
        state: Account,
        input: Input[Deposit | Reversal, NoTracked],
        actions: Actions[NoTracked, NoTracked],
    ) -> None:
        assert isinstance(input, Normal)
        if isinstance(input.value, Deposit):
            state.cents += input.value.cents
        else:
            state.cents -= input.value.cents
            state.reversed += 1


def write_old_row(
    path: Path, stream: str, version: int, prev: str, tag: str, input_json: bytes
) -> str:
    """Insert a row exactly as older code stored it (valid chain hash included)."""
    content = (
        b'{"input":' + input_json + b',"actions":[],"meta":{"accepted_at":"2025-01-01T00:00:00Z"}}'
    )
    digest = chain_hash(prev, stream, version, tag, content)
    body = content[:-1] + b',"hash":"' + digest.encode() + b'"}'
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO fasm_records (originator_id, originator_version, topic, state) "
            "VALUES (?, ?, ?, ?)",
            (stream, version, tag, body),
        )
    return digest


@pytest.fixture
def old_log(tmp_path: Path) -> Path:
    """A SQLite store holding version-1 rows: two deposits in euros and a Refund."""
    path = tmp_path / "old.db"
    open_store(f"sqlite:///{path}").close()  # creates the tables
    h = write_old_row(path, "acct", 1, "", "Deposit", b'{"amount":5}')
    h = write_old_row(path, "acct", 2, h, "Deposit", b'{"amount":7}')
    write_old_row(path, "acct", 3, h, "Refund", b'{"euros":2}')
    return path


def test_old_rows_are_upcast_on_read(old_log: Path) -> None:
    with open_store(f"sqlite:///{old_log}") as store:
        bank = Streams(Bank(), store)
        assert bank.state("acct") == Account(cents=1000, reversed=1)
        records = list(bank.records("acct"))
    assert [r.tag for r in records] == ["Deposit", "Deposit", "Refund"]
    assert records[0].input.value == Deposit(cents=500, currency="EUR")  # type: ignore[union-attr]
    assert records[2].input.value == Reversal(cents=200)  # type: ignore[union-attr]


def test_new_records_carry_the_current_version_and_mix_with_old(old_log: Path) -> None:
    with open_store(f"sqlite:///{old_log}") as store:
        bank = Streams(Bank(), store)
        record = bank.submit("acct", {"cents": 250, "currency": "USD"})
        assert record.tag == "Deposit@2"
        again = Streams(Bank(), store)
        assert again.state("acct") == Account(cents=1250, reversed=1)
        again.verify_replay("acct")
        from fasm_es import verify

        assert verify(store).ok  # upcasting reads, it never rewrites stored bytes


def test_unknown_record_type_names_stream_version_tag_and_fix(old_log: Path) -> None:
    write_old_row(old_log, "other", 1, "", "Chargeback", b'{"cents":1}')
    with open_store(f"sqlite:///{old_log}") as store, pytest.raises(UnknownRecordType) as info:
        Streams(Bank(), store).state("other")
    message = str(info.value)
    for part in ("'other'", "version 1", "'Chargeback'", "Bank", "declare it or add an upcaster"):
        assert part in message
    assert (info.value.stream, info.value.version, info.value.tag) == ("other", 1, "Chargeback")


def test_record_from_newer_code_is_refused_clearly(old_log: Path) -> None:
    write_old_row(old_log, "newer", 1, "", "Deposit@3", b'{"cents":1,"currency":"EUR"}')
    with (
        open_store(f"sqlite:///{old_log}") as store,
        pytest.raises(UnknownRecordType, match="newer than machine Bank knows"),
    ):
        Streams(Bank(), store).state("newer")


def test_malformed_version_in_tag_is_unknown(old_log: Path) -> None:
    write_old_row(old_log, "odd", 1, "", "Deposit@x", b'{"cents":1,"currency":"EUR"}')
    with open_store(f"sqlite:///{old_log}") as store, pytest.raises(UnknownRecordType):
        Streams(Bank(), store).state("odd")


def test_declared_version_without_upcaster_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match=r"no upcaster from version 1"):

        class Broken(StateMachine[Account, Deposit, NoTracked, NoTracked, NoTracked]):
            schema_versions = {"Deposit": 2}

            def stf(self, state: Any, input: Any, actions: Any) -> None:
                pass


def test_upcaster_that_returns_garbage_is_named(tmp_path: Path) -> None:
    class Sloppy(StateMachine[Account, Deposit, NoTracked, NoTracked, NoTracked]):
        schema_versions = {"Deposit": 2}

        @staticmethod
        @upcaster("Deposit", 1)
        def forgot_return(body: dict[str, Any]) -> dict[str, Any]:
            body["input"]["cents"] = 1
            return None  # type: ignore[return-value]

        def stf(self, state: Any, input: Any, actions: Any) -> None:
            pass

    path = tmp_path / "s.db"
    open_store(f"sqlite:///{path}").close()
    write_old_row(path, "s", 1, "", "Deposit", b'{"amount":1}')
    with (
        open_store(f"sqlite:///{path}") as store,
        pytest.raises(UnknownRecordType, match="forgot_return"),
    ):
        Streams(Sloppy(), store).state("s")
