"""The replay benchmark at a tiny size: it runs, it reports its figures, and its folds agree.

Speed is not checked here (that is what ``make bench`` is for); correctness is.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks import replay
from benchmarks.__main__ import main
from benchmarks.report import Figure, Goal
from examples.counter import Counter, Increment
from fasm_es import ManualClock, Streams, open_store

RECORDS = 2_000


def test_generated_records_are_what_submit_appends() -> None:
    clock = ManualClock()
    store = open_store("memory://")
    streams = Streams(Counter(), store, clock=clock)
    submitted = []
    for _ in range(5):
        clock.advance(timedelta(milliseconds=1))
        submitted.append(streams.submit(replay.STREAM, Increment(by=1)))
    generated = list(replay.counter_records(5))
    stored = list(store.read_stream(replay.STREAM))
    assert [(g.version, g.tag, g.body, g.hash) for g in generated] == [
        (s.version, s.tag, s.body, r.hash) for s, r in zip(stored, submitted, strict=True)
    ]


def test_replay_reports_three_rates_and_every_fold_reaches_the_raw_sum(tmp_path: Path) -> None:
    result = replay.run(RECORDS, 1, cache_dir=tmp_path)

    for runs in (result.ours, result.raw, result.eventsourcing):
        assert len(runs.runs) == 1
        # The final state: our fold's count equals the raw pipeline's sum (and eventsourcing's).
        assert runs.runs[0].result == RECORDS
        assert runs.rate(RECORDS) > 0
        assert runs.runs[0].start_mb > 0
    figures = {f.key: f for f in result.figures()}
    assert set(figures) == {
        "ours_vs_raw",
        "ours_vs_eventsourcing",
        "peak_rss_flat",
        "peak_rss_vs_eventsourcing",
    }
    vs_raw = figures["ours_vs_raw"]
    assert vs_raw.ratio == pytest.approx(result.ours.rate(RECORDS) / result.raw.rate(RECORDS))
    assert figures["ours_vs_eventsourcing"].baseline == pytest.approx(
        result.eventsourcing.rate(RECORDS)
    )
    assert figures["peak_rss_flat"].ours == result.ours.growth_mb


def test_built_file_folds_to_the_same_state_by_every_path(tmp_path: Path) -> None:
    path = replay.counter_file(RECORDS, tmp_path, lambda _: None)
    assert replay.replay_ours(str(path)) == replay.replay_raw(str(path)) == RECORDS
    with open_store(f"sqlite:///{path}") as store:
        # Re-running the STF re-emits exactly the recorded actions: the file is a faithful log.
        assert Streams(Counter(), store).verify_replay(replay.STREAM).state.value == RECORDS
    # A second call reuses the cached file instead of building another.
    assert replay.counter_file(RECORDS, tmp_path, lambda _: None) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_command_line_ends_with_a_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", "--records", "500", "--repeat", "2"]
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads(last)["benchmarks"]["replay"]
    assert report["records"] == 500
    assert report["repeat"] == 2
    assert set(report["events_per_s"]) == {"ours", "raw", "eventsourcing"}


def test_goal_and_floor_decide_whether_a_figure_is_met() -> None:
    slow = Figure("k", "l", "events/s", 50.0, "b", 100.0, Goal(at_least=0.6))
    assert slow.ratio == 0.5
    assert slow.met is False
    # Below the floor both values count as the floor: two tiny growths are "equal".
    tiny = Figure("k", "l", "MB", 0.3, "b", 0.1, Goal(at_most=1.5), floor=2.0)
    assert tiny.ratio == 1.0
    assert tiny.met is True
    assert Figure("k", "l", "MB", 9.0, "b", 3.0, Goal(at_most=1.5), floor=2.0).met is False
