"""The simulator finds each deliberately broken machine (or engine) within the default
budget, names the failing check, and prints a command that reproduces the failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import broken
import pytest

from fasm_es.testing import Simulation, SimulationFailure, simulate

HERE = Path(__file__).resolve().parent

CASES = [
    ("WALL_CLOCK", "determinism", None),
    ("UNSEEDED_RANDOM", "determinism", None),
    ("FORGETFUL_RESTORE", "restore", None),
    ("DEAF_TO_COMPLETIONS", "restore", None),
    ("LOST_ON_RESTART", "invariant", None),
    # Only a commit that stored its record before failing leaves actions behind.
    ("FORGETS_UNKNOWN_OUTCOMES", "forgotten-action", "the store fails after the append"),
    ("RETRIES_BLINDLY", "input-once", "the store fails after the append"),
    # Only a reread that meets a store still down tells giving up from retrying.
    ("GIVES_UP_ON_DOUBTS", "forgotten-action", "(an outage)"),
]


@pytest.mark.parametrize(("name", "check", "cause"), CASES, ids=[c[0] for c in CASES])
def test_simulator_finds_the_bug_and_the_command_reproduces_it(
    name: str, check: str, cause: str | None
) -> None:
    spec: Simulation[object] = getattr(broken, name)
    with pytest.raises(SimulationFailure) as info:
        simulate(spec)  # the default budget: 100 seeds x 1000 steps
    failure = info.value
    assert failure.check == check, str(failure)
    assert 1 <= len(failure.shrunk) <= failure.step
    if cause is not None:
        assert any(cause in op.describe() for op in failure.shrunk), str(failure)
    assert f"broken:{name}" in failure.command
    assert f"--seed {failure.seed} --steps {failure.step}" in failure.command
    text = str(failure)
    assert f"seed {failure.seed}" in text and f"check {check!r}" in text

    argv = failure.command.split()
    assert argv[:3] == ["python", "-m", "fasm_es.testing"]
    replay = subprocess.run(
        [sys.executable, *argv[1:]],
        check=False,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert f"check {check!r}" in replay.stderr
    assert f"seed {failure.seed}, step {failure.step}" in replay.stderr
