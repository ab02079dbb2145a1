"""Databases written by real services, and a runner for ``fasm-es`` in this process."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from examples.coffee_shop import CoffeeShop, EarnPoints, RequestRedemption
from examples.counter import Increment
from fasm_es import Streams, open_store
from fasm_es.cli import app
from tests.cli.drifted import Snapshotting

COUNTER = "examples.counter:Counter"
COFFEE = "examples.coffee_shop:CoffeeShop"
DRIFTED = "tests.cli.drifted"
CLEAN_ENV: dict[str, str | None] = {
    "FASM_ES_DATABASE_URL": None,
    "FASM_ES_MACHINE": None,
    "FASM_ES_DEBUG": None,
    "FASM_ES_CIPHER_KEY": None,
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "COLUMNS": "200",
}

Run = Callable[..., Result]


@pytest.fixture
def fasm() -> Run:
    """Run ``fasm-es ARGS`` in this process, with none of the user's FASM_ES_* settings."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
        return runner.invoke(app, list(args), env={**CLEAN_ENV, **(env or {})})

    return run


def write_counters(url: str) -> None:
    """Stream ``c-1``: +1, +2, +3 (snapshots at 2); ``c-2``: +1, +1 (snapshot at 2)."""
    with open_store(url) as store:
        streams = Streams(Snapshotting(), store)
        for by in (1, 2, 3):
            streams.submit("c-1", Increment(by=by), actor="alice", correlation_id=f"corr-{by}")
        for _ in range(2):
            streams.submit("c-2", Increment(by=1), actor="bob")


def write_coffee(url: str) -> None:
    """Stream ``bob``: points earned, then a redemption whose Redeem is still outstanding."""
    with open_store(url) as store:
        streams = Streams(CoffeeShop(), store)
        streams.submit("bob", EarnPoints(order_id="B-1", points=300), actor="till-2")
        streams.submit("bob", RequestRedemption(reward="muffin", cost=100), actor="app")
        streams.submit("carol", EarnPoints(order_id="C-1", points=10), actor="till-1")


@pytest.fixture
def counter_db(tmp_path: Path) -> str:
    """A SQLite file with two counter streams."""
    url = f"sqlite:///{tmp_path / 'counter.db'}"
    write_counters(url)
    return url


@pytest.fixture
def coffee_db(tmp_path: Path) -> str:
    """A SQLite file with two coffee-shop streams, one with an outstanding Redeem."""
    url = f"sqlite:///{tmp_path / 'coffee.db'}"
    write_coffee(url)
    return url


def sqlite_execute(url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Change a SQLite store behind the library's back (to tamper with it)."""
    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(statement, params)
