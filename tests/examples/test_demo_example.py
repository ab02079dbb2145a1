"""The ``make demo`` program: run in-process and as ``python -m examples.demo``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from examples.coffee_shop import CoffeeShop
from examples.demo import main
from fasm_es import Completed, Streams, open_store

KEY_LINES = [
    "v3 recorded with the tracked action Redeem #1",
    "crashes before the answer is recorded",
    "folded 3 records: balance 50, redemption 1 (flat white) in flight",
    "restore re-issues CheckStatus #1, not the Redeem",
    "v4 completed #1: voucher V0001, balance 50",
    "refused: CompletionNotOutstanding (already completed), nothing appended",
    "rejected: the reward costs 500 points but the balance is 50",
    "nothing appended: the log is still at version 4",
    "Replay verified: 5 records re-emit their actions, state equals live",
    "The rewards service applied [('alice', 1)] once",
]


def test_the_demo_tells_the_crash_and_restore_story(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"

    assert main(["--db", url]) == 0

    out = capsys.readouterr().out
    for line in KEY_LINES:
        assert line in out
    assert len(out.splitlines()) <= 50
    with open_store(url) as store:
        records = list(Streams(CoffeeShop(), store).records("alice"))
    assert [r.tag for r in records] == [
        "EarnPoints",
        "EarnPoints",
        "RequestRedemption",
        "Completed",
        "CollectReward",
    ]
    assert [r.meta.actor for r in records] == ["till-1", "till-1", "app", "rewards", "till-1"]
    assert isinstance(records[3].input, Completed)
    assert records[3].input.id == 1


def test_the_demo_starts_from_an_empty_file_each_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main(["--db", url]) == 0
    assert main(["--db", url]) == 0
    second = capsys.readouterr().out.split("Coffee-shop loyalty demo")[-1]
    assert "customer stream 'alice'" in second
    assert "Replay verified: 5 records" in second


def test_the_demo_refuses_a_store_that_does_not_survive_the_crash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--db", "memory://"]) == 2
    assert "needs a durable one" in capsys.readouterr().out


def test_python_m_examples_demo_exits_0_in_a_fresh_directory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Replay verified" in done.stdout
    assert (tmp_path / "demo.db").is_file()


@pytest.mark.postgres
def test_the_demo_runs_on_postgresql_and_reruns_on_a_fresh_stream(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server database is not deleted between runs: a rerun takes the next unused stream.
    assert main(["--db", postgres_url]) == 0
    assert main(["--db", postgres_url]) == 0

    out = capsys.readouterr().out
    assert "customer stream 'alice'" in out
    assert "customer stream 'alice-2'" in out
    assert "The rewards service applied [('alice-2', 1)] once" in out
    assert out.count("Replay verified: 5 records") == 2
