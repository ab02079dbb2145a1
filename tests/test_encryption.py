"""Optional encryption at rest: stored bytes are not plaintext and decode only with the key."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from examples.counter import Counter, Increment
from fasm_es import CorruptRecord, StoreError, Streams, open_store, verify
from fasm_es.store import new_cipher_key


class Snappy(Counter):
    snapshot_every = 2


def stored_bodies(path: Path, table: str) -> list[bytes]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute(f"SELECT state FROM {table}")]


def test_encrypted_bodies_are_not_plaintext_and_decode_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.db"
    key = new_cipher_key()
    with open_store(f"sqlite:///{path}", cipher_key=key) as store:
        counters = Streams(Snappy(), store)
        for _ in range(3):
            counters.submit("c", Increment(by=4), actor="alice-secret")
    for body in stored_bodies(path, "fasm_records") + stored_bodies(path, "fasm_snapshots"):
        assert b"alice-secret" not in body
        assert b'"by"' not in body and b'"value"' not in body
    with open_store(f"sqlite:///{path}", cipher_key=key) as store:
        assert Streams(Snappy(), store).state("c").value == 12
        assert verify(store).ok


def test_wrong_key_or_no_key_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'secret.db'}"
    with open_store(url, cipher_key=new_cipher_key()) as store:
        Streams(Counter(), store).submit("c", Increment())
    with open_store(url, cipher_key=new_cipher_key()) as store:
        with pytest.raises(CorruptRecord, match="cannot decrypt"):
            Streams(Counter(), store).state("c")
        report = verify(store)
        assert [(b.stream, b.version, b.kind) for b in report.breaks] == [("c", 1, "malformed")]
    with open_store(url) as store, pytest.raises(CorruptRecord):
        Streams(Counter(), store).state("c")


def test_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASM_ES_CIPHER_KEY", new_cipher_key(16))
    path = tmp_path / "env.db"
    with open_store(f"sqlite:///{path}") as store:
        Streams(Counter(), store).submit("c", Increment(by=9))
    assert all(b'"by"' not in b for b in stored_bodies(path, "fasm_records"))
    with open_store(f"sqlite:///{path}") as store:
        assert Streams(Counter(), store).state("c").value == 9


def test_invalid_key_is_refused() -> None:
    with pytest.raises(StoreError, match="invalid cipher key"):
        open_store("memory://", cipher_key="not base64 at all!")
