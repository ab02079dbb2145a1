"""``audit verify`` (hash chains, saved heads) and ``audit export`` (JSON lines, CSV)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from fasm_es.cli import ExitCode
from tests.cli.conftest import COUNTER, Run, sqlite_execute

EDIT_BODY = "UPDATE fasm_records SET state = ? WHERE originator_id = ? AND originator_version = ?"
DELETE = "DELETE FROM fasm_records WHERE originator_id = ? AND originator_version = ?"


def edit_second_record(url: str) -> None:
    """Change c-1 version 2's increment from 2 to 5, keeping its stored hash."""
    import sqlite3
    from contextlib import closing

    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn:
        (body,) = conn.execute(
            "SELECT state FROM fasm_records WHERE originator_id = 'c-1' AND originator_version = 2"
        ).fetchone()
    sqlite_execute(url, EDIT_BODY, (bytes(body).replace(b'"by":2', b'"by":5'), "c-1", 2))


# -- verify ------------------------------------------------------------------------------


def test_an_untouched_log_verifies(fasm: Run, counter_db: str) -> None:
    human = fasm("audit", "verify", "--db", counter_db)
    scripted = fasm("audit", "verify", "--db", counter_db, "--json")

    assert human.exit_code == scripted.exit_code == ExitCode.OK
    assert "checked 2 streams (5 records)" in human.stdout
    assert "every hash chain holds" in human.stdout
    assert json.loads(scripted.stdout) == {
        "ok": True,
        "streams": 2,
        "records": 5,
        "breaks": [],
        "heads_file": None,
        "heads_compared": False,
        "heads_saved": False,
    }


def test_an_edited_record_breaks_the_chain(fasm: Run, counter_db: str) -> None:
    edit_second_record(counter_db)

    human = fasm("audit", "verify", "--db", counter_db)
    report = json.loads(fasm("audit", "verify", "--db", counter_db, "--json").stdout)

    assert human.exit_code == ExitCode.CHECK_FAILED
    assert "1 broken chain" in human.stdout
    assert report["ok"] is False
    assert [(b["stream"], b["version"], b["kind"]) for b in report["breaks"]] == [
        ("c-1", 2, "edited")
    ]


def test_a_deleted_record_breaks_the_chain(fasm: Run, counter_db: str) -> None:
    sqlite_execute(counter_db, DELETE, ("c-2", 1))

    result = fasm("audit", "verify", "--db", counter_db, "--json")

    assert result.exit_code == ExitCode.CHECK_FAILED
    (broken,) = json.loads(result.stdout)["breaks"]
    assert (broken["stream"], broken["version"], broken["kind"]) == ("c-2", 1, "missing")


def test_saved_heads_catch_a_truncated_stream(fasm: Run, counter_db: str, tmp_path: Path) -> None:
    heads = tmp_path / "heads.json"

    first = fasm("audit", "verify", "--db", counter_db, "--heads", str(heads))
    saved = json.loads(heads.read_text())
    sqlite_execute(counter_db, DELETE, ("c-1", 3))
    plain = fasm("audit", "verify", "--db", counter_db, "--json")
    checked = fasm("audit", "verify", "--db", counter_db, "--heads", str(heads), "--json")

    assert first.exit_code == ExitCode.OK
    assert "no heads in" in first.stdout
    assert "saved 2 heads" in first.stdout
    assert saved["format"] == "fasm-es heads"
    assert {s: h["version"] for s, h in saved["heads"].items()} == {"c-1": 3, "c-2": 2}
    # The chain alone cannot see that the newest record went; the heads can.
    assert plain.exit_code == ExitCode.OK
    assert checked.exit_code == ExitCode.CHECK_FAILED
    report = json.loads(checked.stdout)
    assert report["heads_compared"] is True
    assert report["heads_saved"] is False
    assert [(b["stream"], b["version"], b["kind"]) for b in report["breaks"]] == [
        ("c-1", 3, "truncated")
    ]
    assert json.loads(heads.read_text()) == saved


def test_heads_follow_the_log_forward(fasm: Run, counter_db: str, tmp_path: Path) -> None:
    from examples.counter import Counter, Increment
    from fasm_es import Streams, open_store

    heads = tmp_path / "heads.json"
    fasm("audit", "verify", "--db", counter_db, "--heads", str(heads))
    with open_store(counter_db) as store:
        Streams(Counter(), store).submit("c-2", Increment(by=1))

    second = fasm("audit", "verify", "--db", counter_db, "--heads", str(heads))

    assert second.exit_code == ExitCode.OK
    assert json.loads(heads.read_text())["heads"]["c-2"]["version"] == 3


def test_no_save_compares_without_writing(fasm: Run, counter_db: str, tmp_path: Path) -> None:
    heads = tmp_path / "heads.json"
    fasm("audit", "verify", "--db", counter_db, "--heads", str(heads))
    before = heads.read_text()

    result = fasm("audit", "verify", "--db", counter_db, "--heads", str(heads), "--no-save")

    assert result.exit_code == ExitCode.OK
    assert heads.read_text() == before


