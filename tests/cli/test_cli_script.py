"""The installed ``fasm-es`` console script, run as a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from examples.counter import Increment
from fasm_es import Metadata, Normal, Streams, open_store
from fasm_es.cli import ExitCode
from tests.cli.conftest import COUNTER, DRIFTED
from tests.cli.drifted import Snapshotting

ROOT = Path(__file__).resolve().parents[2]


def script() -> str:
    """The console script installed beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "fasm-es"
    found = str(beside) if beside.exists() else shutil.which("fasm-es")
    if found is None:
        pytest.fail("the fasm-es console script is not installed: pip install -e .")
    return found


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASM_ES_")}
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)
    return {**env, "COLUMNS": "200", **extra}


def fasm_es(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script(), *args],
        cwd=cwd,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_then_inspect_its_database(tmp_path: Path) -> None:
    demo = fasm_es("demo", cwd=tmp_path)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    streams = fasm_es("streams", "--json", "--db", url)
    replay = fasm_es("replay", "--verify", "--db", url, "-m", "examples.coffee_shop:CoffeeShop")

    assert demo.returncode == ExitCode.OK, demo.stdout + demo.stderr
    assert "Replay verified" in demo.stdout
    assert streams.returncode == ExitCode.OK, streams.stderr
    assert json.loads(streams.stdout)["stream"] == "alice"
    assert replay.returncode == ExitCode.OK, replay.stderr
    assert "no divergence" in replay.stdout


def test_a_machine_that_no_longer_matches_the_log_exits_1(counter_db: str) -> None:
    done = fasm_es("replay", "--db", counter_db, "-m", f"{DRIFTED}:RejectsNow", "--json")

    assert done.returncode == ExitCode.CHECK_FAILED
    (divergence,) = json.loads(done.stdout)["divergences"]
    assert (divergence["stream"], divergence["version"]) == ("c-1", 3)
    assert "now rejects it" in divergence["difference"]
    assert done.stderr == ""


def test_errors_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    missing = fasm_es("streams", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    usage = fasm_es("state")

    assert missing.returncode == ExitCode.DATABASE
    assert missing.stderr.startswith("error: no database at")
    assert len(missing.stderr.splitlines()) == 1
    assert usage.returncode == ExitCode.USAGE
    assert len(usage.stderr.splitlines()) == 1
    assert "Traceback" not in missing.stderr + usage.stderr


def test_progress_goes_to_stderr_on_a_terminal_and_never_with_json(counter_db: str) -> None:
    # FORCE_COLOR makes rich treat the pipe as a terminal.
    human = fasm_es("replay", "--verify", "--db", counter_db, "-m", COUNTER, FORCE_COLOR="1")
    scripted = fasm_es(
        "replay", "--verify", "--db", counter_db, "-m", COUNTER, "--json", FORCE_COLOR="1"
    )

    assert human.returncode == scripted.returncode == ExitCode.OK
    assert "replaying" in human.stderr
    assert "replaying" not in human.stdout
    assert scripted.stderr == ""
    assert json.loads(scripted.stdout)["ok"] is True


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'long.db'}"
    with open_store(url) as store:
        streams = Streams(Snapshotting(), store)
        # One transaction: thousands of records, written in a moment.
        streams.commit([streams.stage("long", increment(n)) for n in range(3000)])

    process = subprocess.Popen(
        [script(), "log", "long", "--json", "--db", url],
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    first = json.loads(process.stdout.readline())
    process.stdout.close()
    stderr = process.stderr.read()
    code = process.wait(timeout=120)

    assert first["version"] == 1
    assert code == ExitCode.BROKEN_PIPE
    assert "Traceback" not in stderr


def increment(n: int) -> Normal[Increment]:
    return Normal(
        Increment(by=1), Metadata(accepted_at=datetime(2024, 1, 1, tzinfo=UTC), actor=f"user-{n}")
    )
