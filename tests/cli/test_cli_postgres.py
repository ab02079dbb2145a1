"""The read-only commands on PostgreSQL: the same answers as on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fasm_es.cli import ExitCode
from tests.cli.conftest import COFFEE, COUNTER, DRIFTED, Run, write_coffee, write_counters

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_counter(postgres_url: str) -> str:
    write_counters(postgres_url)
    return postgres_url


def test_streams_and_log(fasm: Run, pg_counter: str) -> None:
    streams = fasm("streams", "--db", pg_counter, "--json")
    log = fasm("log", "c-1", "--db", pg_counter, "--json", "-m", COUNTER)

    assert streams.exit_code == log.exit_code == ExitCode.OK, streams.output + log.output
    assert [json.loads(line)["stream"] for line in streams.stdout.splitlines()] == ["c-1", "c-2"]
    records = [json.loads(line) for line in log.stdout.splitlines()]
    assert [r["input"] for r in records] == [{"by": 1}, {"by": 2}, {"by": 3}]
    assert records[0]["actions"][0]["type"] == "Incremented"


def test_state_now_and_at_a_version(fasm: Run, pg_counter: str) -> None:
    now = fasm("state", "c-1", "--db", pg_counter, "-m", COUNTER, "--json")
    then = fasm("state", "c-1", "--at", "1", "--db", pg_counter, "-m", COUNTER, "--json")

    assert json.loads(now.stdout)["state"]["value"] == 6
    assert json.loads(then.stdout)["state"]["value"] == 1


def test_replay_verifies_and_finds_divergences(fasm: Run, pg_counter: str) -> None:
    clean = fasm("replay", "--verify", "--db", pg_counter, "-m", COUNTER, "--json")
    drifted = fasm("replay", "--db", pg_counter, "-m", f"{DRIFTED}:RejectsNow", "--json")

    assert clean.exit_code == ExitCode.OK
    assert json.loads(clean.stdout)["records"] == 5
    assert drifted.exit_code == ExitCode.CHECK_FAILED
    (divergence,) = json.loads(drifted.stdout)["divergences"]
    assert (divergence["stream"], divergence["version"], divergence["kind"]) == (
        "c-1",
        3,
        "rejected",
    )


def test_outstanding(fasm: Run, postgres_url: str) -> None:
    write_coffee(postgres_url)

    result = fasm("outstanding", "--db", postgres_url, "-m", COFFEE, "--json")

    assert result.exit_code == ExitCode.OK
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["stream"], r["id"], r["type"]) for r in rows] == [("bob", 1, "Redeem")]


def test_audit_verify_with_heads_and_export(fasm: Run, pg_counter: str, tmp_path: Path) -> None:
    heads = tmp_path / "heads.json"

    verified = fasm("audit", "verify", "--db", pg_counter, "--heads", str(heads), "--json")
    exported = fasm("audit", "export", "--db", pg_counter, "--actor", "bob")

    assert verified.exit_code == ExitCode.OK
    assert json.loads(verified.stdout)["records"] == 5
    assert set(json.loads(heads.read_text())["heads"]) == {"c-1", "c-2"}
    assert exported.exit_code == ExitCode.OK
    assert [json.loads(line)["stream"] for line in exported.stdout.splitlines()] == ["c-2"] * 2


def test_a_database_that_does_not_exist_is_a_database_error(fasm: Run, postgres_url: str) -> None:
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database_here"

    result = fasm("streams", "--db", missing)

    assert result.exit_code == ExitCode.DATABASE
    assert len(result.stderr.strip().splitlines()) == 1
