"""The projection catch-up benchmark at a tiny size: it runs, both views agree, it reports.

Speed is not checked here (that is what ``make bench`` is for); correctness is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import projections as bench
from benchmarks.__main__ import main

RECORDS = 1_500


def test_sqlite_catch_up_ours_and_raw_build_the_same_view(tmp_path: Path) -> None:
    result = bench.run(RECORDS, 1, cache_dir=tmp_path, batch=400)
    (pair,) = result.pairs
    assert pair.database == "SQLite"
    # Row count, then sums of position, version, increment and running total.
    n = RECORDS
    assert pair.digest == (n, n * (n + 1) // 2, n * (n + 1) // 2, n, n * (n + 1) // 2)
    (figure,) = result.figures()
    assert figure.key == "catch_up_sqlite" and figure.goal == bench.RAW_GOAL
    assert figure.ratio == pytest.approx(pair.ours.rate(n) / pair.raw.rate(n))
    assert result.skipped and "PostgreSQL" in result.skipped[0]


@pytest.mark.postgres
def test_postgres_catch_up_ours_and_raw_build_the_same_view(
    tmp_path: Path, postgres_url: str
) -> None:
    result = bench.run(
        RECORDS, 1, cache_dir=tmp_path, batch=400, postgres_url=postgres_url, sqlite=False
    )
    (pair,) = result.pairs
    assert pair.database == "PostgreSQL" and pair.digest[0] == RECORDS
    # A second run finds the store already built and reuses it.
    again = bench.run(
        RECORDS, 1, cache_dir=tmp_path, batch=400, postgres_url=postgres_url, sqlite=False
    )
    assert again.pairs[0].digest == pair.digest


def test_command_line_ends_with_a_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(bench.POSTGRES_URL_ENV, raising=False)
    argv = ["projections", "--records", "300", "--repeat", "1", "--batch", "100"]
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)["benchmarks"]["projections"]
    assert report["records"] == 300 and report["batch"] == 100
    assert set(report["records_per_s"]["sqlite"]) == {"ours", "raw"}
    assert report["figures"]["catch_up_sqlite"]["goal"] == ">= 0.4x"
