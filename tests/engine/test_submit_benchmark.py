"""The submit benchmark, run small: it measures what it says and reports every figure."""

from __future__ import annotations

from pathlib import Path

from benchmarks import submit


def test_a_small_run_reports_rates_latencies_and_the_goal(tmp_path: Path) -> None:
    result = submit.run(300, 50, 16, baseline_calls=20, repeat=2, cache_dir=tmp_path / "bench")
    assert [r.calls for r in result.ours] == [300, 300]
    assert [len(r.latencies) for r in result.eventsourcing] == [20, 20]
    assert result.ours_rate > 0 and result.eventsourcing_rate > 0
    figures = {f.key: f for f in result.figures()}
    assert set(figures) == {"submit_throughput", "submit_latency_p50", "submit_latency_p99"}
    assert figures["submit_throughput"].goal is submit.THROUGHPUT_GOAL
    assert figures["submit_latency_p50"].ours <= figures["submit_latency_p99"].ours
    report = result.as_json()
    assert report["per_s"]["ours"] == round(result.ours_rate)
    assert not list((tmp_path / "bench").glob("*.db"))  # the data files are removed


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert submit.percentile(values, 0.5) == 50
    assert submit.percentile(values, 0.99) == 99
    assert submit.percentile([7.0], 0.99) == 7
