"""Failures: one line on stderr, an exit code scripts can rely on, a traceback only on request."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from fasm_es.cli import ExitCode, main
from tests.cli.conftest import COUNTER, DRIFTED, Run, sqlite_execute


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- the database -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["streams"],
        ["log", "c-1"],
        ["state", "c-1", "-m", COUNTER],
        ["replay", "-m", COUNTER],
        ["outstanding", "-m", COUNTER],
        ["audit", "verify"],
        ["audit", "export"],
    ],
)
def test_a_missing_sqlite_file_is_an_error_and_is_not_created(
    fasm: Run, tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "missing.db"

    result = fasm(*command, "--db", f"sqlite:///{path}")

    assert result.exit_code == ExitCode.DATABASE
    assert f"no database at '{path}'" in one_line(result.stderr)
    assert "from --db" in result.stderr
    assert result.stdout == ""
    assert not path.exists()


def test_the_default_database_is_named_when_missing(
    fasm: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = fasm("streams")

    assert result.exit_code == ExitCode.DATABASE
    line = one_line(result.stderr)
    assert "no database at 'fasm_es.db'" in line
    assert "FASM_ES_DATABASE_URL" in line
    assert not (tmp_path / "fasm_es.db").exists()


def test_a_file_that_is_not_sqlite_is_a_database_error(fasm: Run, tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are not the records you are looking for " * 20)

    result = fasm("streams", "--db", f"sqlite:///{path}")

    assert result.exit_code == ExitCode.DATABASE
    assert "cannot read" in one_line(result.stderr)


def test_a_sqlite_file_without_a_store_is_a_database_error_and_is_left_alone(
    fasm: Run, tmp_path: Path
) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE things (x)")

    result = fasm("streams", "--db", f"sqlite:///{path}")

    assert result.exit_code == ExitCode.DATABASE
    assert "holds no fasm-es store" in one_line(result.stderr)
    with closing(sqlite3.connect(path)) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"things"}


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("mysql://localhost/db", ExitCode.DATABASE, "unsupported database URL"),
        ("sqlite://", ExitCode.DATABASE, "malformed SQLite URL"),
        ("memory://", ExitCode.USAGE, "memory:// lives only inside the process"),
        ("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=1", ExitCode.DATABASE, "***"),
    ],
)
def test_bad_database_urls(fasm: Run, url: str, code: ExitCode, message: str) -> None:
    result = fasm("streams", "--db", url)

    assert result.exit_code == code
    line = one_line(result.stderr)
    assert message in line
    assert "secret" not in line


# -- the machine -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        ("examples.counter", ExitCode.USAGE, "is not module:attribute"),
        ("examples.counter:", ExitCode.USAGE, "is not module:attribute"),
        ("not a module:X", ExitCode.USAGE, "is not module:attribute"),
        ("no_such_module_here:Machine", ExitCode.MACHINE, "no module named 'no_such_module_here'"),
        ("examples.counter:Nope", ExitCode.MACHINE, "has no attribute 'Nope'"),
        (f"{DRIFTED}:NOT_A_MACHINE", ExitCode.MACHINE, "names a value of type int"),
        (f"{DRIFTED}:NeedsArguments", ExitCode.MACHINE, "NeedsArguments() failed"),
    ],
)
def test_a_machine_that_cannot_be_loaded(
    fasm: Run, counter_db: str, spec: str, code: ExitCode, message: str
) -> None:
    result = fasm("state", "c-1", "--db", counter_db, "--machine", spec)

    assert result.exit_code == code
    assert message in one_line(result.stderr)


def test_a_machine_may_be_named_as_an_instance(fasm: Run, counter_db: str) -> None:
    result = fasm("state", "c-1", "--db", counter_db, "-m", f"{DRIFTED}:SNAPSHOTTING")

    assert result.exit_code == ExitCode.OK


def test_a_machine_module_in_the_current_directory_is_found(
    fasm: Run, counter_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_counter_here.py").write_text(
        "from examples.counter import Counter\n\nclass Mine(Counter):\n    pass\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    result = fasm("state", "c-1", "--db", counter_db, "-m", "my_counter_here:Mine")

    assert result.exit_code == ExitCode.OK, result.output


# -- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nonsense"], "No such command 'nonsense'"),
        (["log"], "Missing argument 'STREAM'"),
        (["streams", "--bogus"], "No such option"),
        (["log", "c-1", "--after", "many"], "Invalid value for '--after'"),
        (["audit", "frobnicate"], "No such command"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(fasm: Run, args: list[str], message: str) -> None:
    result = fasm(*args)

    assert result.exit_code == ExitCode.USAGE
    line = one_line(result.stderr)
    assert message in line
    assert "--help" in line
    assert result.stdout == ""


def test_no_command_prints_the_help(fasm: Run) -> None:
    result = fasm()

    assert result.exit_code == ExitCode.USAGE
    assert "Commands" in result.stdout
    assert "replay" in result.stdout


def test_help_lists_the_exit_codes(fasm: Run) -> None:
    result = fasm("--help")

    assert result.exit_code == ExitCode.OK
    assert "Exit codes: 0 ok, 1 a check failed, 2 bad arguments" in " ".join(result.stdout.split())


def test_version(fasm: Run) -> None:
    import fasm_es

    result = fasm("--version")

    assert result.exit_code == ExitCode.OK
    assert result.stdout.strip() == f"fasm-es {fasm_es.__version__}"


# -- debugging and unexpected errors ------------------------------------------------------------


def test_debug_adds_the_traceback(fasm: Run, counter_db: str) -> None:
    args = ["state", "c-1", "--db", counter_db, "-m", f"{DRIFTED}:Renamed"]

    quiet = fasm(*args)
    loud = fasm(*args, "--debug")
    from_env = fasm(*args, env={"FASM_ES_DEBUG": "1"})
    before_command = fasm("--debug", *args)

    assert quiet.exit_code == loud.exit_code == from_env.exit_code == ExitCode.MACHINE
    assert "Traceback" not in quiet.stderr
    for result in (loud, from_env, before_command):
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.strip().splitlines()[-1] == one_line(quiet.stderr)


def test_an_unexpected_error_is_a_bug_with_exit_code_5(
    fasm: Run, counter_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fasm_es.cli import inspection

    def broken(*args: object) -> None:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(inspection, "stream_summary", broken)

    result = fasm("streams", "--db", counter_db)

    assert result.exit_code == ExitCode.INTERNAL
    line = one_line(result.stderr)
    assert "RuntimeError: something nobody expected" in line
    assert "--debug" in line


def test_main_returns_the_exit_code(counter_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["streams", "--db", counter_db, "--json"]) == ExitCode.OK
    assert main(["state", "c-1", "--db", counter_db]) == ExitCode.USAGE
    assert main(["replay", "--db", counter_db, "-m", f"{DRIFTED}:RejectsNow"]) == 1
    assert '"stream": "c-1"' in capsys.readouterr().out


# -- demo -----------------------------------------------------------------------------------------


def test_demo_runs_the_story_on_the_given_file(fasm: Run, tmp_path: Path) -> None:
    path = tmp_path / "demo.db"

    result = fasm("demo", "--db", f"sqlite:///{path}")

    assert result.exit_code == ExitCode.OK, result.output
    assert "restore re-issues CheckStatus #1, not the Redeem" in result.stdout
    assert "Replay verified" in result.stdout
    assert path.is_file()


def test_demo_ignores_the_database_environment_variable(
    fasm: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    precious = tmp_path / "production.db"
    precious.write_bytes(b"keep me")
    monkeypatch.chdir(tmp_path)

    result = fasm("demo", env={"FASM_ES_DATABASE_URL": f"sqlite:///{precious}"})

    assert result.exit_code == ExitCode.OK, result.output
    assert precious.read_bytes() == b"keep me"
    assert (tmp_path / "demo.db").is_file()


def test_demo_refuses_a_store_that_does_not_survive_a_crash(fasm: Run) -> None:
    result = fasm("demo", "--db", "memory://")

    assert result.exit_code == ExitCode.USAGE
    assert "needs a durable one" in result.stdout


# -- records that cannot be read ------------------------------------------------------------------


def test_a_corrupt_record_is_a_decoding_error_on_one_line(fasm: Run, counter_db: str) -> None:
    body = (
        b'{"input":{"by":"lots"},"actions":[],"meta":{"accepted_at":"2024-01-01T00:00:00Z"},'
        b'"hash":"' + b"0" * 64 + b'"}'
    )
    sqlite_execute(
        counter_db,
        "UPDATE fasm_records SET state = ? WHERE originator_id = ? AND originator_version = ?",
        (body, "c-1", 1),
    )

    raw = fasm("log", "c-1", "--db", counter_db, "--json")
    decoded = fasm("log", "c-1", "--db", counter_db, "-m", COUNTER)

    assert raw.exit_code == ExitCode.OK
    assert decoded.exit_code == ExitCode.MACHINE
    line = one_line(decoded.stderr)
    assert "stream 'c-1' version 1" in line
    assert "input.by" in line


def test_an_encrypted_store_is_read_with_its_key(fasm: Run, tmp_path: Path) -> None:
    from examples.counter import Counter, Increment
    from fasm_es import Streams, open_store
    from fasm_es.store import new_cipher_key

    key = new_cipher_key()
    url = f"sqlite:///{tmp_path / 'secret.db'}"
    with open_store(url, cipher_key=key) as store:
        Streams(Counter(), store).submit("s", Increment(by=4))

    listed = fasm("streams", "--db", url, "--json")
    locked = fasm("log", "s", "--db", url)
    unlocked = fasm("log", "s", "--db", url, "--json", env={"FASM_ES_CIPHER_KEY": key})

    assert listed.exit_code == ExitCode.OK
    assert locked.exit_code == ExitCode.MACHINE
    assert "FASM_ES_CIPHER_KEY" in one_line(locked.stderr)
    assert unlocked.exit_code == ExitCode.OK
    assert '"input": {"by": 4}' in unlocked.stdout
