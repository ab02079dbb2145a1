"""``projections status|run|reset|rebuild|skip`` on real databases.

The coffee-shop log (``bob``: points earned, then a redemption; ``carol``:
points earned; three records) is projected by the example read model,
points per user, and by :data:`fragile_points`, which fails on the streams
named in ``$FRAGILE_STREAMS``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from examples.coffee_shop import CoffeeShop, EarnPoints
from fasm_es.cli import ExitCode
from projections import Context, Projection
from tests.cli.conftest import Run, write_coffee

POINTS = "examples.coffee_shop.read_model:points_per_user"
FRAGILE = "tests.cli.test_cli_projections:fragile_points"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"

fragile_table = Table(
    "fragile_points",
    MetaData(),
    Column("user", String(100), primary_key=True),
    Column("earned", Integer, nullable=False),
)
fragile_points = Projection("fragile_points", CoffeeShop(), [fragile_table])
"""Points earned per user; its handler raises for the streams in ``$FRAGILE_STREAMS``."""


@fragile_points.on_input(EarnPoints)
def _earned(ctx: Context, earned: EarnPoints) -> None:
    if ctx.stream in os.environ.get("FRAGILE_STREAMS", "").split(","):
        raise ValueError(f"cannot project {ctx.stream}")
    ctx.insert(fragile_table, {"user": ctx.stream, "earned": earned.points})


def rows(url: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` in the SQLite file ``url``, in key order."""
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()


def points(url: str) -> list[tuple[Any, ...]]:
    """(user, points, held, earned) per user in the points view."""
    return [row[:4] for row in rows(url, "coffee_points")]


def status(fasm: Run, url: str, *args: str) -> dict[str, Any]:
    result = fasm("projections", "status", "--db", url, "--json", *args)
    assert result.exit_code in (ExitCode.OK, ExitCode.CHECK_FAILED), result.output
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_status_before_and_after_a_run(fasm: Run, coffee_db: str) -> None:
    before = status(fasm, coffee_db, "-p", POINTS)
    table = fasm("projections", "status", "--db", coffee_db, "-p", POINTS)

    assert (before["projection"], before["position"], before["head"]) == (
        "coffee_points_per_user",
        0,
        3,
    )
    assert before["lag_records"] == 3 and before["failure"] is None
    assert table.exit_code == ExitCode.OK
    assert re.search(r"behind by\s+3 records", table.stdout)
    assert re.search(r"head of the log\s+3", table.stdout)

    run = fasm("projections", "run", "--db", coffee_db, "-p", POINTS)
    after = status(fasm, coffee_db, "-p", POINTS)
    again = fasm("projections", "run", "--db", coffee_db, "-p", POINTS)

    assert run.exit_code == ExitCode.OK, run.output
    assert run.stdout == "coffee_points_per_user: applied 3 records; position 3 of 3\n"
    assert (after["position"], after["lag_records"], after["lag_seconds"]) == (3, 0, 0.0)
    assert points(coffee_db) == [("bob", 200, 100, 300), ("carol", 10, 0, 10)]
    assert again.exit_code == ExitCode.OK
    assert "applied 0 records; position 3 of 3" in again.stdout


def test_run_catches_up_in_batches_into_a_view_database_of_its_own(
    fasm: Run, coffee_db: str, tmp_path: Path
) -> None:
    views = f"sqlite:///{tmp_path / 'views.db'}"
    run = fasm(
        "projections", "run", "--db", coffee_db, "-p", POINTS, "--view", views,
        "--batch-size", "2", "--json",
    )  # fmt: skip

    assert run.exit_code == ExitCode.OK, run.output
    document = json.loads(run.stdout)
    assert (document["applied"], document["position"], document["head"]) == (3, 3, 3)
    assert points(views) == [("bob", 200, 100, 300), ("carol", 10, 0, 10)]
    # The event store's database got no view tables.
    assert status(fasm, coffee_db, "-p", POINTS)["position"] == 0
    assert status(fasm, coffee_db, "-p", POINTS, "--view", views)["position"] == 3


