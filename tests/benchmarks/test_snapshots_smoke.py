"""The snapshots benchmark at a tiny size: both loads reach the same count, one from the snapshot.

Speed is not checked here (that is what ``make bench`` is for); correctness is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import replay, snapshots
from benchmarks.__main__ import main
from examples.counter import Counter
from fasm_es import open_store
from fasm_es.snapshot import SnapshotCodec

RECORDS = 2_000
TAIL = 150


def test_snapshot_file_is_a_copy_with_one_snapshot_and_the_original_stays_without(
    tmp_path: Path,
) -> None:
    path = snapshots.snapshot_file(RECORDS, TAIL, tmp_path, lambda _: None)
    original = replay.counter_file(RECORDS, tmp_path, lambda _: None)
    assert path != original
    with open_store(f"sqlite:///{original}") as store:
        assert store.load_snapshot(replay.STREAM) is None
    with open_store(f"sqlite:///{path}") as store:
        assert store.last_version(replay.STREAM) == RECORDS
        raw = store.load_snapshot(replay.STREAM)
    assert raw is not None
    held = SnapshotCodec.for_machine(Counter()).decode(raw)
    # The snapshot holds the state the log folds to at its version.
    assert (held.version, held.state.value) == (RECORDS - TAIL, RECORDS - TAIL)


def test_loads_end_at_the_same_count_and_only_one_starts_from_the_snapshot(
    tmp_path: Path,
) -> None:
    path = snapshots.snapshot_file(RECORDS, TAIL, tmp_path, lambda _: None)
    original = replay.counter_file(RECORDS, tmp_path, lambda _: None)
    assert snapshots.load_counter(str(original)) == [RECORDS, 0]
    assert snapshots.load_counter(str(path)) == [RECORDS, RECORDS - TAIL]


def test_snapshot_file_is_built_once(tmp_path: Path) -> None:
    first = snapshots.snapshot_file(RECORDS, TAIL, tmp_path, lambda _: None)
    built_at = first.stat().st_mtime_ns
    messages: list[str] = []
    again = snapshots.snapshot_file(RECORDS, TAIL, tmp_path, messages.append)
    assert again == first
    assert again.stat().st_mtime_ns == built_at
    assert messages == []


def test_a_tail_as_long_as_the_stream_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tail"):
        snapshots.snapshot_file(RECORDS, RECORDS, tmp_path, lambda _: None)


def test_run_reports_both_times_and_the_speedup(tmp_path: Path) -> None:
    result = snapshots.run(RECORDS, TAIL, 1, cache_dir=tmp_path)
    assert result.snapshot_at == RECORDS - TAIL
    assert result.without.runs[0].result == [RECORDS, 0]
    assert result.with_snapshot.runs[0].result == [RECORDS, RECORDS - TAIL]
    (figure,) = result.figures()
    assert figure.ratio == pytest.approx(result.speedup)
    assert result.as_json()["median_ms"]["without"] == pytest.approx(
        result.without.median_seconds * 1e3, abs=0.01
    )


def test_command_line_ends_with_a_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["snapshots", "--records", "500", "--tail", "50", "--repeat", "1"]
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["benchmarks"]
    assert report["snapshots"]["records"] == 500
    assert report["snapshots"]["snapshot_at"] == 450
    assert set(report["snapshots"]["median_ms"]) == {"with_snapshot", "without"}
