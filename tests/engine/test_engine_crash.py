"""SIGKILL between commit and dispatch: after a restart nothing tracked is lost or done twice.

A real subprocess (``crash_worker.py``) runs the engine on a SQLite file and
does work at a gateway whose ledger is a file. It is killed with SIGKILL
while one transaction is committed but its actions are not dispatched, and
while two other actions were applied by the gateway but their answers never
committed. A second process restores: each outstanding action is dispatched
again under the same idempotency key, and the gateway applied each key once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine_support import Jobs

from examples.payments.gateway import FakeGateway
from fasm_es import Streams, open_store

WORKER = Path(__file__).with_name("crash_worker.py")
REPOSITORY = Path(__file__).resolve().parents[2]


def start(phase: str, db: Path, ledger: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), phase, str(db), str(ledger), str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"the worker exited ({process.returncode}) early:\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            raise AssertionError(f"the worker never wrote {path.name}:\n{err}")
        time.sleep(0.02)
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def outstanding_keys(db: Path) -> set[str]:
    with open_store(f"sqlite:///{db}") as store:
        streams = Streams(Jobs(), store)
        return {f"{s}/{i}" for s in store.streams() for i in streams.outstanding(s)}


def test_sigkill_between_commit_and_dispatch_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path,
) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "gateway.jsonl"
    gateway = FakeGateway(ledger)

    process = start("first", db, ledger, tmp_path / "frozen.json")
    frozen = wait_for(tmp_path / "frozen.json", process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL

    committed = set(frozen["committed"])
    hung = {"a/w2", "b/w2"}  # hang-1, hang-2: applied at the gateway, answers lost
    before = outstanding_keys(db)
    assert committed and committed <= before  # accepted means durable
    assert before == hung | committed
    applied_before = gateway.charged()
    assert set(applied_before) == {"a/w1", "b/w1"} | hung
    assert not committed & set(applied_before)  # killed before any was dispatched

    process = start("second", db, ledger, tmp_path / "restarted.json")
    restarted = wait_for(tmp_path / "restarted.json", process)
    process.communicate(timeout=60)
    assert process.returncode == 0

    assert sorted(restarted["dispatched"]) == sorted(before)  # the same keys, each once
    assert restarted["restored_actions"] == len(before)
    assert restarted["outstanding"] == {"a": [], "b": [], "c": []}
    charged = gateway.charged()
    assert set(charged) == {"a/w1", "b/w1"} | before
    assert set(charged.values()) == {1}  # every key applied exactly once
    assert sorted(gateway.duplicates()) == sorted(hung)  # repeats refused, first answer kept
    with open_store(f"sqlite:///{db}") as store:
        streams = Streams(Jobs(), store)
        for stream in store.streams():
            state = streams.verify_replay(stream).state
            assert len(state.seen) == len(set(state.seen))  # no completion applied twice
            assert all(status == "done" for status in state.jobs.values())
