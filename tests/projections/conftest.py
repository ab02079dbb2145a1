"""Fixtures of the projection tests: a view database beside each store, and a filled log.

``view_url`` is a SQLite file of its own for the memory and SQLite stores,
and the store's own database for PostgreSQL (a view may live in either).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from projection_defs import Fill, fill_ledger


@pytest.fixture
def view_url(backend: str, store_url: str, tmp_path: Path) -> str:
    """Where the test's views live."""
    if backend == "postgres":
        return store_url
    return f"sqlite:///{tmp_path / 'views.db'}"


@pytest.fixture
def fill() -> Fill:
    """:func:`fill_ledger`, as a fixture."""
    return fill_ledger
