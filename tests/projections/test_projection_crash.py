"""Guarantee 7 under real crashes: a runner process killed with SIGKILL mid-batch, again and again.

A child process follows the log with small, slow batches (each record's
handler sleeps) while this test keeps appending records and kills the child
with SIGKILL at random moments. The child traces every record it handles
before its batch commits, so the test can tell that kills landed mid-batch
(records handled beyond the stored position). After the last restart has
caught up, the view must equal a from-scratch rebuild row for row, and the
rows built straight from the log: no record skipped, none counted twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from projection_defs import Fill, entries, make_ledger_view, totals
from test_projection_runner import expected_entries, expected_totals, wait_until

from fasm_es import open_store
from projections import Runner

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
SEED = 20260105
KILLS = 5


def _lines(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split() if line.strip()]


def _progressed(trace: Path, goal: int, child: subprocess.Popen[bytes]) -> bool:
    return len(_lines(trace)) >= goal or child.poll() is not None


def _child(
    store_url: str, view_url: str, trace: Path, log: Path, *, follow: bool
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS / "projections"), str(TESTS), str(ROOT)]),
        "PROJECTION_TEST_SLOW": "0.004" if follow else "0",
        "PROJECTION_TEST_TRACE": str(trace),
    }
    command = [
        sys.executable, "-m", "projections", "run", "projection_defs:ledger_view",
        "--store", store_url, "--view", view_url, "--batch-size", "10",
    ]  # fmt: skip
    if follow:
        command += ["--follow", "--poll-interval", "0.05"]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)


@pytest.mark.slow
@pytest.mark.backends("sqlite", "postgres")
def test_guarantee_7_sigkill_mid_batch_neither_skips_nor_double_counts(
    store_url: str, view_url: str, tmp_path: Path, fill: Fill
) -> None:
    rng = random.Random(SEED)
    store = open_store(store_url)
    appended = 150
    fill(store, appended, streams=4)
    trace, log = tmp_path / "trace.txt", tmp_path / "child.log"
    observer = Runner(make_ledger_view(), store, view_url)
    mid_batch = 0
    for _ in range(KILLS):
        handled_before = len(_lines(trace))
        child = _child(store_url, view_url, trace, log, follow=True)
        try:
            # Kill once the child has handled a random number of further records,
            # plus a random fraction of a batch's time.
            goal = handled_before + rng.randint(5, 40)
            wait_until(partial(_progressed, trace, goal, child), 60)
            time.sleep(rng.uniform(0, 0.04))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL, log.read_text()
        stored = observer.status().position
        if max(_lines(trace), default=0) > stored:
            mid_batch += 1  # records were handled in a batch that the kill threw away
        fill(store, 20, streams=4, start=appended)  # writers keep going between crashes
        appended += 20
    assert mid_batch >= 1, "no kill landed mid-batch: the test proved nothing"

    final = _child(store_url, view_url, trace, log, follow=False)
    assert final.wait(timeout=300) == 0, log.read_text()
    status = observer.status()
    assert status.caught_up and status.failure is None

    crashed_entries = observer.rows(entries)
    crashed_totals = observer.rows(totals)
    expected = expected_entries(store_url)
    assert len(expected) == appended
    assert crashed_entries == expected  # no record skipped
    assert crashed_totals == expected_totals(expected)  # none counted twice
    # Replayed records were handled more than once, yet counted once.
    assert len(_lines(trace)) > appended
    observer.rebuild()
    assert observer.rows(entries) == crashed_entries
    assert observer.rows(totals) == crashed_totals
    observer.close()
    store.close()