def test_reset_empties_the_view_and_rebuild_fills_it_again(fasm: Run, coffee_db: str) -> None:
    assert fasm("projections", "run", "--db", coffee_db, "-p", POINTS).exit_code == ExitCode.OK

    reset = fasm("projections", "reset", "--db", coffee_db, "-p", POINTS)

    assert reset.exit_code == ExitCode.OK, reset.output
    assert "coffee_points_per_user: emptied, position 0 of 3" in reset.stdout
    assert points(coffee_db) == []
    assert status(fasm, coffee_db, "-p", POINTS)["position"] == 0

    rebuild = fasm("projections", "rebuild", "--db", coffee_db, "-p", POINTS, "--json")

    assert rebuild.exit_code == ExitCode.OK, rebuild.output
    assert json.loads(rebuild.stdout) == {
        "projection": "coffee_points_per_user",
        "records": 3,
        "position": 3,
        "resumed": False,
    }
    assert points(coffee_db) == [("bob", 200, 100, 300), ("carol", 10, 0, 10)]
    assert status(fasm, coffee_db, "-p", POINTS)["position"] == 3

    restart = fasm("projections", "rebuild", "--restart", "--db", coffee_db, "-p", POINTS)
    assert restart.exit_code == ExitCode.OK
    assert "rebuilt from 3 records into fresh tables, swapped in at position 3" in restart.stdout


def test_a_failing_record_stops_the_run_and_an_audited_skip_passes_it(
    fasm: Run, coffee_db: str
) -> None:
    broken = {"FRAGILE_STREAMS": "carol"}
    run = fasm("projections", "run", "--db", coffee_db, "-p", FRAGILE, env=broken)

    assert run.exit_code == ExitCode.MACHINE, run.output
    assert "stopped at log position 3 (stream 'carol' version 1" in run.stderr
    assert "cannot project carol" in run.stderr
    assert rows(coffee_db, "fragile_points") == [("bob", 300)]

    stopped = fasm("projections", "status", "--db", coffee_db, "-p", FRAGILE)
    document = status(fasm, coffee_db, "-p", FRAGILE)
    assert stopped.exit_code == ExitCode.CHECK_FAILED
    assert "stopped at" in stopped.stdout and "'carol' version 1" in stopped.stdout
    assert document["position"] == 2 and document["failure"]["position"] == 3

    wrong = fasm(
        "projections", "skip", "2", "--reason", "x", "--db", coffee_db, "-p", FRAGILE
    )  # fmt: skip
    assert wrong.exit_code == ExitCode.USAGE
    assert "only the next record to apply may be skipped (next: 3)" in wrong.stderr

    skipped = fasm(
        "projections", "skip", "3", "--reason", "bad import", "--by", "ops",
        "--db", coffee_db, "-p", FRAGILE, "--json",
    )  # fmt: skip
    assert skipped.exit_code == ExitCode.OK, skipped.output
    audit = json.loads(skipped.stdout)
    assert (audit["position"], audit["stream"], audit["reason"], audit["skipped_by"]) == (
        3,
        "carol",
        "bad import",
        "ops",
    )
    healthy = status(fasm, coffee_db, "-p", FRAGILE)
    assert (healthy["position"], healthy["failure"], healthy["skipped"]) == (3, None, 1)
    assert fasm("projections", "status", "--db", coffee_db, "-p", FRAGILE).exit_code == 0


def test_run_follow_applies_new_records_until_interrupted(fasm: Run, coffee_db: str) -> None:
    def interrupt_once_caught_up() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                found = rows(coffee_db, "fasm_projection_positions")
            except sqlite3.Error:
                found = []
            if any(r[0] == "coffee_points_per_user" and r[1] == 3 for r in found):
                break
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_once_caught_up)
    watcher.start()
    try:
        result = fasm(
            "projections", "run", "--follow", "--poll-interval", "0.02",
            "--db", coffee_db, "-p", POINTS,
        )  # fmt: skip
    finally:
        watcher.join()

    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout == "coffee_points_per_user: stopped following; position 3 of 3\n"
    assert points(coffee_db)[0] == ("bob", 200, 100, 300)


