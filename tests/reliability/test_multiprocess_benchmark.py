"""The 1-vs-3 engine process benchmark on PostgreSQL: a short run checks what it measures.

Speed is not asserted here (that is ``make bench`` and ``make torture``); the
long run marked ``torture`` measures the figures and records them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import record_figures

from benchmarks import multiprocess

pytestmark = pytest.mark.postgres


def test_a_short_run_reports_both_rates_from_equal_shares(
    postgres_url: str, tmp_path: Path
) -> None:
    result = multiprocess.run(
        postgres_url, seconds=1.0, concurrency=48, streams=300, repeat=1, cache_dir=tmp_path
    )
    (one,), (three,) = result.single, result.three
    assert one.commits > 0 and all(m.commits > 0 for m in three.members)
    assert [m.partitions for m in one.members] == [multiprocess.DEFAULT_PARTITIONS]
    assert [m.partitions for m in three.members] == [multiprocess.DEFAULT_PARTITIONS // 3] * 3
    figures = {f.key: f for f in result.figures()}
    assert figures["multiprocess_throughput"].ours == three.rate
    assert figures["multiprocess_throughput"].baseline == one.rate
    assert result.as_json()["per_s"] == {"three": round(three.rate), "one": round(one.rate)}


@pytest.mark.torture
def test_long_multiprocess_throughput(postgres_url: str, tmp_path: Path) -> None:
    result = multiprocess.run(postgres_url, cache_dir=tmp_path)
    record_figures("multiprocess-throughput", result.as_json())
    assert result.three_rate > 0 and result.single_rate > 0