def test_no_save_without_a_heads_file_is_a_usage_error(
    fasm: Run, counter_db: str, tmp_path: Path
) -> None:
    heads = tmp_path / "absent.json"

    result = fasm("audit", "verify", "--db", counter_db, "--heads", str(heads), "--no-save")

    assert result.exit_code == ExitCode.USAGE
    assert "does not exist" in result.stderr
    assert not heads.exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"heads": {"c-1": {"version": -1, "hash": "x"}}}',
        '{"format": "other", "heads": {}}',
    ],
)
def test_a_file_that_is_not_a_heads_file_is_a_usage_error(
    fasm: Run, counter_db: str, tmp_path: Path, content: str
) -> None:
    heads = tmp_path / "heads.json"
    heads.write_text(content)

    result = fasm("audit", "verify", "--db", counter_db, "--heads", str(heads))

    assert result.exit_code == ExitCode.USAGE
    assert "is not a fasm-es heads file" in result.stderr
    assert heads.read_text() == content


# -- export -------------------------------------------------------------------------------


def exported(fasm: Run, db: str, *args: str) -> list[dict[str, object]]:
    result = fasm("audit", "export", "--db", db, *args)
    assert result.exit_code == ExitCode.OK, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_export_gives_every_record_in_global_order(fasm: Run, counter_db: str) -> None:
    rows = exported(fasm, counter_db)

    assert [(r["stream"], r["version"], r["position"]) for r in rows] == [
        ("c-1", 1, 1),
        ("c-1", 2, 2),
        ("c-1", 3, 3),
        ("c-2", 1, 4),
        ("c-2", 2, 5),
    ]
    assert rows[0]["actor"] == "alice"
    assert rows[0]["correlation_id"] == "corr-1"
    assert rows[0]["input"] == {"by": 1}
    assert all(len(str(r["hash"])) == 64 for r in rows)


def test_export_filters_by_stream_and_actor(fasm: Run, counter_db: str) -> None:
    by_stream = exported(fasm, counter_db, "--stream", "c-2")
    by_actor = exported(fasm, counter_db, "--actor", "alice")
    both = exported(fasm, counter_db, "--actor", "bob", "--stream", "c-1")

    assert {(r["stream"], r["version"]) for r in by_stream} == {("c-2", 1), ("c-2", 2)}
    assert {r["actor"] for r in by_actor} == {"alice"}
    assert len(by_actor) == 3
    assert both == []


def test_export_filters_by_time_range(fasm: Run, counter_db: str) -> None:
    rows = exported(fasm, counter_db)
    third = str(rows[2]["accepted_at"])

    since = exported(fasm, counter_db, "--since", third)
    until = exported(fasm, counter_db, "--until", third)
    past = exported(fasm, counter_db, "--until", "2000-01-01")

    assert [r["position"] for r in since] == [3, 4, 5]
    assert [r["position"] for r in until] == [1, 2]
    assert past == []


def test_export_decoded_by_a_machine_names_models(fasm: Run, counter_db: str) -> None:
    rows = exported(fasm, counter_db, "--machine", COUNTER, "--stream", "c-1")

    assert rows[0]["actions"] == [
        {"kind": "untracked", "type": "Incremented", "action": {"previous": 0, "current": 1}}
    ]


def test_export_csv_to_a_file(fasm: Run, counter_db: str, tmp_path: Path) -> None:
    target = tmp_path / "audit.csv"

    result = fasm("audit", "export", "--db", counter_db, "--format", "csv", "-o", str(target))

    assert result.exit_code == ExitCode.OK
    assert result.stdout == ""
    assert "exported 5 records" in result.stderr
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [(r["stream"], r["version"]) for r in rows][:2] == [("c-1", "1"), ("c-1", "2")]
    assert rows[1]["actor"] == "alice"
    assert json.loads(rows[1]["input"]) == {"by": 2}
    assert json.loads(rows[1]["actions"])[0]["action"] == {"previous": 1, "current": 3}
    assert rows[3]["correlation_id"] == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO 8601 date or time"),
        (["--since", "2024-02-01", "--until", "2024-01-01"], "is not before --until"),
        (["--format", "xml"], "--format"),
        (["--stream", "nobody"], "stream 'nobody' has no records"),
    ],
)
def test_export_with_bad_arguments_is_a_usage_error(
    fasm: Run, counter_db: str, args: list[str], message: str
) -> None:
    result = fasm("audit", "export", "--db", counter_db, *args)

    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert result.stdout == ""


def test_export_to_an_unwritable_place_is_a_usage_error(
    fasm: Run, counter_db: str, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-dir" / "audit.jsonl"

    result = fasm("audit", "export", "--db", counter_db, "-o", str(target))

    assert result.exit_code == ExitCode.USAGE
    assert "cannot write" in result.stderr
