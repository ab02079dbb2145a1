"""``replay [--verify]``: the current code against a log written by older code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from fasm_es.cli import ExitCode
from fasm_es.cli.replay import first_difference
from tests.cli.conftest import COUNTER, DRIFTED, Run, sqlite_execute


def replay_json(fasm: Run, db: str, machine: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = fasm("replay", "--db", db, "-m", machine, "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def test_the_code_that_wrote_the_log_replays_it_cleanly(fasm: Run, counter_db: str) -> None:
    code, report = replay_json(fasm, counter_db, f"{DRIFTED}:Snapshotting", "--verify")

    assert code == ExitCode.OK
    assert report == {
        "ok": True,
        "machine": "Snapshotting",
        "verified": True,
        "streams": 2,
        "records": 5,
        "divergences": [],
        "warnings": [],
    }


def test_replay_for_people_says_what_was_checked(fasm: Run, counter_db: str) -> None:
    result = fasm("replay", "--verify", "--db", counter_db, "-m", COUNTER)

    assert result.exit_code == ExitCode.OK, result.output
    assert "replayed 2 streams (5 records)" in result.stdout
    assert "actions and snapshot states compared" in result.stdout
    assert "no divergence" in result.stdout


def test_an_stf_that_now_rejects_a_recorded_input_diverges(fasm: Run, counter_db: str) -> None:
    code, report = replay_json(fasm, counter_db, f"{DRIFTED}:RejectsNow")

    assert code == ExitCode.CHECK_FAILED
    assert report["ok"] is False
    (divergence,) = report["divergences"]
    assert divergence["stream"] == "c-1"
    assert divergence["version"] == 3
    assert divergence["kind"] == "rejected"
    assert "now rejects it" in divergence["difference"]
    assert "increments above 2 are refused, got 3" in divergence["difference"]


def test_a_divergence_for_people_names_stream_version_and_difference(
    fasm: Run, counter_db: str
) -> None:
    result = fasm("replay", "--db", counter_db, "-m", f"{DRIFTED}:RejectsNow")

    assert result.exit_code == ExitCode.CHECK_FAILED
    row = next(line for line in result.stdout.splitlines() if line.startswith("c-1"))
    assert row.split()[:3] == ["c-1", "3", "rejected"]
    assert "now rejects it" in result.stdout
    assert "1 of 2 streams diverges" in result.stdout


def test_other_actions_diverge_only_when_verified(fasm: Run, counter_db: str) -> None:
    unverified, quiet = replay_json(fasm, counter_db, f"{DRIFTED}:Quiet")
    verified, loud = replay_json(fasm, counter_db, f"{DRIFTED}:Quiet", "--verify")

    assert unverified == ExitCode.OK
    assert quiet["verified"] is False
    assert verified == ExitCode.CHECK_FAILED
    first = loud["divergences"][0]
    assert (first["stream"], first["version"], first["kind"]) == ("c-1", 1, "actions")
    assert "emits 0 actions where 1 were recorded" in first["difference"]
    assert {d["stream"] for d in loud["divergences"]} == {"c-1", "c-2"}


def test_a_state_that_differs_from_the_snapshot_diverges(fasm: Run, counter_db: str) -> None:
    code, report = replay_json(fasm, counter_db, f"{DRIFTED}:Capped", "--verify")

    assert code == ExitCode.CHECK_FAILED
    first = report["divergences"][0]
    assert (first["stream"], first["version"], first["kind"]) == ("c-1", 2, "state")
    assert (
        "state.limit is 9223372036854775807 in the snapshot and 1000 in the fold"
        in (first["difference"])
    )


def test_snapshots_a_machine_never_loads_are_not_compared(fasm: Run, counter_db: str) -> None:
    code, report = replay_json(fasm, counter_db, f"{DRIFTED}:CappedWithoutSnapshots", "--verify")

    assert code == ExitCode.OK
    assert report["divergences"] == []


def test_a_machine_that_raises_is_reported_as_an_error(fasm: Run, counter_db: str) -> None:
    code, report = replay_json(fasm, counter_db, f"{DRIFTED}:Exploding")

    assert code == ExitCode.CHECK_FAILED
    first = report["divergences"][0]
    assert (first["stream"], first["version"], first["kind"]) == ("c-1", 2, "error")
    assert "ZeroDivisionError" in first["difference"]


def test_records_the_machine_cannot_decode_diverge(fasm: Run, counter_db: str) -> None:
    code, report = replay_json(fasm, counter_db, f"{DRIFTED}:Renamed")

    assert code == ExitCode.CHECK_FAILED
    first = report["divergences"][0]
    assert (first["stream"], first["version"], first["kind"]) == ("c-1", 1, "decode")
    assert "record type 'Increment' is not declared by machine Renamed" in first["difference"]


def test_a_missing_record_is_a_gap(fasm: Run, counter_db: str) -> None:
    sqlite_execute(
        counter_db,
        "DELETE FROM fasm_records WHERE originator_id = ? AND originator_version = ?",
        ("c-1", 2),
    )

    code, report = replay_json(fasm, counter_db, COUNTER)

    assert code == ExitCode.CHECK_FAILED
    first = report["divergences"][0]
    assert (first["stream"], first["version"], first["kind"]) == ("c-1", 3, "gap")


def test_replay_of_named_streams_only(fasm: Run, counter_db: str) -> None:
    code, report = replay_json(fasm, counter_db, f"{DRIFTED}:RejectsNow", "c-2")

    assert code == ExitCode.OK
    assert report["streams"] == 1
    assert report["records"] == 2


def test_replay_of_an_unknown_stream_is_a_usage_error(fasm: Run, counter_db: str) -> None:
    result = fasm("replay", "c-9", "--db", counter_db, "-m", COUNTER)

    assert result.exit_code == ExitCode.USAGE
    assert "stream 'c-9' has no records" in result.stderr


def test_replay_needs_a_machine(fasm: Run, counter_db: str) -> None:
    result = fasm("replay", "--db", counter_db)

    assert result.exit_code == ExitCode.USAGE
    assert "needs the machine" in result.stderr


def test_an_undecodable_snapshot_is_a_warning_not_a_divergence(fasm: Run, counter_db: str) -> None:
    sqlite_execute(counter_db, "UPDATE fasm_snapshots SET state = ?", (b'{"state": 1}',))

    code, report = replay_json(fasm, counter_db, COUNTER, "--verify")
    human = fasm("replay", "--verify", "--db", counter_db, "-m", COUNTER)

    assert code == ExitCode.OK
    assert len(report["warnings"]) == 2
    assert "the snapshot is ignored" in report["warnings"][0]
    assert human.exit_code == ExitCode.OK
    assert "warning: stream 'c-1' version 2" in human.stderr


class Point(BaseModel):
    x: int
    tags: list[str] = []


class Shape(BaseModel):
    corners: list[Point]
    name: str | None = None


@pytest.mark.parametrize(
    ("snapshot", "folded", "expected"),
    [
        (Shape(corners=[]), Shape(corners=[]), None),
        (
            Shape(corners=[Point(x=1)]),
            Shape(corners=[Point(x=2)]),
            "state.corners[0].x is 1 in the snapshot and 2 in the fold",
        ),
        (
            Shape(corners=[Point(x=1)]),
            Shape(corners=[Point(x=1), Point(x=2)]),
            "state.corners has 1 items in the snapshot and 2 in the fold",
        ),
        (
            Shape(corners=[Point(x=1, tags=["a"])]),
            Shape(corners=[Point(x=1, tags=["b"])]),
            'state.corners[0].tags[0] is "a" in the snapshot and "b" in the fold',
        ),
        (
            Shape(corners=[]),
            Point(x=1),
            "state is of type Shape in the snapshot but Point in the fold",
        ),
        ({"a": 1}, {"b": 1}, "state.a is 1 in the snapshot and absent from the fold"),
        (True, 1, "state is of type bool in the snapshot but int in the fold"),
    ],
)
def test_first_difference_names_the_path(snapshot: Any, folded: Any, expected: str | None) -> None:
    assert first_difference(snapshot, folded) == expected
