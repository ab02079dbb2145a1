"""Fixtures of the store conformance suite: a test that takes ``store`` or ``target``
runs on every backend (narrow with ``@pytest.mark.backends(...)``).

- ``target``: a fresh database on one backend, and how to open more
  connections to it (:class:`store_targets.StoreTarget`).
- ``store``: an open store on that database, closed after the test.
- ``make_records``: valid, chained records of the counter example.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from store_targets import MakeRecords, StoreTarget, counter_records

from fasm_es import EventStore


@pytest.fixture
def target(backend: str, store_url: str) -> Iterator[StoreTarget]:
    """A fresh, empty database on each backend in turn."""
    t = StoreTarget(backend, store_url)
    try:
        yield t
    finally:
        t.close_all()


@pytest.fixture
def store(target: StoreTarget) -> EventStore:
    """An open store on a fresh database."""
    return target.open()


@pytest.fixture
def make_records() -> MakeRecords:
    """:func:`store_targets.counter_records`, as a fixture."""
    return counter_records