def test_a_bad_projection_location(fasm: Run, coffee_db: str) -> None:
    cases = [
        ((), ExitCode.USAGE, "name the projection: pass --projection module:attribute"),
        (("-p", "no-colon"), ExitCode.USAGE, "--projection 'no-colon' is not module:attribute"),
        (("-p", "nosuch.module:x"), ExitCode.MACHINE, "no module named 'nosuch'"),
        (
            ("-p", "examples.coffee_shop.read_model:nothing"),
            ExitCode.MACHINE,
            "has no attribute 'nothing'",
        ),
        (
            ("-p", "examples.coffee_shop:CoffeeShop"),
            ExitCode.MACHINE,
            "names a value of type CoffeeShop, not a Projection",
        ),
    ]
    for args, code, message in cases:
        for command in ("status", "run", "reset", "rebuild"):
            result = fasm("projections", command, "--db", coffee_db, *args)
            assert result.exit_code == code, (command, args, result.output)
            assert message in result.stderr, (command, args, result.stderr)

    from_env = fasm("projections", "status", "--db", coffee_db, env={"FASM_ES_PROJECTION": POINTS})
    assert from_env.exit_code == ExitCode.OK, from_env.output


def test_bad_arguments_and_databases(fasm: Run, coffee_db: str, tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    usage = [
        ("projections",),  # the help, and the usage exit code
        ("projections", "frobnicate"),
        ("projections", "status", "--bogus", "-p", POINTS),
        ("projections", "run", "--batch-size", "0", "-p", POINTS),
        ("projections", "skip", "3", "-p", POINTS),  # no --reason
        ("projections", "skip", "three", "--reason", "r", "-p", POINTS),
        ("projections", "status", "--db", "memory://", "-p", POINTS),
    ]
    for args in usage:
        result = fasm(*args)
        assert result.exit_code == ExitCode.USAGE, (args, result.output)

    for command in ("status", "run", "reset", "rebuild"):
        result = fasm("projections", command, "--db", missing, "-p", POINTS)
        assert result.exit_code == ExitCode.DATABASE, result.output
        assert "no database at" in result.stderr
    assert not (tmp_path / "nowhere.db").exists()

    odd_view = fasm(
        "projections", "status", "--db", coffee_db, "-p", POINTS, "--view", "mysql://h/d"
    )
    assert odd_view.exit_code == ExitCode.DATABASE, odd_view.output
    assert odd_view.stderr.startswith("error: ")


def test_no_progress_bar_when_not_on_a_terminal(fasm: Run, coffee_db: str) -> None:
    result = fasm("projections", "rebuild", "--db", coffee_db, "-p", POINTS)

    assert result.exit_code == ExitCode.OK
    assert result.stderr == ""
    assert len(result.stdout.splitlines()) == 1


def test_every_projections_command_has_a_section_in_the_docs(fasm: Run) -> None:
    listed = set(re.findall(r"^│ (\w+) ", fasm("projections", "--help").stdout, re.M))
    documented = set(re.findall(r"^### `projections (\w+)", DOCS.read_text(), re.M))

    assert listed == {"status", "run", "reset", "rebuild", "skip"}
    assert listed <= documented


@pytest.mark.postgres
def test_status_and_run_on_postgresql(fasm: Run, postgres_url: str) -> None:
    write_coffee(postgres_url)

    before = status(fasm, postgres_url, "-p", POINTS)
    run = fasm("projections", "run", "--db", postgres_url, "-p", POINTS)
    after = status(fasm, postgres_url, "-p", POINTS)

    assert (before["position"], before["head"], before["lag_records"]) == (0, 3, 3)
    assert run.exit_code == ExitCode.OK, run.output
    assert (after["position"], after["head"], after["lag_records"]) == (3, 3, 0)
