"""The PostgreSQL append benchmark at a tiny size: both sides store the same rows, or it skips.

Speed is not checked here (that is what ``make bench`` is for); correctness is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from benchmarks import pg_append
from benchmarks.__main__ import main
from benchmarks.postgres import Server, postgres_server
from benchmarks.projections import fresh_schema

RECORDS = 300


def _schemas(url: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(b"SELECT nspname FROM pg_namespace").fetchall()
    return {str(row[0]) for row in rows}


@pytest.mark.postgres
def test_both_sides_store_the_same_rows(postgres_url: str) -> None:
    digests = {}
    for name, schema, table, columns in (
        ("ours", pg_append.OURS_SCHEMA, pg_append.OURS_TABLE, ("originator_version", "state")),
        ("raw", pg_append.RAW_SCHEMA, pg_append.RAW_TABLE, ("version", "body")),
    ):
        fresh_schema(postgres_url, schema)
        side = getattr(pg_append, f"append_{name}")
        done = side(postgres_url, str(RECORDS), "100")
        assert done["appended"] == RECORDS
        assert done["seconds"] > 0
        digests[name] = pg_append.table_digest(postgres_url, schema, table, *columns)
    assert digests["ours"] == digests["raw"]
    assert digests["ours"][:2] == (RECORDS, RECORDS * (RECORDS + 1) // 2)


@pytest.mark.postgres
def test_run_reports_ours_beside_raw_and_leaves_no_schema(postgres_url: str) -> None:
    result = pg_append.run(RECORDS, 100, 1, postgres_url=postgres_url)
    assert result.skipped is None
    assert result.ours is not None and result.raw is not None
    (figure,) = result.figures()
    assert figure.ours == pytest.approx(RECORDS / result.ours.runs[0].seconds)
    assert figure.baseline == pytest.approx(RECORDS / result.raw.runs[0].seconds)
    assert result.as_json()["records_per_s"]["ours"] > 0
    assert {pg_append.OURS_SCHEMA, pg_append.RAW_SCHEMA}.isdisjoint(_schemas(postgres_url))


@pytest.mark.postgres
def test_without_a_url_a_throwaway_cluster_serves_the_run() -> None:
    from tests.conftest import _server_binaries

    if _server_binaries() is None:
        pytest.skip("no PostgreSQL server binaries to start a cluster with")
    with postgres_server(None, lambda _: None) as server:
        assert server.url is not None
        assert server.skipped is None
        with psycopg.connect(server.url) as connection:
            assert connection.execute(b"SELECT 1").fetchone() == (1,)


def test_without_a_server_the_figure_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @contextmanager
    def no_server(url: str | None, progress: Any) -> Iterator[Server]:
        yield Server(None, "no server here")

    monkeypatch.setattr(pg_append, "postgres_server", no_server)
    result = pg_append.run(RECORDS, 100, 1)
    assert result.figures() == []
    assert result.as_json()["skipped"] == "no server here"

    assert main(["pg-append", "--records", "10"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any("skipped, no server here" in line for line in out)
    assert json.loads(out[-1])["benchmarks"]["pg-append"]["skipped"] == "no server here"
