"""PostgreSQL only: what happens when the server goes away and comes back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from fasm_es import EncodedRecord, StoreUnavailable, open_store

if TYPE_CHECKING:
    from conftest import PostgresCluster

pytestmark = pytest.mark.postgres


def record(version: int) -> EncodedRecord:
    """A record of stream ``s``."""
    return EncodedRecord("s", version, "Raw", b"{}", "")


def test_a_server_that_goes_away_raises_store_unavailable_then_recovers(
    postgres_cluster: PostgresCluster,
) -> None:
    url = postgres_cluster.url.replace("postgresql://postgres@", "postgresql://postgres:pw@")
    with open_store(f"{url}?connect_timeout=2") as store:
        store.append([record(1)])
        postgres_cluster.stop()

        with pytest.raises(StoreUnavailable) as info:
            store.append([record(2)])
        message = str(info.value)
        assert "postgres:***@127.0.0.1" in message and ":pw@" not in message
        assert "re-read the stream before retrying" in message
        with pytest.raises(StoreUnavailable, match="reading the log"):
            list(store.read_log())

        postgres_cluster.start()
        # The pool reconnects in the background; give it a bounded number of tries.
        for _ in range(20):
            try:
                store.append([record(2)])
                break
            except StoreUnavailable:
                continue
        assert [r.version for r in store.read_stream("s")] == [1, 2]
