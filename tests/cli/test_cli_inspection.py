"""``streams``, ``log``, ``state`` and ``outstanding`` on real SQLite files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from examples.counter import Counter, Increment
from fasm_es import Streams, open_store
from fasm_es.cli import ExitCode
from tests.cli.conftest import COFFEE, COUNTER, DRIFTED, Run, sqlite_execute


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- streams -------------------------------------------------------------------------


def test_streams_lists_each_stream_with_its_version(fasm: Run, counter_db: str) -> None:
    result = fasm("streams", "--db", counter_db)

    assert result.exit_code == ExitCode.OK, result.output
    assert "c-1" in result.stdout
    assert "c-2" in result.stdout
    assert "2 streams in" in result.stdout
    assert result.stderr == ""


def test_streams_json_is_one_object_per_line(fasm: Run, counter_db: str) -> None:
    result = fasm("streams", "--db", counter_db, "--json")

    assert result.exit_code == ExitCode.OK
    rows = json_lines(result.stdout)
    assert [(r["stream"], r["version"], r["actor"]) for r in rows] == [
        ("c-1", 3, "alice"),
        ("c-2", 2, "bob"),
    ]
    assert rows[1]["position"] == 5
    assert str(rows[0]["accepted_at"]).endswith("Z")


def test_streams_of_an_empty_store_says_so(fasm: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_store(url).close()

    human = fasm("streams", "--db", url)
    scripted = fasm("streams", "--db", url, "--json")

    assert human.exit_code == scripted.exit_code == ExitCode.OK
    assert "no streams" in human.stdout
    assert scripted.stdout == ""


def test_the_database_may_come_from_the_environment(fasm: Run, counter_db: str) -> None:
    result = fasm("streams", "--json", env={"FASM_ES_DATABASE_URL": counter_db})

    assert result.exit_code == ExitCode.OK
    assert len(json_lines(result.stdout)) == 2


def test_options_before_the_command_apply_and_after_it_win(
    fasm: Run, counter_db: str, tmp_path: Path
) -> None:
    before = fasm("--db", counter_db, "--json", "streams")
    missing = f"sqlite:///{tmp_path / 'nothing.db'}"
    overridden = fasm("--db", missing, "streams", "--db", counter_db, "--json")

    assert before.exit_code == overridden.exit_code == ExitCode.OK
    assert len(json_lines(before.stdout)) == len(json_lines(overridden.stdout)) == 2


# -- log -------------------------------------------------------------------------------


def test_log_without_a_machine_shows_the_stored_json(fasm: Run, counter_db: str) -> None:
    result = fasm("log", "c-1", "--db", counter_db)

    assert result.exit_code == ExitCode.OK, result.output
    out = result.stdout
    assert "version 3" in out
    assert 'Increment {"by": 2}' in out
    assert '{"previous": 1, "current": 3}' in out
    assert "corr-2" in out
    assert "actor alice" in out
    assert "3 records, as stored" in out


def test_log_with_a_machine_names_the_decoded_models(fasm: Run, counter_db: str) -> None:
    result = fasm("log", "c-1", "--db", counter_db, "--machine", COUNTER)

    assert result.exit_code == ExitCode.OK, result.output
    assert 'Incremented {"previous": 1, "current": 3}' in result.stdout
    assert "decoded by Counter" in result.stdout


def test_log_json_has_metadata_actions_and_hashes(fasm: Run, counter_db: str) -> None:
    raw = json_lines(fasm("log", "c-1", "--db", counter_db, "--json").stdout)
    decoded = json_lines(fasm("log", "c-1", "--db", counter_db, "--json", "-m", COUNTER).stdout)

    assert [r["version"] for r in raw] == [1, 2, 3]
    second = raw[1]
    assert second["input"] == {"by": 2}
    assert second["actor"] == "alice"
    assert second["correlation_id"] == "corr-2"
    assert second["actions"] == [
        {"kind": "untracked", "type": None, "action": {"previous": 1, "current": 3}}
    ]
    assert isinstance(second["hash"], str) and len(second["hash"]) == 64
    # Decoding changes nothing but the model names.
    assert decoded[1]["actions"][0]["type"] == "Incremented"
    for was, now in zip(raw, decoded, strict=True):
        now["actions"] = [{**a, "type": None} for a in now["actions"]]
        assert was == now


def test_log_after_and_upto_select_versions(fasm: Run, counter_db: str) -> None:
    result = fasm("log", "c-1", "--db", counter_db, "--after", "1", "--upto", "2", "--json")

    assert [r["version"] for r in json_lines(result.stdout)] == [2]


def test_log_shows_completions_and_tracked_actions(fasm: Run, coffee_db: str) -> None:
    result = fasm("log", "bob", "--db", coffee_db, "-m", COFFEE)

    assert result.exit_code == ExitCode.OK, result.output
    assert "tracked" in result.stdout
    assert "#1 Redeem" in result.stdout


def test_log_of_an_unknown_stream_is_a_usage_error(fasm: Run, counter_db: str) -> None:
    result = fasm("log", "nobody", "--db", counter_db)

    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert "stream 'nobody' has no records" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_log_with_a_machine_that_cannot_decode_the_log_exits_4(fasm: Run, counter_db: str) -> None:
    result = fasm("log", "c-1", "--db", counter_db, "-m", f"{DRIFTED}:Renamed")

    assert result.exit_code == ExitCode.MACHINE
    assert "stream 'c-1' version 1" in result.stderr
    assert "record type 'Increment' is not declared by machine Renamed" in result.stderr


# -- state -----------------------------------------------------------------------------


def test_state_is_the_fold_of_the_log(fasm: Run, counter_db: str) -> None:
    result = fasm("state", "c-1", "--db", counter_db, "-m", COUNTER, "--json")

    assert result.exit_code == ExitCode.OK, result.output
    report = json.loads(result.stdout)
    assert report["state"]["value"] == 6
    assert report["version"] == report["last_version"] == 3
    assert report["actor"] == "alice"
    assert report["outstanding"] == []


def test_state_at_an_earlier_version_travels_back_in_time(fasm: Run, counter_db: str) -> None:
    values = {}
    for at in ("0", "1", "2", "3"):
        result = fasm("state", "c-1", "--at", at, "--db", counter_db, "-m", COUNTER, "--json")
        assert result.exit_code == ExitCode.OK, result.output
        values[at] = json.loads(result.stdout)["state"]["value"]

    assert values == {"0": 0, "1": 1, "2": 3, "3": 6}


def test_state_for_people_names_the_version_and_the_state(fasm: Run, counter_db: str) -> None:
    result = fasm("state", "c-1", "--at", "2", "--db", counter_db, "-m", COUNTER)

    assert result.exit_code == ExitCode.OK
    assert "stream 'c-1' at version 2 of 3" in result.stdout
    assert '"value": 3' in result.stdout


def test_state_shows_outstanding_tracked_actions(fasm: Run, coffee_db: str) -> None:
    result = fasm("state", "bob", "--db", coffee_db, "-m", COFFEE)
    report = json.loads(fasm("state", "bob", "--db", coffee_db, "-m", COFFEE, "--json").stdout)

    assert "1 outstanding tracked action:" in result.stdout
    assert "#1 Redeem" in result.stdout
    assert report["state"]["points"] == 200
    assert report["outstanding"] == [
        {
            "id": 1,
            "type": "Redeem",
            "action": {"kind": "redeem", "redemption_id": 1, "reward": "muffin", "cost": 100},
        }
    ]


def test_state_past_the_end_of_the_stream_is_a_usage_error(fasm: Run, counter_db: str) -> None:
    result = fasm("state", "c-1", "--at", "4", "--db", counter_db, "-m", COUNTER)

    assert result.exit_code == ExitCode.USAGE
    assert "--at must be from 0 to 3" in result.stderr


def test_state_with_a_negative_version_is_a_usage_error(fasm: Run, counter_db: str) -> None:
    result = fasm("state", "c-1", "--at", "-1", "--db", counter_db, "-m", COUNTER)

    assert result.exit_code == ExitCode.USAGE
    assert "--at" in result.stderr


def test_state_needs_a_machine(fasm: Run, counter_db: str) -> None:
    result = fasm("state", "c-1", "--db", counter_db)

    assert result.exit_code == ExitCode.USAGE
    assert "needs the machine" in result.stderr
    assert "--machine" in result.stderr


def test_the_machine_may_come_from_the_environment(fasm: Run, counter_db: str) -> None:
    result = fasm("state", "c-1", "--db", counter_db, "--json", env={"FASM_ES_MACHINE": COUNTER})

    assert result.exit_code == ExitCode.OK
    assert json.loads(result.stdout)["state"]["value"] == 6


def test_state_with_a_machine_that_raises_exits_4_naming_the_record(
    fasm: Run, counter_db: str
) -> None:
    # The snapshot at version 2 is loaded without the STF; version 3 is folded onto it.
    result = fasm("state", "c-1", "--db", counter_db, "-m", f"{DRIFTED}:Exploding")

    assert result.exit_code == ExitCode.MACHINE
    assert "stream 'c-1' version 3" in result.stderr
    assert "ZeroDivisionError" in result.stderr
    assert "Traceback" not in result.stderr


def test_state_folds_past_a_snapshot_it_cannot_read_and_says_so(fasm: Run, counter_db: str) -> None:
    sqlite_execute(counter_db, "UPDATE fasm_snapshots SET state = ?", (b"[]",))

    result = fasm("state", "c-1", "--db", counter_db, "-m", f"{DRIFTED}:Snapshotting", "--json")

    assert result.exit_code == ExitCode.OK
    assert json.loads(result.stdout)["state"]["value"] == 6
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("warning: stream 'c-1' version 2")
    assert "folding the stream from its first record" in warning


def test_state_reads_a_stream_longer_than_its_snapshot_interval(fasm: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'long.db'}"
    with open_store(url) as store:
        streams = Streams(Counter(), store)
        for _ in range(25):
            streams.submit("long", Increment(by=1))

    result = fasm("state", "long", "--at", "17", "--db", url, "-m", COUNTER, "--json")

    assert json.loads(result.stdout)["state"]["value"] == 17


# -- outstanding -------------------------------------------------------------------------


def test_outstanding_lists_tracked_actions_not_completed(fasm: Run, coffee_db: str) -> None:
    human = fasm("outstanding", "--db", coffee_db, "-m", COFFEE)
    rows = json_lines(fasm("outstanding", "--db", coffee_db, "-m", COFFEE, "--json").stdout)

    assert human.exit_code == ExitCode.OK, human.output
    assert "Redeem" in human.stdout
    assert "1 outstanding tracked action in 1 of 2 streams" in human.stdout
    assert rows == [
        {
            "stream": "bob",
            "id": 1,
            "type": "Redeem",
            "action": {"kind": "redeem", "redemption_id": 1, "reward": "muffin", "cost": 100},
            "version": 2,
        }
    ]


def test_outstanding_of_named_streams_only(fasm: Run, coffee_db: str) -> None:
    result = fasm("outstanding", "carol", "--db", coffee_db, "-m", COFFEE, "--json")

    assert result.exit_code == ExitCode.OK
    assert result.stdout == ""


def test_outstanding_is_empty_once_the_action_completes(fasm: Run, coffee_db: str) -> None:
    from examples.coffee_shop import CoffeeShop, Success

    with open_store(coffee_db) as store:
        Streams(CoffeeShop(), store).complete("bob", 1, Success(voucher="V-9"), actor="rewards")

    result = fasm("outstanding", "--db", coffee_db, "-m", COFFEE, "--json")

    assert result.exit_code == ExitCode.OK
    assert result.stdout == ""


def test_outstanding_for_a_machine_without_tracked_actions(fasm: Run, counter_db: str) -> None:
    result = fasm("outstanding", "--db", counter_db, "-m", COUNTER)

    assert result.exit_code == ExitCode.OK
    assert "declares no tracked actions" in result.stdout


def test_outstanding_needs_a_machine(fasm: Run, coffee_db: str) -> None:
    result = fasm("outstanding", "--db", coffee_db)

    assert result.exit_code == ExitCode.USAGE
    assert "needs the machine" in result.stderr
